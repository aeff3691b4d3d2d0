package connectors

import (
	"fmt"
	"iter"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"gopkg.in/yaml.v3"
)

// Type is the type of a config field.
type Type int

// Field types.
const (
	TypeString    Type = iota
	TypeInt            // an integer
	TypeFloat          // a number
	TypeBool           // true or false
	TypeDuration       // "250ms", "90s", "12h", "7d"
	TypeSize           // bytes: 1048576, "512KiB", "10GiB"
	TypeStrings        // a list of strings; a single string is a list of one
	TypeStringMap      // a mapping of string to string
	TypeObject         // a mapping with Fields of its own
	TypeObjects        // a list of mappings with Fields of their own
	TypeExpr           // an expression (see the filter processor), checked by the component
	TypeAny            // anything; the component decodes it itself
)

var typeNames = [...]string{"string", "int", "float", "bool", "duration", "size", "list of strings", "map of strings",
	"object", "list of objects", "expression", "any"}

func (t Type) String() string { return typeNames[t] }

// Field declares one configuration field of a component.
type Field struct {
	Name     string
	Type     Type
	Doc      string
	Default  any  // used when the field is absent; nil for none
	Required bool // an error when absent
	Enum     []string
	// Min and Max bound a number, size or duration field, written like
	// its Default (1, 0.5, "1KiB", "10ms"); nil for no bound. Values out
	// of bounds are config errors at their place in the YAML, and the
	// bounds show in `weir list`, the docs and the JSON Schema. A
	// duration field that accepts forever (-1) leaves Min unset.
	Min, Max any
	Example  any
	Fields   []Field // of TypeObject and TypeObjects
	// Dataset says the field names hub datasets (a TypeString, which may
	// be a template with {{ }}, or TypeStrings): pipeline files then check
	// the names as they check a pipeline's from.
	Dataset bool
}

// Kind is what a component is.
type Kind int

// Component kinds.
const (
	SourceKind Kind = iota
	ProcessorKind
	SinkKind
)

func (k Kind) String() string { return [...]string{"source", "processor", "sink"}[k] }

// Spec declares a component once: its name, docs, fields and an example.
// Decoding, validation, `weir list`, docs and the JSON Schema all come from
// it.
type Spec struct {
	Name    string
	Kind    Kind
	Summary string // one line
	Doc     string // paragraphs
	Fields  []Field
	// Scalar names the field a non-mapping config sets: `filter: 'x > 1'`
	// means `filter: {condition: 'x > 1'}` when Scalar is "condition".
	Scalar string
	// Inline names a TypeStringMap field that the whole mapping stands
	// for: `set: {env: '"prod"'}` means `set: {fields: {env: '"prod"'}}`
	// when Inline is "fields".
	Inline  string
	Example string // YAML of a complete use
	// Transactional marks a sink that writes only through
	// Resources.Client, so that a pipeline running exactly once
	// (processing: exactly_once) can hand it a transactional client: its
	// writes and the pipeline's offsets commit together.
	Transactional bool
	// OwnTransactions marks a sink that runs transactions on a cluster
	// of its own and keeps the pipeline's source positions in them
	// (TxnSink): it can run exactly once alone, not with other sinks.
	OwnTransactions bool
}

// ConfigError is a configuration problem at a place in the YAML.
type ConfigError struct {
	Line, Column int
	Msg          string
}

func (e ConfigError) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg) }

