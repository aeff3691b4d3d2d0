package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub/kafka"
)

// These commands talk to a hub over the Kafka protocol, so they work
// against any Kafka-compatible cluster too.

func defaultBrokers() string {
	if v := os.Getenv("WEIR_BROKERS"); v != "" {
		return v
	}
	return "127.0.0.1:9092"
}

// brokerTimeout bounds each wait for a broker: connecting, a request, a
// record's delivery. Set by --timeout.
var brokerTimeout = 10 * time.Second

func addBrokersFlag(cmd *cobra.Command, dst *string) {
	cmd.PersistentFlags().StringVar(dst, "brokers", defaultBrokers(), "comma-separated host:port of the hub or Kafka cluster (env WEIR_BROKERS)")
	cmd.PersistentFlags().DurationVar(&brokerTimeout, "timeout", 10*time.Second, "fail when a broker does not answer (connect, request, record delivery) within this time")
	addClientSecurityFlags(cmd)
}

// newKafkaClient makes a client whose every wait is bounded by
// brokerTimeout: dialing, requests, and the delivery of a produced record
// (franz-go retries all of them without limit by default).
func newKafkaClient(brokers string, opts ...kgo.Opt) (*kgo.Client, error) {
	seeds := strings.Split(brokers, ",")
	base := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("weir-cli"),
		kgo.DialTimeout(min(brokerTimeout, 5*time.Second)), kgo.RetryTimeout(brokerTimeout),
		kgo.RequestTimeoutOverhead(brokerTimeout),
		kgo.RecordDeliveryTimeout(brokerTimeout), kgo.ProduceRequestTimeout(brokerTimeout)}
	sec, err := clientSecurity()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(append(base, sec...), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", brokers, err)
	}
	return cl, nil
}

// connect makes a client and checks that a broker answers, so that a
// command against an address where nothing listens fails at once instead
// of waiting in the client's retries.
func connect(ctx context.Context, brokers string, opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := newKafkaClient(brokers, opts...)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, noBroker(brokers, err)
	}
	return cl, nil
}

func noBroker(brokers string, err error) error {
	return fmt.Errorf("no broker answered at %s within %v (%v): is `weir serve` (or Kafka) running and listening there? Pass --brokers or set WEIR_BROKERS to its address", brokers, brokerTimeout, err)
}

// unreachable explains a failed request: no broker, or a broker that
// cannot store.
func unreachable(brokers string, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, kerr.KafkaStorageError):
		return fmt.Errorf("the broker at %s could not store the records (%w): check its disk (full? writable?) and its log", brokers, err)
	case errors.Is(err, kgo.ErrRecordTimeout):
		return fmt.Errorf("the broker at %s did not acknowledge within %v (%w): check that it runs, its log and its disk", brokers, brokerTimeout, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		strings.Contains(err.Error(), "connection refused"), strings.Contains(err.Error(), "unable to dial"):
		return noBroker(brokers, err)
	}
	return err
}

// signalContext ends on SIGINT, SIGTERM or SIGHUP; see stopContext.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return stopContext(parent)
}

