// Command weir is the command line of Weir: the hub, pipelines, and the
// operator's tools. Each subcommand lives in its own file; the logic it
// drives lives in the library packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// version and commit are set at build time (make build does):
// go build -ldflags "-X main.version=v1.2.3 -X main.commit=0123abcd". Without
// them, the commit comes from what Go recorded of the git checkout.
var version, commit = "dev", ""

// versionString is the version with the commit it was built from (Go
// records it from the git checkout), and whether the tree was modified.
func versionString() string {
	v, commit, dirty, when := version, commit, false, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version // go install module@version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if commit == "" {
					commit = s.Value
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			case "vcs.time":
				when = s.Value
			}
		}
	}
	if commit == "" {
		return v + " (commit unknown)"
	}
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if dirty {
		commit += "-modified"
	}
	if when != "" {
		return fmt.Sprintf("%s (commit %s, %s)", v, commit, when)
	}
	return fmt.Sprintf("%s (commit %s)", v, commit)
}

// stopSignals end a command gracefully: SIGHUP too (a closed terminal or
// a supervisor's hang-up), which would otherwise kill the process at once,
// without draining, committing or a summary.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// stopContext is cancelled, with the signal as its cause, when one of
// stopSignals arrives. stop releases the signals.
func stopContext(parent context.Context) (ctx context.Context, stop func()) {
	return stopContextOn(parent, stopSignals...)
}

// stopContextOn is stopContext for the given signals only (weir run keeps
// SIGHUP for a reload).
func stopContextOn(parent context.Context, sigs ...os.Signal) (ctx context.Context, stop func()) {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(fmt.Errorf("received %v", sig))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(context.Canceled)
	}
}

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "weir",
		Short: "Weir is a streaming data hub: a Kafka-compatible commit log with declarative pipelines",
		Long: `Weir ingests logs and events into datasets kept in a batched, compressed commit log,
and fans every dataset out through declarative YAML pipelines. It speaks the Kafka
wire protocol, so Kafka clients and tools work against it unchanged.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.SetVersionTemplate("weir {{.Version}}\n")
	root.PersistentFlags().String("log-format", "text", "format of log lines on stderr: text or json (one object per line)")
	root.AddCommand(newRunCmd(), newLintCmd(), newTestCmd(), newListCmd(), newServeCmd(), newTopicsCmd(),
		newProduceCmd(), newConsumeCmd(), newGroupsCmd(), newLogCmd(), newBenchCmd(),
		newTapCmd(), newTopCmd(), newDLQCmd(), newUsersCmd(), newACLsCmd(), newSubscribeCmd())
	return root
}

// logFormatOf is the --log-format of cmd (a persistent flag of the root).
func logFormatOf(cmd *cobra.Command) string {
	if f := cmd.Flags().Lookup("log-format"); f != nil {
		return f.Value.String()
	}
	return "text"
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "weir:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
