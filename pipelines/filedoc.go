package pipelines

import (
	"fmt"
	"strings"

	"github.com/weirhub/weir/connectors"
)

// fileSection is a part of a pipeline file with the fields it takes.
type fileSection struct {
	name, where, summary string
	fields               []connectors.Field
}

func fileSections() []fileSection {
	return []fileSection{
		{"file", "the top level", "The keys of a pipeline file.", topFields},
		{"hub", "hub:", "Which hub the file runs against.", hubFields},
		{"dataset", "datasets: {NAME: ...}", "A dataset: partitions, retention, fsync, compression.", datasetFields},
		{"source", "sources: {NAME: {TYPE: {...}, ...}}", "Beside the source's own settings: where its records go.", sourceCommon},
		{"pipeline", "pipelines: {NAME: ...}", "A pipeline: what it reads (group, start, broadcast), its processors, sinks and dead letters.", pipelineFields},
		{"sink", "pipelines: {NAME: {to: [{TYPE: {...}, ...}]}}", "Beside each sink's own settings: its name, batching and retries.", sinkCommon},
	}
}

// FileSummary lists the sections of a pipeline file, one line each, for
// `weir list`.
func FileSummary() string {
	var b strings.Builder
	for _, s := range fileSections() {
		names := make([]string, len(s.fields))
		for i, f := range s.fields {
			names[i] = f.Name
		}
		fmt.Fprintf(&b, "  %-12s %s (%s)\n", s.name, s.summary, strings.Join(names, ", "))
	}
	return b.String()
}

// FileMarkdown documents the sections of a pipeline file, the top-level
// keys and the settings every source, pipeline and sink takes beside its
// component's own, from the same declarations that check a file.
func FileMarkdown() string {
	var b strings.Builder
	for _, s := range fileSections() {
		fmt.Fprintf(&b, "### %s (`%s`)\n\n%s\n\n%s\n", s.name, s.where, s.summary, connectors.FieldsMarkdown(s.fields))
	}
	return b.String()
}