func newTopicsCmd() *cobra.Command {
	var brokers string
	cmd := &cobra.Command{Use: "topics", Aliases: []string{"datasets"}, Short: "List, create, describe, grow and delete datasets (Kafka topics)"}
	addBrokersFlag(cmd, &brokers)
	adminClient := func(cmd *cobra.Command) (*kgo.Client, *kadm.Client, func(), context.Context, error) {
		cl, err := connect(cmd.Context(), brokers)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), brokerTimeout)
		return cl, kadm.NewClient(cl), func() { cancel(); cl.Close() }, ctx, nil
	}
	admin := func(cmd *cobra.Command) (*kadm.Client, func(), context.Context, error) {
		_, adm, done, ctx, err := adminClient(cmd)
		return adm, done, ctx, err
	}
	list := &cobra.Command{
		Use: "list", Short: "List datasets with their partition counts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, ctx, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			topics, err := adm.ListTopics(ctx)
			if err != nil {
				return unreachable(brokers, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATASET\tPARTITIONS")
			for _, t := range topics.Sorted() {
				fmt.Fprintf(tw, "%s\t%d\n", t.Topic, len(t.Partitions))
			}
			return tw.Flush()
		},
	}
	var partitions int32
	var configs []string
	create := &cobra.Command{
		Use: "create NAME...", Short: "Create datasets", Args: cobra.MinimumNArgs(1),
		Example: `  weir topics create access --partitions 4 --config retention.ms=604800000 --config weir.fsync=always`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := map[string]*string{}
			for _, kv := range configs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--config %q: want key=value, e.g. retention.ms=86400000", kv)
				}
				cfg[k] = &v
			}
			adm, done, ctx, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.CreateTopics(ctx, partitions, -1, cfg, args...)
			if err != nil {
				return unreachable(brokers, err)
			}
			var failed error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					failed = errors.Join(failed, fmt.Errorf("%s: %v %s", r.Topic, r.Err, r.ErrMessage))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %s with %d partitions\n", r.Topic, r.NumPartitions)
			}
			return failed
		},
	}
	create.Flags().Int32Var(&partitions, "partitions", -1, "partitions (default: the hub's default)")
	create.Flags().StringArrayVar(&configs, "config", nil, "topic config key=value (retention.ms, retention.bytes, segment.bytes, max.message.bytes, weir.fsync); repeatable")
	describe := &cobra.Command{
		Use: "describe NAME...", Short: "Show partitions with offsets and the dataset's config", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, adm, done, ctx, err := adminClient(cmd)
			if err != nil {
				return err
			}
			defer done()
			details, err := adm.ListTopics(ctx, args...)
			if err != nil {
				return unreachable(brokers, err)
			}
			starts, err := adm.ListStartOffsets(ctx, args...)
			if err != nil {
				return err
			}
			ends, err := adm.ListEndOffsets(ctx, args...)
			if err != nil {
				return err
			}
			cfgs, _ := adm.DescribeTopicConfigs(ctx, args...)
			// The tiers: where the local part starts (KIP-1005's earliest
			// local offset) and the bytes of each part (DescribeLogDirs:
			// Weir lists the cold store as a second directory), with
			// the segments of each part (Weir's tagged field of
			// DescribeLogDirs; "-" from a broker that sends none). A
			// broker that answers neither gets the plain table.
			localStarts, lerr := adm.ListLocalLogStartOffsets(ctx, args...)
			var set kadm.TopicsSet
			for _, name := range args {
				if d, ok := details[name]; ok && d.Err == nil {
					set.Add(name, d.Partitions.Numbers()...)
				}
			}
			dirs, derr := adm.DescribeAllLogDirs(ctx, set)
			tiers := lerr == nil && derr == nil
			var segs map[segmentsKey]int64
			if tiers {
				segs = logDirSegments(ctx, cl, set)
			}
			w := cmd.OutOrStdout()
			var failed error
			for _, name := range args {
				d, ok := details[name]
				if !ok || d.Err != nil {
					failed = errors.Join(failed, fmt.Errorf("%s: %v", name, d.Err))
					continue
				}
				fmt.Fprintf(w, "%s  id %s  %d partitions\n", name, d.ID, len(d.Partitions))
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				if tiers {
					fmt.Fprintln(tw, "  PARTITION\tLEADER\tSTART\tEND\tRECORDS\tLOCAL OFFSETS\tLOCAL BYTES\tLOCAL SEGMENTS\tREMOTE OFFSETS\tREMOTE BYTES\tREMOTE SEGMENTS")
				} else {
					fmt.Fprintln(tw, "  PARTITION\tLEADER\tSTART\tEND\tRECORDS")
				}
				for _, p := range d.Partitions.Sorted() {
					s, _ := starts.Lookup(name, p.Partition)
					e, _ := ends.Lookup(name, p.Partition)
					fmt.Fprintf(tw, "  %d\t%d\t%d\t%d\t%d", p.Partition, p.Leader, s.Offset, e.Offset, e.Offset-s.Offset)
					if tiers {
						ls, _ := localStarts.Lookup(name, p.Partition)
						fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\t%s", offsetRange(ls.Offset, e.Offset), partBytes(dirs, kafka.RemoteLogDir, false, name, p.Partition),
							segmentCount(segs, name, p.Partition, false),
							offsetRange(s.Offset, ls.Offset), partBytes(dirs, kafka.RemoteLogDir, true, name, p.Partition),
							segmentCount(segs, name, p.Partition, true))
					}
					fmt.Fprintln(tw)
				}
				tw.Flush()
				for _, rc := range cfgs {
					if rc.Name != name {
						continue
					}
					fmt.Fprintln(w, "  config:")
					for _, c := range rc.Configs {
						fmt.Fprintf(w, "    %s=%s\n", c.Key, c.MaybeValue())
					}
				}
			}
			return failed
		},
	}
	var add int
	var setConfigs, deleteConfigs []string
	alter := &cobra.Command{
		Use:   "alter NAME [--partitions N] [--config key=value]... [--delete-config key]...",
		Short: "Grow a dataset or change its configuration",
		Long: `Changes a dataset while it serves: --partitions grows it to N partitions (fewer is refused:
it would drop records and move keys); --config sets a topic config (retention.ms,
retention.bytes, segment.bytes, segment.ms, max.message.bytes), applied at once and kept
across restarts; --delete-config returns one to the hub's default. Prints what changed.`,
		Example: `  weir topics alter access --config retention.ms=86400000 --config retention.bytes=10737418240
  weir topics alter access --partitions 8
  weir topics alter access --delete-config retention.bytes`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if add <= 0 && len(setConfigs) == 0 && len(deleteConfigs) == 0 {
				return errors.New("nothing to change: pass --partitions N, --config key=value or --delete-config key")
			}
			var changes []kadm.AlterConfig
			for _, kv := range setConfigs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return fmt.Errorf("--config %q: want key=value, e.g. retention.ms=86400000", kv)
				}
				changes = append(changes, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(v)})
			}
			for _, k := range deleteConfigs {
				changes = append(changes, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
			}
			adm, done, ctx, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			w := cmd.OutOrStdout()
			if add > 0 {
				res, err := adm.UpdatePartitions(ctx, add, name)
				if err != nil {
					return unreachable(brokers, err)
				}
				for _, r := range res {
					if r.Err != nil {
						return fmt.Errorf("%s: %v %s", r.Topic, r.Err, r.ErrMessage)
					}
				}
				fmt.Fprintf(w, "%s now has %d partitions\n", name, add)
			}
			if len(changes) == 0 {
				return nil
			}
			before, err := topicConfigs(ctx, adm, name)
			if err != nil {
				return unreachable(brokers, err)
			}
			res, err := adm.AlterTopicConfigs(ctx, changes, name)
			if err != nil {
				return unreachable(brokers, err)
			}
			for _, r := range res {
				if r.Err != nil {
					msg := r.ErrMessage
					if msg == "" {
						msg = r.Err.Error()
					}
					return fmt.Errorf("%s: %s (nothing changed)", r.Name, msg)
				}
			}
			after, err := topicConfigs(ctx, adm, name)
			if err != nil {
				return unreachable(brokers, err)
			}
			n := 0
			for _, k := range sortedNames(after) {
				if before[k] != after[k] {
					fmt.Fprintf(w, "%s: %s %s -> %s\n", name, k, before[k], after[k])
					n++
				}
			}
			if n == 0 {
				fmt.Fprintf(w, "%s: already so; nothing changed\n", name)
			}
			return nil
		},
	}
	alter.Flags().IntVar(&add, "partitions", 0, "new total number of partitions (can only grow)")
	alter.Flags().StringArrayVar(&setConfigs, "config", nil, "set a topic config key=value; repeatable")
	alter.Flags().StringArrayVar(&deleteConfigs, "delete-config", nil, "return a topic config to the hub's default; repeatable")
	del := &cobra.Command{
		Use: "delete NAME...", Short: "Delete datasets and their data", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			adm, done, ctx, err := admin(cmd)
			if err != nil {
				return err
			}
			defer done()
			res, err := adm.DeleteTopics(ctx, args...)
			if err != nil {
				return unreachable(brokers, err)
			}
			var failed error
			for _, r := range res.Sorted() {
				if r.Err != nil {
					failed = errors.Join(failed, fmt.Errorf("%s: %v %s", r.Topic, r.Err, r.ErrMessage))
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", r.Topic)
			}
			return failed
		},
	}
	cmd.AddCommand(list, create, describe, alter, del)
	return cmd
}

