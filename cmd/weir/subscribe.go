package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weirhub/weir/hub"
	whttp "github.com/weirhub/weir/hub/http"
)

// subscriptionsMount mounts the dataset subscriptions
// (GET /v1/datasets/{name}/subscribe) on an HTTP front door.
func subscriptionsMount(h *hub.Hub, allowOrigins []string, coalesce int64) func(*whttp.Server) {
	return func(s *whttp.Server) {
		whttp.MountSubscriptions(s, h, whttp.SubscribeOptions{AllowOrigins: allowOrigins, CoalesceBytes: coalesce})
	}
}

const subscribeExample = `  weir subscribe users                       # the latest value of every key, then changes
  weir subscribe users --from latest         # only changes from now on
  weir subscribe users --http 127.0.0.1:9644 | jq .
  curl -N http://127.0.0.1:9644/v1/datasets/users/subscribe   # the same stream as Server-Sent Events
  weir subscribe users --http broker1:9644 --http-tls ca.crt --http-token-file dash.token   # HTTPS, a subscribe token`

func newSubscribeCmd() *cobra.Command {
	var from, addr, lastID string
	var hc httpClientFlags
	cmd := &cobra.Command{
		Use:   "subscribe DATASET",
		Short: "Print a dataset's subscription stream: a snapshot of every key, then changes",
		Long: `Subscribes to a dataset of a running weir serve --http-listen and prints one JSON object a
line per event: record (a key's value), delete, snapshot_end (every key's latest value has been
printed), reset (the resume point is gone; a snapshot follows) and resume (the subscriber fell too
far behind and the server ended the stream), each with its resume "id".
When the connection drops it reconnects and resumes after the last event printed.`,
		Example: subscribeExample,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			base, err := whttp.ListenAddr(addr)
			if err != nil {
				return err
			}
			client, scheme, err := hc.client(0)
			if err != nil {
				return err
			}
			u := fmt.Sprintf("%s://%s/v1/datasets/%s/subscribe?from=%s", scheme, base, url.PathEscape(args[0]), url.QueryEscape(from))
			return followSSE(ctx, client, u, lastID, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "snapshot", "where to start: snapshot, latest or earliest")
	f.StringVar(&addr, "http", "127.0.0.1:9644", "the --http-listen address of weir serve")
	f.StringVar(&lastID, "last-event-id", "", "resume after this event id")
	hc.add(f)
	return cmd
}

// followSSE prints the event stream at u as JSON lines, reconnecting with
// the last id after a drop, until ctx ends. A refusal (4xx) is an error.
func followSSE(ctx context.Context, client *http.Client, u, lastID string, out, errOut io.Writer) error {
	for {
		err := readSSE(ctx, client, u, &lastID, out)
		if ctx.Err() != nil {
			return nil
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return err
		}
		fmt.Fprintf(errOut, "weir subscribe: %v; resuming in 1s\n", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func readSSE(ctx context.Context, client *http.Client, u string, lastID *string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return &refusedError{err.Error()}
	}
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		msg := fmt.Sprintf("%s: %s %s", req.URL.Redacted(), resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 {
			return &refusedError{msg}
		}
		return errors.New(msg)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var typ, id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if typ == "" {
				continue
			}
			var obj map[string]json.RawMessage
			if json.Unmarshal([]byte(data), &obj) != nil {
				obj = map[string]json.RawMessage{}
			}
			obj["type"], _ = json.Marshal(typ)
			obj["id"], _ = json.Marshal(id)
			b, _ := json.Marshal(obj)
			if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
				return &refusedError{err.Error()}
			}
			*lastID = id
			typ, id, data = "", "", ""
		case strings.HasPrefix(line, "event: "):
			typ = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("the stream ended")
}