func errAt(n *yaml.Node, format string, args ...any) ConfigError {
	return ConfigError{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// Config is a component's decoded configuration: every field of its Spec
// present (or defaulted), with the YAML node it came from for errors found
// later.
type Config struct {
	spec   string
	values map[string]any
	nodes  map[string]*yaml.Node
	node   *yaml.Node
}

// Has reports whether the field was set in the YAML (not defaulted).
func (c *Config) Has(name string) bool { _, ok := c.nodes[name]; return ok }

func (c *Config) get(name string) any {
	v, ok := c.values[name]
	if !ok {
		panic(fmt.Sprintf("connectors: %s has no field %q in its spec", c.spec, name))
	}
	return v
}

// String returns a TypeString or TypeExpr field ("" if absent).
func (c *Config) String(name string) string { s, _ := c.get(name).(string); return s }

// Int returns a TypeInt field.
func (c *Config) Int(name string) int { n, _ := c.get(name).(int); return n }

// Float returns a TypeFloat field.
func (c *Config) Float(name string) float64 { f, _ := c.get(name).(float64); return f }

// Bool returns a TypeBool field.
func (c *Config) Bool(name string) bool { b, _ := c.get(name).(bool); return b }

// Duration returns a TypeDuration field.
func (c *Config) Duration(name string) time.Duration { d, _ := c.get(name).(time.Duration); return d }

// Size returns a TypeSize field in bytes.
func (c *Config) Size(name string) int64 { n, _ := c.get(name).(int64); return n }

// Strings returns a TypeStrings field.
func (c *Config) Strings(name string) []string { s, _ := c.get(name).([]string); return s }

// StringMap returns a TypeStringMap field.
func (c *Config) StringMap(name string) map[string]string {
	m, _ := c.get(name).(map[string]string)
	return m
}

// Object returns a TypeObject field (an empty one if absent).
func (c *Config) Object(name string) *Config { o, _ := c.get(name).(*Config); return o }

// Objects returns a TypeObjects field.
func (c *Config) Objects(name string) []*Config { o, _ := c.get(name).([]*Config); return o }

// Node returns the YAML node of a field (TypeAny fields are decoded from
// it), or nil when the field was not set.
func (c *Config) Node(name string) *yaml.Node { return c.nodes[name] }

// Keys lists the keys of a TypeStringMap field in the order written.
func (c *Config) Keys(name string) []string {
	n := c.nodes[name]
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	keys := make([]string, 0, len(n.Content)/2)
	for i := 0; i < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}

// Errorf makes an error about a field at its place in the YAML, for
// problems a constructor finds (an expression that does not compile).
func (c *Config) Errorf(field, format string, args ...any) error {
	n := c.nodes[field]
	if n == nil {
		n = c.node
	}
	if n == nil {
		return fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
	}
	return errAt(n, "%s: %s", field, fmt.Sprintf(format, args...))
}

// ParseConfig decodes and checks a component's YAML against its spec. It
// reports every problem found, each at its line and column.
func ParseConfig(spec *Spec, node *yaml.Node) (*Config, []ConfigError) {
	if spec.Inline != "" && node != nil && node.Kind == yaml.MappingNode &&
		!(len(node.Content) == 2 && node.Content[0].Value == spec.Inline) {
		node = &yaml.Node{Kind: yaml.MappingNode, Line: node.Line, Column: node.Column,
			Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: spec.Inline, Line: node.Line, Column: node.Column}, node}}
	}
	return parseFields(spec.Name, spec.Kind.String(), spec.Fields, spec.Scalar, node)
}

// ParseFields is ParseConfig for a section that is not a component (a
// pipeline's own settings): what and name describe it in errors ("unknown
// field x of pipeline archive").
func ParseFields(what, name string, fields []Field, node *yaml.Node) (*Config, []ConfigError) {
	return parseFields(name, what, fields, "", node)
}

func parseFields(name, what string, fields []Field, scalar string, node *yaml.Node) (*Config, []ConfigError) {
	c := &Config{spec: name, values: map[string]any{}, nodes: map[string]*yaml.Node{}, node: node}
	var errs []ConfigError
	if node != nil && node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	isNull := node == nil || (node.Kind == yaml.ScalarNode && node.Tag == "!!null")
	wrongKind := false
	if !isNull && node.Kind != yaml.MappingNode && scalar != "" {
		// The shorthand: the node is the value of the scalar field.
		node = &yaml.Node{Kind: yaml.MappingNode, Line: node.Line, Column: node.Column,
			Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: scalar, Line: node.Line, Column: node.Column}, node}}
	}
	if !isNull && node.Kind != yaml.MappingNode {
		errs = append(errs, errAt(node, "%s wants a mapping of its fields (%s), not a %s", label(what, name), fieldNames(fields), kindName(node)))
		// Go on as if empty, so every field has its default and the
		// caller can keep checking the rest of the file.
		node, isNull, wrongKind = nil, true, true
	}
	seen := map[string]bool{}
	if !isNull {
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			f := findField(fields, k.Value)
			if f == nil {
				msg := fmt.Sprintf("unknown field %q of %s", k.Value, label(what, name))
				if s := closest(k.Value, fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				} else {
					msg += fmt.Sprintf(" (it has %s)", fieldNames(fields))
				}
				errs = append(errs, errAt(k, "%s", msg))
				continue
			}
			if seen[f.Name] {
				errs = append(errs, errAt(k, "field %q of %s is set twice", f.Name, label(what, name)))
				continue
			}
			seen[f.Name] = true
			val, ferrs := decodeField(name, f, v)
			errs = append(errs, ferrs...)
			c.values[f.Name] = val
			c.nodes[f.Name] = v
		}
	}
	for i := range fields {
		f := &fields[i]
		if seen[f.Name] {
			continue
		}
		if f.Required && !wrongKind {
			at := node
			if at == nil {
				at = &yaml.Node{}
			}
			msg := fmt.Sprintf("%s needs field %q", label(what, name), f.Name)
			if f.Doc != "" {
				msg += " (" + strings.TrimSuffix(f.Doc, ".") + ")"
			}
			errs = append(errs, errAt(at, "%s", msg))
		}
		c.values[f.Name] = defaultValue(name, f)
	}
	return c, errs
}

