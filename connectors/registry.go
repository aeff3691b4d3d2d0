package connectors

import (
	"fmt"
	"sort"
	"sync"
)

// Constructors build a component from its checked config.
type (
	SourceConstructor    func(conf *Config, res Resources) (Source, error)
	ProcessorConstructor func(conf *Config, res Resources) (Processor, error)
	SinkConstructor      func(conf *Config, res Resources) (Sink, error)
)

type entry struct {
	spec      Spec
	source    SourceConstructor
	processor ProcessorConstructor
	sink      SinkConstructor
}

// Registry holds named components. Default is the process-wide one that
// connectors register into from init; tests make their own with
// NewRegistry. A Registry is safe for concurrent use.
type Registry struct {
	mu      sync.RWMutex
	entries [3]map[string]*entry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{}
	for i := range r.entries {
		r.entries[i] = map[string]*entry{}
	}
	return r
}

// Default is the registry every connector package registers into.
var Default = NewRegistry()

func (r *Registry) register(e *entry) error {
	if e.spec.Name == "" {
		return fmt.Errorf("connectors: a %s needs a name", e.spec.Kind)
	}
	if err := CheckFields(e.spec.Fields); err != nil {
		return fmt.Errorf("connectors: %s %q: %w", e.spec.Kind, e.spec.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.entries[e.spec.Kind]
	if _, dup := m[e.spec.Name]; dup {
		return fmt.Errorf("connectors: %s %q is already registered", e.spec.Kind, e.spec.Name)
	}
	m[e.spec.Name] = e
	return nil
}

// RegisterSource adds a source; a duplicate name is an error.
func (r *Registry) RegisterSource(spec Spec, ctor SourceConstructor) error {
	spec.Kind = SourceKind
	return r.register(&entry{spec: spec, source: ctor})
}

// RegisterProcessor adds a processor; a duplicate name is an error.
func (r *Registry) RegisterProcessor(spec Spec, ctor ProcessorConstructor) error {
	spec.Kind = ProcessorKind
	return r.register(&entry{spec: spec, processor: ctor})
}

// RegisterSink adds a sink; a duplicate name is an error.
func (r *Registry) RegisterSink(spec Spec, ctor SinkConstructor) error {
	spec.Kind = SinkKind
	return r.register(&entry{spec: spec, sink: ctor})
}

// MustRegisterSource registers into Default and panics on a duplicate: for
// init functions only.
func MustRegisterSource(spec Spec, ctor SourceConstructor) {
	if err := Default.RegisterSource(spec, ctor); err != nil {
		panic(err)
	}
}

// MustRegisterProcessor is MustRegisterSource for processors.
func MustRegisterProcessor(spec Spec, ctor ProcessorConstructor) {
	if err := Default.RegisterProcessor(spec, ctor); err != nil {
		panic(err)
	}
}

// MustRegisterSink is MustRegisterSource for sinks.
func MustRegisterSink(spec Spec, ctor SinkConstructor) {
	if err := Default.RegisterSink(spec, ctor); err != nil {
		panic(err)
	}
}

// Spec returns a component's spec.
func (r *Registry) Spec(kind Kind, name string) (*Spec, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[kind][name]
	if !ok {
		return nil, false
	}
	return &e.spec, true
}

// Specs lists the components of a kind, sorted by name.
func (r *Registry) Specs(kind Kind) []Spec {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Spec, 0, len(r.entries[kind]))
	for _, e := range r.entries[kind] {
		out = append(out, e.spec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the component names of a kind, sorted.
func (r *Registry) Names(kind Kind) []string {
	specs := r.Specs(kind)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}

func (r *Registry) lookup(kind Kind, name string) (*entry, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.entries[kind][name]
	if !ok {
		return nil, fmt.Errorf("unknown %s %q", kind, name)
	}
	return e, nil
}

// NewSource builds a registered source.
func (r *Registry) NewSource(name string, conf *Config, res Resources) (Source, error) {
	e, err := r.lookup(SourceKind, name)
	if err != nil {
		return nil, err
	}
	return e.source(conf, res)
}

// NewProcessor builds a registered processor.
func (r *Registry) NewProcessor(name string, conf *Config, res Resources) (Processor, error) {
	e, err := r.lookup(ProcessorKind, name)
	if err != nil {
		return nil, err
	}
	return e.processor(conf, res)
}

// NewSink builds a registered sink.
func (r *Registry) NewSink(name string, conf *Config, res Resources) (Sink, error) {
	e, err := r.lookup(SinkKind, name)
	if err != nil {
		return nil, err
	}
	return e.sink(conf, res)
}
