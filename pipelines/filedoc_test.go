package pipelines

import (
	"strings"
	"testing"
)

// TestFileMarkdown checks that `weir list file` documents the top-level
// keys and the settings of pipelines and sinks that are not a component's.
func TestFileMarkdown(t *testing.T) {
	md := FileMarkdown()
	for _, want := range []string{"`hub`", "`datasets`", "`sources`", "`pipelines`", "`tests`",
		"`group`", "`start`", "`broadcast`", "`dead_letter`", "`batching.count`", "`retry.attempts`", "`retry.max_backoff`",
		"`kafka.sasl.mechanism`", "`compression`"} {
		if !strings.Contains(md, want) {
			t.Errorf("FileMarkdown lacks %s", want)
		}
	}
	sum := FileSummary()
	for _, want := range []string{"pipeline", "group, broadcast, start", "batching, retry"} {
		if !strings.Contains(sum, want) {
			t.Errorf("FileSummary lacks %q:\n%s", want, sum)
		}
	}
}