func defaultValue(component string, f *Field) any {
	if f.Default != nil {
		switch f.Type {
		case TypeDuration:
			if s, ok := f.Default.(string); ok {
				d, _ := parseDuration(s)
				return d
			}
		case TypeSize:
			switch v := f.Default.(type) {
			case string:
				n, _ := humanize.ParseBytes(v)
				return int64(n)
			case int:
				return int64(v)
			}
		case TypeObject:
			c, _ := parseFields(joinName(component, f.Name), "", f.Fields, "", nil)
			return c
		}
		return f.Default
	}
	switch f.Type {
	case TypeString, TypeExpr:
		return ""
	case TypeInt:
		return 0
	case TypeFloat:
		return 0.0
	case TypeBool:
		return false
	case TypeDuration:
		return time.Duration(0)
	case TypeSize:
		return int64(0)
	case TypeStrings:
		return []string(nil)
	case TypeStringMap:
		return map[string]string(nil)
	case TypeObject:
		c, _ := parseFields(joinName(component, f.Name), "", f.Fields, "", nil)
		return c
	case TypeObjects:
		return []*Config(nil)
	}
	return nil
}

func decodeField(component string, f *Field, v *yaml.Node) (any, []ConfigError) {
	if v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	want := func(desc string) (any, []ConfigError) {
		return defaultValue(component, f), []ConfigError{errAt(v, "field %q wants %s, got %s", f.Name, desc, describe(v))}
	}
	scalar := v.Kind == yaml.ScalarNode
	var out any
	switch f.Type {
	case TypeString, TypeExpr:
		if !scalar || v.Tag == "!!null" {
			return want("a string")
		}
		out = v.Value
	case TypeInt:
		n, err := strconv.ParseInt(v.Value, 0, 64)
		if !scalar || err != nil || n > math.MaxInt32 || n < math.MinInt32 {
			return want("an integer")
		}
		out = int(n)
	case TypeFloat:
		x, err := strconv.ParseFloat(v.Value, 64)
		if !scalar || err != nil {
			return want("a number")
		}
		out = x
	case TypeBool:
		b, err := strconv.ParseBool(v.Value)
		if !scalar || err != nil || v.Tag == "!!str" {
			return want("true or false")
		}
		out = b
	case TypeDuration:
		d, err := parseDuration(v.Value)
		if !scalar || err != nil {
			return want("a duration like 500ms, 30s, 12h or 7d")
		}
		out = d
	case TypeSize:
		n, err := humanize.ParseBytes(v.Value)
		if !scalar || err != nil {
			return want("a size like 1048576, 512KiB or 10GiB")
		}
		out = int64(n)
	case TypeStrings:
		if scalar && v.Tag != "!!null" {
			out = []string{v.Value}
			break
		}
		if v.Kind != yaml.SequenceNode {
			return want("a list of strings")
		}
		var ss []string
		for _, e := range v.Content {
			if e.Kind != yaml.ScalarNode {
				return defaultValue(component, f), []ConfigError{errAt(e, "field %q wants a list of strings, got %s in it", f.Name, describe(e))}
			}
			ss = append(ss, e.Value)
		}
		out = ss
	case TypeStringMap:
		if v.Kind != yaml.MappingNode {
			return want("a mapping of names to strings")
		}
		m := map[string]string{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			if v.Content[i+1].Kind != yaml.ScalarNode {
				return defaultValue(component, f), []ConfigError{errAt(v.Content[i+1], "field %q wants string values, got %s for %q", f.Name, describe(v.Content[i+1]), v.Content[i].Value)}
			}
			m[v.Content[i].Value] = v.Content[i+1].Value
		}
		out = m
	case TypeObject:
		c, errs := parseFields(joinName(component, f.Name), "", f.Fields, "", v)
		return c, errs
	case TypeObjects:
		if v.Kind != yaml.SequenceNode {
			return want("a list")
		}
		var cs []*Config
		var errs []ConfigError
		for _, e := range v.Content {
			c, ferrs := parseFields(joinName(component, f.Name), "item of", f.Fields, "", e)
			cs = append(cs, c)
			errs = append(errs, ferrs...)
		}
		return cs, errs
	case TypeAny:
		out = v
	}
	if msg := f.checkBounds(out); msg != "" {
		return defaultValue(component, f), []ConfigError{errAt(v, "%s: must be %s, not %s", f.Name, msg, v.Value)}
	}
	if len(f.Enum) > 0 {
		s := fmt.Sprint(out)
		ok := false
		for _, e := range f.Enum {
			if e == s {
				ok = true
			}
		}
		if !ok {
			return defaultValue(component, f), []ConfigError{errAt(v, "field %q is %q; it must be one of %s", f.Name, s, strings.Join(f.Enum, ", "))}
		}
	}
	return out, nil
}