// topicConfigs is the described config of one topic.
func topicConfigs(ctx context.Context, adm *kadm.Client, topic string) (map[string]string, error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return nil, err
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", topic, err)
	}
	m := map[string]string{}
	for _, c := range rc.Configs {
		m[c.Key] = c.MaybeValue()
	}
	return m, nil
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

func newProduceCmd() *cobra.Command {
	var brokers, key, compression string
	var partition int32
	var acks int
	cmd := &cobra.Command{
		Use:   "produce DATASET",
		Short: "Write stdin lines as records, one record per line",
		Long: `Reads lines from standard input and produces each as one record to DATASET. With --key
every record gets that key (and so the same partition); with --key-sep the text before
the separator on each line is the key. Prints how many records were acknowledged.`,
		Example: `  printf 'hello\nworld\n' | weir produce greetings
  tail -F /var/log/app.log | weir produce app-logs --compression zstd`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runProduce(cmd, brokers, args[0], key, compression, partition, acks)
		},
	}
	addBrokersFlag(cmd, &brokers)
	cmd.Flags().StringVar(&key, "key", "", "key for every record")
	cmd.Flags().String("key-sep", "", "split each line at the first SEP: key before, value after")
	cmd.Flags().StringVar(&compression, "compression", "none", "batch compression: none, gzip, snappy, lz4, zstd")
	cmd.Flags().Int32Var(&partition, "partition", -1, "write every record to this partition (default: by key, else spread)")
	cmd.Flags().IntVar(&acks, "acks", -1, "acks: -1 (all: durable), 1, or 0")
	return cmd
}

