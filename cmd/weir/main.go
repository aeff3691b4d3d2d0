// Command weir is the command line of Weir: the hub, pipelines, and the
// operator's tools. Each subcommand lives in its own file; the logic it
// drives lives in the library packages.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

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
	}
	root.AddCommand(newRunCmd(), newLintCmd(), newTestCmd(), newListCmd(), newServeCmd(), newTopicsCmd(),
		newProduceCmd(), newConsumeCmd(), newGroupsCmd(), newLogCmd(), newBenchCmd(), newSubscribeCmd())
	return root
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