// bound returns a Min or Max as the field's decoded value: int, float64,
// int64 bytes or time.Duration.
func (f *Field) bound(b any) (float64, bool) {
	switch f.Type {
	case TypeSize:
		switch v := b.(type) {
		case string:
			n, err := humanize.ParseBytes(v)
			return float64(n), err == nil
		case int:
			return float64(v), true
		case int64:
			return float64(v), true
		}
	case TypeDuration:
		switch v := b.(type) {
		case string:
			d, err := parseDuration(v)
			return float64(d), err == nil
		case time.Duration:
			return float64(v), true
		}
	case TypeInt, TypeFloat:
		switch v := b.(type) {
		case int:
			return float64(v), true
		case float64:
			return v, true
		}
	}
	return 0, false
}

// CheckFields checks the declarations themselves: Min and Max written
// as the field's type reads them, on a type that has bounds, and a
// Default within them.
func CheckFields(fields []Field) error {
	for i := range fields {
		f := &fields[i]
		for _, b := range []any{f.Min, f.Max} {
			if b == nil {
				continue
			}
			if _, ok := f.bound(b); !ok {
				return fmt.Errorf("field %s: bound %v is not a %s", f.Name, b, f.Type)
			}
		}
		if f.Default != nil && (f.Min != nil || f.Max != nil) {
			if msg := f.checkBounds(defaultValue("", f)); msg != "" {
				return fmt.Errorf("field %s: default %v is not %s", f.Name, f.Default, msg)
			}
		}
		if err := CheckFields(f.Fields); err != nil {
			return fmt.Errorf("%s.%w", f.Name, err)
		}
	}
	return nil
}

// checkBounds returns what a value out of the field's bounds must be
// ("at least 1KiB", "from 1 to 100"), or "".
func (f *Field) checkBounds(v any) string {
	if f.Min == nil && f.Max == nil {
		return ""
	}
	var x float64
	switch n := v.(type) {
	case int:
		x = float64(n)
	case int64:
		x = float64(n)
	case float64:
		x = n
	case time.Duration:
		x = float64(n)
	default:
		return ""
	}
	lo, hasLo := f.bound(f.Min)
	hi, hasHi := f.bound(f.Max)
	if (!hasLo || x >= lo) && (!hasHi || x <= hi) {
		return ""
	}
	return f.BoundsText()
}

// BoundsText says the field's bounds in words ("at least 1", "at most
// 1GiB", "from 1 to 100"), or "" without bounds.
func (f *Field) BoundsText() string {
	switch {
	case f.Min != nil && f.Max != nil:
		return fmt.Sprintf("from %v to %v", f.Min, f.Max)
	case f.Min != nil:
		return fmt.Sprintf("at least %v", f.Min)
	case f.Max != nil:
		return fmt.Sprintf("at most %v", f.Max)
	}
	return ""
}

func joinName(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// label is how errors name a section: "sink file", "item of file.rules",
// or just "hub" for nested objects.
func label(what, name string) string {
	if what == "" {
		return name
	}
	if name == "" {
		return what
	}
	return what + " " + name
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing (null)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "a " + kindName(n)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	}
	return "node"
}

func findField(fields []Field, name string) *Field {
	for i := range fields {
		if fields[i].Name == name {
			return &fields[i]
		}
	}
	return nil
}

func fieldNames(fields []Field) string {
	if len(fields) == 0 {
		return "no fields"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// closest suggests a field name within two edits of name.
func closest(name string, fields []Field) string {
	return Suggest(name, func(yield func(string) bool) {
		for _, f := range fields {
			if !yield(f.Name) {
				return
			}
		}
	})
}

// Suggest returns the candidate within two edits of name (the closest; the
// first in sort order among equals), or "": the "did you mean" of config
// errors.
func Suggest(name string, candidates iter.Seq[string]) string {
	best, bestD := "", 3
	for c := range candidates {
		if d := editDistance(name, c); d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseDuration accepts Go durations ("90s", "1h30m") plus days ("7d")
// and "forever" (-1).
func ParseDuration(s string) (time.Duration, error) { return parseDuration(s) }

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "forever" || s == "-1" {
		return -1, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}