func runProduce(cmd *cobra.Command, brokers, topic, key, compression string, partition int32, acks int) error {
	codec := map[string]kgo.CompressionCodec{"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(),
		"snappy": kgo.SnappyCompression(), "lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression()}[compression]
	if compression != "none" && codec == kgo.NoCompression() {
		return fmt.Errorf("--compression %q: want none, gzip, snappy, lz4 or zstd", compression)
	}
	opts := []kgo.Opt{kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(codec), kgo.AllowAutoTopicCreation()}
	switch acks {
	case -1:
		// A record not acknowledged within --timeout fails the command
		// (which says how many failed) rather than waiting for ever.
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.AllowIdempotentProduceCancellation())
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	default:
		return fmt.Errorf("--acks %d: want -1, 1 or 0", acks)
	}
	if partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	cl, err := connect(ctx, brokers, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	sep, _ := cmd.Flags().GetString("key-sep")
	var sent, acked, failed int64
	var firstErr error
	errs := make(chan error, 1)
	sc := bufio.NewScanner(cmd.InOrStdin())
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	p := newProgress(cmd.ErrOrStderr(), "produce "+topic)
	var bytesIn int64
	for sc.Scan() {
		line := sc.Bytes()
		r := &kgo.Record{Value: append([]byte(nil), line...), Partition: partition}
		if key != "" {
			r.Key = []byte(key)
		}
		if sep != "" {
			if k, v, ok := strings.Cut(string(line), sep); ok {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
		sent++
		bytesIn += int64(len(line))
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
					select {
					case errs <- err:
					default:
					}
				}
				return
			}
			acked++
		})
		p.update(bytesIn, 0, fmt.Sprintf("%d records", sent))
		select {
		case err := <-errs:
			return unreachable(brokers, fmt.Errorf("producing to %s: %w", topic, err))
		default:
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if err := cl.Flush(ctx); err != nil {
		return unreachable(brokers, fmt.Errorf("flushing: %w", err))
	}
	p.finish(-1, 0)
	if firstErr != nil {
		return unreachable(brokers, fmt.Errorf("%d of %d records failed: %w", failed, sent, firstErr))
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%d records produced to %s\n", acked, topic)
	return nil
}

func newConsumeCmd() *cobra.Command {
	var brokers, group, since, format string
	var fromBeginning, end bool
	var offset int64
	var maxRecords int
	cmd := &cobra.Command{
		Use:   "consume DATASET",
		Short: "Print records of a dataset, following it as it grows",
		Long: `Prints the records of DATASET, one per line (the value, or a JSON object with --format json),
and keeps following until interrupted, --max records, or with --end the end of what is there.
Without --group it reads every partition on its own from the chosen start (default: new
records only); with --group it joins that consumer group, starts from the group's committed
offsets and commits as it goes.`,
		Example: `  weir consume access --from-beginning --end
  weir consume access --since 1h --format json
  weir consume access --group audit`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConsume(cmd, brokers, args[0], group, since, format, fromBeginning, end, offset, maxRecords)
		},
	}
	addBrokersFlag(cmd, &brokers)
	f := cmd.Flags()
	f.StringVar(&group, "group", "", "consumer group to join and commit as")
	f.BoolVar(&fromBeginning, "from-beginning", false, "start at the earliest record")
	f.Int64Var(&offset, "offset", -1, "start at this offset in every partition")
	f.StringVar(&since, "since", "", "start at records newer than a duration ago (1h, 7d) or a time (RFC 3339)")
	f.BoolVar(&end, "end", false, "exit at the end of the records present when starting")
	f.IntVar(&maxRecords, "max", 0, "exit after this many records")
	f.StringVar(&format, "format", "value", "output: value (one per line) or json")
	return cmd
}

type jsonRecord struct {
	Dataset   string            `json:"dataset"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       *string           `json:"key"`
	Value     string            `json:"value"`
	Headers   map[string]string `json:"headers,omitempty"`
}

func runConsume(cmd *cobra.Command, brokers, topic, group, since, format string, fromBeginning, end bool, offset int64, maxRecords int) error {
	if format != "value" && format != "json" {
		return fmt.Errorf("--format %q: want value or json", format)
	}
	start := kgo.NewOffset().AtEnd()
	var sinceMilli int64 = -1
	switch {
	case fromBeginning:
		start = kgo.NewOffset().AtStart()
	case offset >= 0:
		start = kgo.NewOffset().At(offset)
	case since != "":
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			d, derr := parseDuration(since)
			if derr != nil {
				return fmt.Errorf("--since %q: neither a duration (1h, 7d) nor an RFC 3339 time", since)
			}
			t = time.Now().Add(-d)
		}
		sinceMilli = t.UnixMilli()
		start = kgo.NewOffset().AfterMilli(sinceMilli)
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	// With --end, learn where the end is and where reading starts: a
	// partition that starts at its end is done before it begins.
	var ends, pos map[int32]int64
	if end {
		var err error
		if ends, pos, err = consumeBounds(ctx, brokers, topic, group, fromBeginning, offset, sinceMilli); err != nil {
			return err
		}
	}
	// printed holds, per partition, the offset after the last record
	// printed: with --group that is what is committed, never more.
	var mu sync.Mutex
	printed := map[int32]kgo.EpochOffset{}
	committed := map[int32]kgo.EpochOffset{}
	commit := func(ctx context.Context, cl *kgo.Client) error {
		mu.Lock()
		todo := map[int32]kgo.EpochOffset{}
		for p, eo := range printed {
			if committed[p] != eo {
				todo[p] = eo
			}
		}
		mu.Unlock()
		if len(todo) == 0 {
			return nil
		}
		var cerr error
		cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{topic: todo}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				cerr = err
				return
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
						cerr = errors.Join(cerr, fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err))
					}
				}
			}
		})
		if cerr != nil {
			return fmt.Errorf("committing the group's offsets: %w", cerr)
		}
		mu.Lock()
		for p, eo := range todo {
			committed[p] = eo
		}
		mu.Unlock()
		return nil
	}
	lost := &connWatch{}
	opts := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start), kgo.WithHooks(lost)}
	if group != "" {
		// Autocommit would commit every record fetched, printed or not,
		// and a start position that is a timestamp (franz-go keeps it as
		// the head until the next poll): commit only what was printed.
		opts = append(opts, kgo.ConsumerGroup(group), kgo.Balancers(kgo.RangeBalancer()),
			kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, _ map[string][]int32) {
				if err := commit(ctx, cl); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), "weir:", err)
				}
			}))
	}
	cl, err := connect(ctx, brokers, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	enc := json.NewEncoder(out)
	done := func() bool {
		if ends == nil {
			return false
		}
		for p, e := range ends {
			if pos[p] < e {
				return false
			}
		}
		return true
	}
	var n int
	lastCommit := time.Now()
	for !done() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			break
		}
		if err := lost.failing(brokerTimeout); err != nil {
			cl.AllowRebalance()
			return fmt.Errorf("lost the broker at %s: no connection for %v (%v): is `weir serve` (or Kafka) still running there?", brokers, brokerTimeout, err)
		}
		for _, fe := range fs.Errors() {
			if errors.Is(fe.Err, context.DeadlineExceeded) || errors.Is(fe.Err, context.Canceled) {
				continue // the poll's own timeout
			}
			cl.AllowRebalance()
			return unreachable(brokers, fmt.Errorf("%s/%d: %w", fe.Topic, fe.Partition, fe.Err))
		}
		var stopNow bool
		fs.EachRecord(func(r *kgo.Record) {
			if stopNow {
				return
			}
			if ends != nil {
				pos[r.Partition] = r.Offset + 1
				if r.Offset >= ends[r.Partition] {
					return
				}
			}
			if format == "json" {
				jr := jsonRecord{Dataset: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp, Value: string(r.Value)}
				if r.Key != nil {
					k := string(r.Key)
					jr.Key = &k
				}
				for _, h := range r.Headers {
					if jr.Headers == nil {
						jr.Headers = map[string]string{}
					}
					jr.Headers[h.Key] = string(h.Value)
				}
				enc.Encode(jr)
			} else {
				out.Write(r.Value)
				out.WriteByte('\n')
			}
			mu.Lock()
			printed[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset + 1}
			mu.Unlock()
			n++
			if maxRecords > 0 && n >= maxRecords {
				stopNow = true
			}
		})
		if err := out.Flush(); err != nil {
			cl.AllowRebalance()
			return fmt.Errorf("writing records: %w", err)
		}
		if group != "" && time.Since(lastCommit) >= time.Second {
			cctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
			err := commit(cctx, cl)
			cancel()
			if err != nil {
				cl.AllowRebalance()
				return unreachable(brokers, err)
			}
			lastCommit = time.Now()
		}
		cl.AllowRebalance()
		if stopNow {
			break
		}
	}
	if group != "" {
		cctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
		defer cancel()
		if err := commit(cctx, cl); err != nil {
			return unreachable(brokers, err)
		}
	}
	return nil
}

// connWatch notices that every connection attempt has failed for a
// while: franz-go retries them without telling its caller.
type connWatch struct {
	mu      sync.Mutex
	since   time.Time // first failure since the last success
	lastErr error
}

var _ kgo.HookBrokerConnect = (*connWatch)(nil)

func (w *connWatch) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.since, w.lastErr = time.Time{}, nil
		return
	}
	if w.since.IsZero() {
		w.since = time.Now()
	}
	w.lastErr = err
}

// failing returns the last error if connecting has failed for longer than d.
func (w *connWatch) failing(d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.since.IsZero() && time.Since(w.since) > d {
		return w.lastErr
	}
	return nil
}

// consumeBounds lists, per partition of topic, the end offset and the
// offset reading starts at: the group's committed offset if it has one,
// else the start the flags chose.
func consumeBounds(ctx context.Context, brokers, topic, group string, fromBeginning bool, offset, sinceMilli int64) (ends, starts map[int32]int64, err error) {
	cl, err := connect(ctx, brokers)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	lctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	collect := func(listed kadm.ListedOffsets, err error) (map[int32]int64, error) {
		if err != nil {
			return nil, unreachable(brokers, err)
		}
		m := map[int32]int64{}
		var lerr error
		listed.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				lerr = errors.Join(lerr, fmt.Errorf("%s/%d: %w", o.Topic, o.Partition, o.Err))
			}
			m[o.Partition] = o.Offset
		})
		return m, lerr
	}
	if ends, err = collect(adm.ListEndOffsets(lctx, topic)); err != nil {
		return nil, nil, err
	}
	switch {
	case fromBeginning:
		starts, err = collect(adm.ListStartOffsets(lctx, topic))
	case sinceMilli >= 0:
		starts, err = collect(adm.ListOffsetsAfterMilli(lctx, sinceMilli, topic))
	default:
		starts = map[int32]int64{}
		for p, e := range ends {
			starts[p] = e
			if offset >= 0 {
				starts[p] = min(offset, e)
			}
		}
	}
	if err != nil {
		return nil, nil, err
	}
	for p, s := range starts {
		if s < 0 { // no record after the time
			starts[p] = ends[p]
		}
	}
	if group != "" {
		fetched, err := adm.FetchOffsets(lctx, group)
		if err != nil {
			return nil, nil, unreachable(brokers, err)
		}
		fetched.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil && o.At >= 0 {
				starts[o.Partition] = o.At
			}
		})
	}
	return ends, starts, nil
}

func newGroupsCmd() *cobra.Command {
	var brokers string
	cmd := &cobra.Command{Use: "groups", Short: "List, describe (with lag), reset and delete consumer groups"}
	addBrokersFlag(cmd, &brokers)
	list := &cobra.Command{
		Use: "list", Short: "List consumer groups with their state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := connect(cmd.Context(), brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), brokerTimeout)
			defer cancel()
			groups, err := kadm.NewClient(cl).ListGroups(ctx)
			if err != nil {
				return unreachable(brokers, err)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL TYPE")
			for _, g := range groups.Sorted() {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
			}
			return tw.Flush()
		},
	}
	describe := &cobra.Command{
		Use: "describe GROUP...", Short: "Show members, assignments, committed offsets and lag per partition", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := connect(cmd.Context(), brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), brokerTimeout)
			defer cancel()
			lags, err := kadm.NewClient(cl).Lag(ctx, args...)
			if err != nil {
				return unreachable(brokers, err)
			}
			w := cmd.OutOrStdout()
			var missing error
			for _, name := range args {
				l, ok := lags[name]
				if !ok {
					missing = errors.Join(missing, fmt.Errorf("%s: the broker did not describe it", name))
					continue
				}
				if err := l.Error(); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if l.State == "Dead" && len(l.Lag) == 0 {
					missing = errors.Join(missing, fmt.Errorf("%s: no such group (no members, no committed offsets); `weir groups list` lists them", name))
					continue
				}
				fmt.Fprintf(w, "%s  state %s  protocol %s  %d members  total lag %d\n", name, l.State, l.Protocol, len(l.Members), l.Lag.Total())
				tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "  DATASET\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER\tCLIENT")
				for _, ml := range l.Lag.Sorted() {
					member, client := "-", "-"
					if ml.Member != nil {
						member, client = ml.Member.MemberID, ml.Member.ClientID+" "+ml.Member.ClientHost
					}
					commit := "-"
					if ml.Commit.At >= 0 {
						commit = strconv.FormatInt(ml.Commit.At, 10)
					}
					fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", ml.Topic, ml.Partition, commit, ml.End.Offset, ml.Lag, member, client)
				}
				tw.Flush()
			}
			return missing
		},
	}
	var resetTopic, toOffsetStr, toTime string
	var toEarliest, toLatest, execute bool
	reset := &cobra.Command{
		Use:   "reset GROUP --topic DATASET (--to-earliest|--to-latest|--to-offset N|--to-time T) [--execute]",
		Short: "Move a group's committed offsets (a dry run unless --execute)",
		Long: `Sets the committed offset of GROUP on every partition of DATASET, as
kafka-consumer-groups --reset-offsets does: to the earliest record, the end, an offset
(kept within each partition's records), or the first record at or after a time (a duration
ago such as 1h or 7d, or an RFC 3339 time). Prints the current and new offsets; only with
--execute are they committed. The group must have no members: stop its consumers first.`,
		Example: `  weir groups reset audit --topic orders --to-time 2h
  weir groups reset audit --topic orders --to-earliest --execute`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			group := args[0]
			if resetTopic == "" {
				return errors.New("--topic DATASET is required")
			}
			n := 0
			for _, set := range []bool{toEarliest, toLatest, toOffsetStr != "", toTime != ""} {
				if set {
					n++
				}
			}
			if n != 1 {
				return errors.New("pass exactly one of --to-earliest, --to-latest, --to-offset N, --to-time T")
			}
			var toOffset int64
			if toOffsetStr != "" {
				var err error
				if toOffset, err = strconv.ParseInt(toOffsetStr, 10, 64); err != nil || toOffset < 0 {
					return fmt.Errorf("--to-offset %q: want an offset (0 or more)", toOffsetStr)
				}
			}
			var at time.Time
			if toTime != "" {
				var err error
				if at, err = time.Parse(time.RFC3339, toTime); err != nil {
					d, derr := parseDuration(toTime)
					if derr != nil || d < 0 {
						return fmt.Errorf("--to-time %q: neither a duration ago (1h, 7d) nor an RFC 3339 time", toTime)
					}
					at = time.Now().Add(-d)
				}
			}
			cl, err := connect(cmd.Context(), brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), brokerTimeout)
			defer cancel()
			adm := kadm.NewClient(cl)
			starts, err := adm.ListStartOffsets(ctx, resetTopic)
			if err != nil {
				return unreachable(brokers, err)
			}
			ends, err := adm.ListEndOffsets(ctx, resetTopic)
			if err != nil {
				return unreachable(brokers, err)
			}
			var byTime kadm.ListedOffsets
			if toTime != "" {
				if byTime, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), resetTopic); err != nil {
					return unreachable(brokers, err)
				}
			}
			current, err := adm.FetchOffsets(ctx, group)
			if err != nil {
				return unreachable(brokers, err)
			}
			if err := ends.Error(); err != nil {
				return fmt.Errorf("%s: %w", resetTopic, err)
			}
			target := kadm.Offsets{}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DATASET\tPARTITION\tCURRENT\tNEW\tSTART\tEND")
			var perr error
			ends.Each(func(e kadm.ListedOffset) {
				s, _ := starts.Lookup(resetTopic, e.Partition)
				o := e.Offset
				switch {
				case toEarliest:
					o = s.Offset
				case toOffsetStr != "":
					o = min(max(toOffset, s.Offset), e.Offset)
				case toTime != "":
					if bt, ok := byTime.Lookup(resetTopic, e.Partition); ok && bt.Err == nil && bt.Offset >= 0 {
						o = bt.Offset
					} else if ok && bt.Err != nil {
						perr = errors.Join(perr, fmt.Errorf("%s/%d: %w", resetTopic, e.Partition, bt.Err))
					}
				}
				cur := "-"
				if c, ok := current.Lookup(resetTopic, e.Partition); ok && c.At >= 0 {
					cur = strconv.FormatInt(c.At, 10)
				}
				target.Add(kadm.Offset{Topic: resetTopic, Partition: e.Partition, At: o, LeaderEpoch: -1})
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\n", resetTopic, e.Partition, cur, o, s.Offset, e.Offset)
			})
			tw.Flush()
			if perr != nil {
				return perr
			}
			if !execute {
				fmt.Fprintf(w, "dry run: nothing committed; pass --execute to commit these offsets for group %s\n", group)
				return nil
			}
			res, err := adm.CommitOffsets(ctx, group, target)
			if err != nil {
				return unreachable(brokers, err)
			}
			if err := res.Error(); err != nil {
				if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.RebalanceInProgress) {
					return fmt.Errorf("group %s has members: stop its consumers, then reset (%w)", group, err)
				}
				return fmt.Errorf("committing the offsets of group %s: %w", group, err)
			}
			fmt.Fprintf(w, "committed the new offsets of group %s\n", group)
			return nil
		},
	}
	rf := reset.Flags()
	rf.StringVar(&resetTopic, "topic", "", "the dataset whose offsets to move")
	rf.BoolVar(&toEarliest, "to-earliest", false, "to each partition's first record")
	rf.BoolVar(&toLatest, "to-latest", false, "to each partition's end (skip everything there)")
	rf.StringVar(&toOffsetStr, "to-offset", "", "to this offset in every partition")
	rf.StringVar(&toTime, "to-time", "", "to the first record at or after a time: a duration ago (1h, 7d) or RFC 3339")
	rf.BoolVar(&execute, "execute", false, "commit the new offsets (without it, only print them)")
	del := &cobra.Command{
		Use: "delete GROUP...", Short: "Delete consumer groups and their committed offsets", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := connect(cmd.Context(), brokers)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), brokerTimeout)
			defer cancel()
			res, err := kadm.NewClient(cl).DeleteGroups(ctx, args...)
			if err != nil {
				return unreachable(brokers, err)
			}
			var failed error
			for _, g := range args {
				r, ok := res[g]
				switch {
				case !ok:
					failed = errors.Join(failed, fmt.Errorf("%s: no answer", g))
				case errors.Is(r.Err, kerr.NonEmptyGroup):
					failed = errors.Join(failed, fmt.Errorf("%s: the group has members: stop its consumers first", g))
				case r.Err != nil:
					failed = errors.Join(failed, fmt.Errorf("%s: %w", g, r.Err))
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s\n", g)
				}
			}
			return failed
		},
	}
	cmd.AddCommand(list, describe, reset, del)
	return cmd
}

// offsetRange is "from..to-1", or "-" when the range is empty.
func offsetRange(from, to int64) string {
	if from < 0 || to <= from {
		return "-"
	}
	return fmt.Sprintf("%d..%d", from, to-1)
}

// partBytes sums a partition's bytes over the log directories a broker
// described: the remote directory's (named remote) or all the others; "-"
// when none lists the partition.
// segmentsKey is a partition's part: local or remote.
type segmentsKey struct {
	topic     string
	partition int32
	remote    bool
}

// logDirSegments asks every broker for the log directories of set and
// returns the segments each partition's part has, from the tagged field
// kafka.SegmentsTag of DescribeLogDirs (parts without it are missing;
// a failed request leaves its broker's out).
func logDirSegments(ctx context.Context, cl *kgo.Client, set kadm.TopicsSet) map[segmentsKey]int64 {
	req := kmsg.NewPtrDescribeLogDirsRequest()
	for topic, parts := range set {
		rt := kmsg.NewDescribeLogDirsRequestTopic()
		rt.Topic = topic
		for p := range parts {
			rt.Partitions = append(rt.Partitions, p)
		}
		req.Topics = append(req.Topics, rt)
	}
	out := map[segmentsKey]int64{}
	for _, shard := range cl.RequestSharded(ctx, req) {
		resp, ok := shard.Resp.(*kmsg.DescribeLogDirsResponse)
		if shard.Err != nil || !ok {
			continue
		}
		for _, d := range resp.Dirs {
			for _, t := range d.Topics {
				for _, p := range t.Partitions {
					p.UnknownTags.Each(func(key uint32, val []byte) {
						if n, k := binary.Uvarint(val); key == kafka.SegmentsTag && k > 0 {
							out[segmentsKey{t.Topic, p.Partition, d.Dir == kafka.RemoteLogDir}] += int64(n)
						}
					})
				}
			}
		}
	}
	return out
}

// segmentCount is the segments of a partition's part in segs, "-" if
// unknown.
func segmentCount(segs map[segmentsKey]int64, topic string, partition int32, remote bool) string {
	n, ok := segs[segmentsKey{topic, partition, remote}]
	if !ok {
		return "-"
	}
	return fmt.Sprint(n)
}

func partBytes(dirs kadm.DescribedAllLogDirs, remote string, wantRemote bool, topic string, partition int32) string {
	var n int64
	found := false
	for _, bd := range dirs {
		for dir, d := range bd {
			if (dir == remote) != wantRemote {
				continue
			}
			if p, ok := d.Topics[topic][partition]; ok {
				n += p.Size
				found = true
			}
		}
	}
	if !found {
		return "-"
	}
	return humanize.IBytes(uint64(n))
}
