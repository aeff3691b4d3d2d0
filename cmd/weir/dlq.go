package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/pipelines"
)

// HeaderRedriveCount counts how many times a record was redriven from a
// dead-letter dataset.
const HeaderRedriveCount = "weir.redrive_count"

// deadLetterHeaders are the headers a dead-letter dataset adds; a redrive
// removes them, giving back the record's own.
var deadLetterHeaders = map[string]bool{
	pipelines.HeaderError: true, pipelines.HeaderStage: true, pipelines.HeaderAttempts: true,
	pipelines.HeaderSource: true, pipelines.HeaderOrigin: true, pipelines.HeaderFailedAt: true,
	pipelines.HeaderTruncated: true, HeaderRedriveCount: true,
}

func newDLQCmd() *cobra.Command {
	var brokers, to, filter, group string
	cmd := &cobra.Command{Use: "dlq", Short: "Work with dead-letter datasets"}
	addBrokersFlag(cmd, &brokers)
	redrive := &cobra.Command{
		Use:   "redrive DATASET --to DATASET [--filter EXPR]",
		Short: "Move dead letters back to a dataset after a fix",
		Long: `Reads the dead letters of DATASET that the group (--group, default weir-redrive) has not
moved yet, up to the end at the start of the command, and produces each one that --filter
accepts to --to: its own key, value, timestamp and headers, without the dead-letter headers
(weir.error, weir.stage, ...), with weir.redrive_count one more than before. Then the group's
position moves past what was read, so a second redrive does not move them again. Letters
that --filter refuses are not moved and are counted; letters whose value was cut to fit
the dead-letter dataset (weir.truncated) are never moved and make the command fail.`,
		Example: `  weir dlq redrive orders.dead --to orders
  weir dlq redrive orders.dead --to orders --filter '_headers["weir.stage"] == "sink elasticsearch"'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to DATASET is required")
			}
			var ex *pipelines.Expr
			if filter != "" {
				var err error
				if ex, err = pipelines.CompileExpr(filter); err != nil {
					return fmt.Errorf("--filter: %w", err)
				}
			}
			return redriveDLQ(cmd, brokers, args[0], to, group, ex)
		},
	}
	redrive.Flags().StringVar(&to, "to", "", "dataset to move the dead letters to")
	redrive.Flags().StringVar(&filter, "filter", "", "move only letters for which this expression is true (as the filter processor's)")
	redrive.Flags().StringVar(&group, "group", "weir-redrive", "consumer group that remembers what was moved")
	cmd.AddCommand(redrive)
	return cmd
}

func redriveDLQ(cmd *cobra.Command, brokers, from, to, group string, filter *pipelines.Expr) error {
	ctx := cmd.Context()
	cl, err := connect(ctx, brokers)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	actx, cancel := context.WithTimeout(ctx, brokerTimeout)
	ends, err := adm.ListEndOffsets(actx, from)
	cancel()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", from, unreachable(brokers, err))
	}
	actx, cancel = context.WithTimeout(ctx, brokerTimeout)
	committed, err := adm.FetchOffsets(actx, group)
	cancel()
	if err != nil {
		return fmt.Errorf("fetching the positions of group %s: %w", group, err)
	}
	starts := map[string]map[int32]kgo.Offset{from: {}}
	left := 0
	ends.Each(func(o kadm.ListedOffset) {
		at := kgo.NewOffset().AtStart()
		if c, ok := committed.Lookup(from, o.Partition); ok && c.At >= 0 {
			at = kgo.NewOffset().At(c.At)
			if c.At >= o.Offset {
				return
			}
		}
		if o.Offset > 0 {
			starts[from][o.Partition] = at
			left++
		}
	})
	moved, refused, truncated := 0, 0, 0
	positions := kadm.Offsets{}
	if left > 0 {
		cons, err := newKafkaClient(brokers, kgo.ConsumePartitions(starts))
		if err != nil {
			return err
		}
		defer cons.Close()
		done := map[int32]bool{}
		for len(done) < left {
			pctx, pcancel := context.WithTimeout(ctx, brokerTimeout)
			fs := cons.PollFetches(pctx)
			pcancel()
			if err := fs.Err0(); err != nil {
				return fmt.Errorf("reading %s: %w", from, err)
			}
			var out []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) {
				end, _ := ends.Lookup(from, r.Partition)
				if done[r.Partition] || r.Offset >= end.Offset {
					return
				}
				if r.Offset+1 >= end.Offset {
					done[r.Partition] = true
				}
				positions.Add(kadm.Offset{Topic: from, Partition: r.Partition, At: r.Offset + 1, LeaderEpoch: -1})
				m := &connectors.Message{Key: r.Key, Value: r.Value, Time: r.Timestamp, Dataset: r.Topic, Partition: r.Partition, Offset: r.Offset}
				count := 0
				var hs []kgo.RecordHeader
				for _, h := range r.Headers {
					m.Headers = append(m.Headers, codecs.RecordHeader{Key: []byte(h.Key), Value: h.Value})
					switch {
					case h.Key == pipelines.HeaderTruncated:
						truncated++
						count = -1
					case h.Key == HeaderRedriveCount:
						if n, err := strconv.Atoi(string(h.Value)); err == nil && count >= 0 {
							count = n
						}
					case !deadLetterHeaders[h.Key]:
						hs = append(hs, h)
					}
				}
				if count < 0 {
					return
				}
				if filter != nil {
					ok, err := filter.Bool(m)
					if err != nil || !ok {
						refused++
						return
					}
				}
				hs = append(hs, kgo.RecordHeader{Key: HeaderRedriveCount, Value: strconv.AppendInt(nil, int64(count+1), 10)})
				out = append(out, &kgo.Record{Topic: to, Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp})
			})
			if len(out) > 0 {
				pctx, pcancel := context.WithTimeout(ctx, brokerTimeout)
				err := cl.ProduceSync(pctx, out...).FirstErr()
				pcancel()
				if err != nil {
					return fmt.Errorf("producing to %s (%d moved before): %w", to, moved, err)
				}
				moved += len(out)
			}
			// What is in --to moves the group on: a crash now moves
			// these letters again at most.
			if len(positions) > 0 {
				pctx, pcancel := context.WithTimeout(ctx, brokerTimeout)
				resp, err := adm.CommitOffsets(pctx, group, positions)
				pcancel()
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					return fmt.Errorf("committing the positions of group %s (%d moved): %w", group, moved, err)
				}
			}
		}
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "moved %d dead letters from %s to %s", moved, from, to)
	if refused > 0 {
		fmt.Fprintf(w, "; %d not matching --filter, left behind", refused)
	}
	fmt.Fprintln(w)
	if truncated > 0 {
		return fmt.Errorf("%d dead letters were cut to fit %s (weir.truncated) and were not moved", truncated, from)
	}
	return nil
}
