package pipelines_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/pipelines"
)

// shout is a custom processor: it upper-cases each record's value and
// appends a suffix from its config.
type shout struct{ suffix []byte }

// Process implements connectors.Processor. A processor owns the messages
// of its batch: it may change them, drop them (leave them out of the
// result) or add new ones.
func (p *shout) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		m.Value = append(bytes.ToUpper(m.Value), p.suffix...)
	}
	return batch, nil
}

// words is a finite source of the words in its config.
type words struct {
	words []string
	done  bool
}

func (s *words) Read(context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if s.done {
		return nil, nil, connectors.ErrEndOfInput
	}
	s.done = true
	var batch []*connectors.Message
	for _, w := range s.words {
		batch = append(batch, &connectors.Message{Value: []byte(w)})
	}
	return batch, func(context.Context, error) error { return nil }, nil
}

func (s *words) Close(context.Context) error { return nil }

// printer is a sink that prints each value.
type printer struct{}

func (printer) Write(_ context.Context, batch []*connectors.Message) error {
	for _, m := range batch {
		fmt.Println(string(m.Value))
	}
	return nil
}

func (printer) Close(context.Context) error { return nil }

// Example_customProcessor registers a processor, with a source and a sink
// to show it, in a registry of its own (connectors.Default holds the
// built-in components; a program registers its own there from init with
// connectors.MustRegisterProcessor), and runs a pipeline file that uses
// them. Each component declares its fields once: the file is checked
// against them, and `weir list` and the JSON Schema show them.
func Example_customProcessor() {
	reg := connectors.NewRegistry()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	must(reg.RegisterProcessor(connectors.Spec{
		Name:    "shout",
		Summary: "Upper-case the value and append a suffix.",
		Scalar:  "suffix",
		Fields: []connectors.Field{
			{Name: "suffix", Type: connectors.TypeString, Default: "!", Doc: "Appended to every value."},
		},
	}, func(conf *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
		return &shout{suffix: []byte(conf.String("suffix"))}, nil
	}))
	must(reg.RegisterSource(connectors.Spec{
		Name:    "words",
		Summary: "The words of the config, once.",
		Scalar:  "words",
		Fields:  []connectors.Field{{Name: "words", Type: connectors.TypeStrings, Required: true}},
	}, func(conf *connectors.Config, _ connectors.Resources) (connectors.Source, error) {
		return &words{words: conf.Strings("words")}, nil
	}))
	must(reg.RegisterSink(connectors.Spec{Name: "print", Summary: "Print each value."},
		func(*connectors.Config, connectors.Resources) (connectors.Sink, error) { return printer{}, nil }))

	dir, err := os.MkdirTemp("", "weir-example")
	must(err)
	defer os.RemoveAll(dir)
	file := fmt.Sprintf(`
hub: {data_dir: %s}
datasets: {greetings: {partitions: 1}}
sources:
  in: {words: [hello, weir], to: greetings}
pipelines:
  loud:
    from: greetings
    processors: [{shout: "!!"}]
    to: [{print: {}}]
`, dir)
	cfg, err := pipelines.Load("example.yaml", []byte(file), pipelines.LoadOptions{Registry: reg})
	must(err)
	e, err := pipelines.New(cfg, pipelines.Options{Registry: reg, UntilDrained: true})
	must(err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(e.Run(ctx))
	// Output:
	// HELLO!!
	// WEIR!!
}
