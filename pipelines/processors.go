package pipelines

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

// The processors are registered here, in the package that runs them.
func init() {
	for _, p := range []struct {
		spec connectors.Spec
		ctor connectors.ProcessorConstructor
	}{
		{parseSpec, newParse},
		{filterSpec, newFilter(false)},
		{dropSpec, newFilter(true)},
		{setSpec, newSet},
		{renameSpec, newRename},
		{deleteSpec, newDelete},
		{routeSpec, newRoute},
		{sampleSpec, newSample},
		{dedupeSpec, newDedupe},
		{timestampSpec, newTimestamp},
		{rateLimitSpec, newRateLimit},
	} {
		connectors.MustRegisterProcessor(p.spec, p.ctor)
	}
}

// --- parse

var parseSpec = connectors.Spec{
	Name:    "parse",
	Summary: "Parse the value (or one field) as JSON, logfmt, key=value or a regular expression with named groups, into JSON fields.",
	Doc: "A record that does not parse goes to the dead-letter dataset with the parser's reason, unless on_error is keep. " +
		"With field, the field's text is parsed and its fields merged into the record (or put under target).",
	Scalar: "format",
	Fields: []connectors.Field{
		{Name: "format", Type: connectors.TypeString, Required: true, Enum: []string{"json", "logfmt", "kv", "regex"}, Doc: "The format of the text."},
		{Name: "field", Type: connectors.TypeString, Doc: "Parse this field's text instead of the whole value."},
		{Name: "target", Type: connectors.TypeString, Doc: "Put the parsed fields under this field instead of at the top."},
		{Name: "pattern", Type: connectors.TypeString, Doc: "For regex: a Go regular expression with named groups (?P<name>...)."},
		{Name: "keep_original", Type: connectors.TypeString, Doc: "Keep the text that was parsed in this field."},
		{Name: "field_separator", Type: connectors.TypeString, Default: " ", Doc: "For kv: what separates pairs."},
		{Name: "value_separator", Type: connectors.TypeString, Default: "=", Doc: "For kv: what separates a key from its value."},
		{Name: "on_error", Type: connectors.TypeString, Default: "dead_letter", Enum: []string{"dead_letter", "keep"},
			Doc: "What becomes of a record whose text does not parse: dead_letter sends it to the dead-letter dataset with the reason; " +
				"keep lets it go on as it was, except that a whole value that is not a JSON object becomes {\"message\": \"<the text>\"}, " +
				"so that JSON lines and plain lines of one log both become objects."},
	},
	Example: `processors:
  - parse: json
  - parse: {format: json, on_error: keep}   # JSON lines parsed, other lines become {"message": "..."}
  - parse: {format: regex, field: message, pattern: '^(?P<method>\S+) (?P<path>\S+) (?P<status>\d+)$'}`,
}

type parseProc struct {
	format        string
	field, target string
	keep          string
	keepUnparsed  bool // on_error: keep
	re            *regexp.Regexp
	kv            codecs.KVOptions
	buf           []byte
}

func newParse(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	p := &parseProc{format: c.String("format"), field: c.String("field"), target: c.String("target"), keep: c.String("keep_original"),
		keepUnparsed: c.String("on_error") == "keep"}
	switch p.format {
	case "regex":
		if c.String("pattern") == "" {
			return nil, c.Errorf("pattern", "format regex needs a pattern with named groups")
		}
		re, err := regexp.Compile(c.String("pattern"))
		if err != nil {
			return nil, c.Errorf("pattern", "%v", err)
		}
		if slices.IndexFunc(re.SubexpNames(), func(s string) bool { return s != "" }) < 0 {
			return nil, c.Errorf("pattern", "the pattern has no named groups (?P<name>...); nothing would be extracted")
		}
		p.re = re
	case "kv":
		fs, vs := c.String("field_separator"), c.String("value_separator")
		if len(fs) != 1 || len(vs) != 1 {
			return nil, c.Errorf("field_separator", "separators must be single bytes")
		}
		p.kv = codecs.KVOptions{FieldSep: fs[0], ValueSep: vs[0], TrimQuotes: true}
	}
	return p, nil
}

func (p *parseProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	p.buf = p.buf[:0]
	for _, m := range batch {
		text := m.Value
		if p.field != "" {
			v := m.Get(p.field)
			if v == nil {
				if !p.keepUnparsed {
					m.Fail("parse %s: the record has no field %q", p.format, p.field)
				}
				continue
			}
			text = []byte(connectors.String(v))
		}
		if p.format == "json" && p.field == "" && p.target == "" && p.keep == "" {
			// The common case: the value itself is the object.
			if _, err := m.Fields(); err != nil {
				p.unparsed(m, text, "parse json: %v", err)
			}
			continue
		}
		start := len(p.buf)
		var err error
		switch p.format {
		case "json":
			p.buf = append(p.buf, text...)
			if err = fastjson.ValidateBytes(text); err == nil && (len(text) == 0 || firstNonSpace(text) != '{') {
				err = fmt.Errorf("not a JSON object")
			}
		case "logfmt":
			p.buf, err = codecs.AppendLogfmtJSON(p.buf, text)
		case "kv":
			p.buf, err = codecs.AppendKVJSON(p.buf, text, p.kv)
		case "regex":
			p.buf, err = p.appendRegex(p.buf, text)
		}
		if err != nil {
			p.buf = p.buf[:start]
			p.unparsed(m, text, "parse %s: %v", p.format, err)
			continue
		}
		parsed := p.buf[start:len(p.buf):len(p.buf)]
		if p.field == "" && p.target == "" && p.keep == "" {
			m.Release()
			m.Value = parsed
			if _, err := m.Fields(); err != nil {
				m.Fail("parse %s: %v", p.format, err)
			}
			continue
		}
		if err := p.merge(m, parsed, text); err != nil {
			m.Fail("parse %s: %v", p.format, err)
		}
	}
	return batch, nil
}

// unparsed handles a record whose text did not parse: it fails, or with
// on_error: keep goes on, a whole value that is not a JSON object
// becoming {"message": text}.
func (p *parseProc) unparsed(m *connectors.Message, text []byte, format string, args ...any) {
	switch {
	case !p.keepUnparsed:
		m.Fail(format, args...)
	case p.field != "":
		// The record goes on as it was.
	default:
		if p.format != "json" {
			if _, err := m.Fields(); err == nil {
				return // an object already: JSON that is not logfmt, say
			}
		}
		start := len(p.buf)
		p.buf = append(p.buf, `{"message":`...)
		p.buf = codecs.AppendJSONString(p.buf, text)
		p.buf = append(p.buf, '}')
		m.Release()
		m.Value = p.buf[start:len(p.buf):len(p.buf)]
	}
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return c
		}
	}
	return 0
}

// merge puts the parsed object into the record: under target, or its
// fields at the top level.
func (p *parseProc) merge(m *connectors.Message, parsed, original []byte) error {
	if p.field == "" {
		// The whole value was text: the record becomes an object.
		orig := string(original)
		m.Release()
		m.Value = []byte("{}")
		if _, err := m.Fields(); err != nil {
			return err
		}
		if p.keep != "" {
			m.Set(p.keep, m.Arena().NewString(orig))
		}
	} else if p.keep != "" {
		m.Set(p.keep, m.Arena().NewString(string(original)))
	}
	var sub fastjson.Parser
	v, err := sub.ParseBytes(parsed)
	if err != nil {
		return err
	}
	a := m.Arena()
	if p.target != "" {
		return m.Set(p.target, copyValue(a, v))
	}
	var setErr error
	v.GetObject().Visit(func(k []byte, x *fastjson.Value) {
		if setErr == nil {
			setErr = m.Set(string(k), copyValue(a, x))
		}
	})
	return setErr
}

// copyValue rebuilds v in the arena a, so it outlives v's parser.
func copyValue(a *fastjson.Arena, v *fastjson.Value) *fastjson.Value {
	switch v.Type() {
	case fastjson.TypeString:
		return a.NewStringBytes(v.GetStringBytes())
	case fastjson.TypeNumber:
		return a.NewNumberString(string(v.MarshalTo(nil)))
	case fastjson.TypeTrue:
		return a.NewTrue()
	case fastjson.TypeFalse:
		return a.NewFalse()
	case fastjson.TypeNull:
		return a.NewNull()
	case fastjson.TypeArray:
		arr := a.NewArray()
		for i, x := range v.GetArray() {
			arr.SetArrayItem(i, copyValue(a, x))
		}
		return arr
	}
	obj := a.NewObject()
	v.GetObject().Visit(func(k []byte, x *fastjson.Value) { obj.Set(string(k), copyValue(a, x)) })
	return obj
}

func (p *parseProc) appendRegex(dst, text []byte) ([]byte, error) {
	match := p.re.FindSubmatchIndex(text)
	if match == nil {
		return dst, fmt.Errorf("the text does not match %s", p.re)
	}
	dst = append(dst, '{')
	first := true
	for i, name := range p.re.SubexpNames() {
		if name == "" || match[2*i] < 0 {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = strconv.AppendQuote(dst, name)
		dst = append(dst, ':')
		dst = codecs.AppendJSONString(dst, text[match[2*i]:match[2*i+1]])
	}
	return append(dst, '}'), nil
}

// --- filter and drop

var filterSpec = connectors.Spec{
	Name:    "filter",
	Summary: "Keep the records for which a condition is true; drop the rest.",
	Doc: "The condition is an expression over the record's fields (github.com/expr-lang/expr syntax): a top-level " +
		"field is a variable (nil when missing), and _key, _value, _time, _dataset, _partition, _offset and " +
		"_headers (a map: _headers[\"weir.file\"]) are the record's own. A missing field is nil: == and != compare " +
		"it as nil, and an ordering comparison (<, <=, >, >=) with it is false, so `status >= 400` drops a record " +
		"without status instead of failing it. Only expr's built-in functions can be called (len, upper, lower, " +
		"trim, split, now, duration, ...); `weir lint` reports any other name, and every expression that does not " +
		"compile, at its line and column. The same holds for every expression (set, drop, route).",
	Scalar: "condition",
	Fields: []connectors.Field{{Name: "condition", Type: connectors.TypeExpr, Required: true, Doc: "Keep records for which this is true."}},
	Example: `processors:
  - filter: 'level != "debug" && status >= 400'`,
}

var dropSpec = connectors.Spec{
	Name:    "drop",
	Summary: "Drop the records for which a condition is true.",
	Scalar:  "condition",
	Fields:  []connectors.Field{{Name: "condition", Type: connectors.TypeExpr, Required: true, Doc: "Drop records for which this is true."}},
	Example: `processors:
  - drop: 'path startsWith "/healthz"'`,
}

type filterProc struct {
	cond *Expr
	drop bool
}

func newFilter(drop bool) connectors.ProcessorConstructor {
	return func(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
		e, err := CompileExpr(c.String("condition"))
		if err != nil {
			return nil, exprErrAt(c, c.Node("condition"), "condition", err)
		}
		return &filterProc{cond: e, drop: drop}, nil
	}
}

func (p *filterProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	out := batch[:0]
	for _, m := range batch {
		ok, err := p.cond.Bool(m)
		if err != nil {
			m.Err = err
			out = append(out, m)
			continue
		}
		if ok != p.drop {
			out = append(out, m)
		} else {
			m.Release()
		}
	}
	return out, nil
}

// --- set

var setSpec = connectors.Spec{
	Name:    "set",
	Summary: "Set fields to the values of expressions (computed fields).",
	Doc:     "Each key is a field to set, each value an expression over the record; a quoted string constant is written '\"prod\"'.",
	Inline:  "fields",
	Fields:  []connectors.Field{{Name: "fields", Type: connectors.TypeStringMap, Required: true, Doc: "Field name to expression."}},
	Example: `processors:
  - set: {env: '"prod"', latency_s: 'latency_ms / 1000.0', slow: 'latency_ms > 1000'}`,
}

type setProc struct {
	names []string
	exprs []*Expr
}

func newSet(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	p := &setProc{}
	m := c.StringMap("fields")
	for _, name := range c.Keys("fields") {
		e, err := CompileExpr(m[name])
		if err != nil {
			return nil, exprErrAt(c, mapValue(c.Node("fields"), name), "fields", fmt.Errorf("%s: %w", name, err))
		}
		p.names = append(p.names, name)
		p.exprs = append(p.exprs, e)
	}
	return p, nil
}

func (p *setProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		if _, err := m.Fields(); err != nil {
			m.Fail("set: %v (parse the record first)", err)
			continue
		}
		for i, e := range p.exprs {
			jv, err := e.Value(m)
			if err != nil {
				m.Fail("set %s: %v", p.names[i], err)
				break
			}
			setPath(m, p.names[i], jv)
		}
	}
	return batch, nil
}

// setPath sets a possibly dotted field, creating objects on the way.
func setPath(m *connectors.Message, path string, v *fastjson.Value) {
	if !strings.Contains(path, ".") {
		m.Set(path, v)
		return
	}
	parts := strings.Split(path, ".")
	o, _ := m.Fields()
	a := m.Arena()
	for _, k := range parts[:len(parts)-1] {
		next := o.Get(k)
		if next == nil || next.Type() != fastjson.TypeObject {
			next = a.NewObject()
			o.Set(k, next)
		}
		o = next.GetObject()
	}
	o.Set(parts[len(parts)-1], v)
	m.Changed()
}

// parentOf returns the object holding a possibly dotted field and its last
// key.
func parentOf(m *connectors.Message, path string) (*fastjson.Object, string) {
	o, err := m.Fields()
	if err != nil {
		return nil, ""
	}
	parts := strings.Split(path, ".")
	for _, k := range parts[:len(parts)-1] {
		v := o.Get(k)
		if v == nil || v.Type() != fastjson.TypeObject {
			return nil, ""
		}
		o = v.GetObject()
	}
	return o, parts[len(parts)-1]
}

// --- rename and delete

var renameSpec = connectors.Spec{
	Name:    "rename",
	Summary: "Rename fields.",
	Inline:  "fields",
	Fields:  []connectors.Field{{Name: "fields", Type: connectors.TypeStringMap, Required: true, Doc: "Old name to new name (dotted paths allowed)."}},
	Example: `processors:
  - rename: {msg: message, "http.code": status}`,
}

type renameProc struct{ from, to []string }

func newRename(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	p := &renameProc{}
	m := c.StringMap("fields")
	for _, k := range c.Keys("fields") {
		p.from = append(p.from, k)
		p.to = append(p.to, m[k])
	}
	return p, nil
}

func (p *renameProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		if _, err := m.Fields(); err != nil {
			m.Fail("rename: %v (parse the record first)", err)
			continue
		}
		for i, from := range p.from {
			o, k := parentOf(m, from)
			if o == nil {
				continue
			}
			v := o.Get(k)
			if v == nil {
				continue
			}
			o.Del(k)
			m.Changed()
			setPath(m, p.to[i], v)
		}
	}
	return batch, nil
}

var deleteSpec = connectors.Spec{
	Name:    "delete",
	Summary: "Delete fields.",
	Scalar:  "fields",
	Fields:  []connectors.Field{{Name: "fields", Type: connectors.TypeStrings, Required: true, Doc: "Fields to delete (dotted paths allowed)."}},
	Example: `processors:
  - delete: [ua, trace]`,
}

type deleteProc struct{ fields []string }

func newDelete(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	return &deleteProc{fields: c.Strings("fields")}, nil
}

func (p *deleteProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		if _, err := m.Fields(); err != nil {
			m.Fail("delete: %v (parse the record first)", err)
			continue
		}
		for _, f := range p.fields {
			if o, k := parentOf(m, f); o != nil && o.Get(k) != nil {
				o.Del(k)
				m.Changed()
			}
		}
	}
	return batch, nil
}

// --- route

var routeSpec = connectors.Spec{
	Name:    "route",
	Summary: "Send records to some of the pipeline's sinks, by condition or by key pattern.",
	Doc: "Rules are tried in order; the first that matches picks the sinks (with mode: all, every matching rule adds its sinks). " +
		"A key pattern is matched against the record key split at dots, as in AMQP topic exchanges: * matches one word, # any number. " +
		"Records that match no rule go to default (all sinks when default is not given).",
	Fields: []connectors.Field{
		{Name: "rules", Type: connectors.TypeObjects, Required: true, Doc: "Routing rules.", Fields: []connectors.Field{
			{Name: "when", Type: connectors.TypeExpr, Doc: "A condition."},
			{Name: "key", Type: connectors.TypeString, Doc: "A key pattern like eu.*.web or logs.#."},
			{Name: "to", Type: connectors.TypeStrings, Required: true, Doc: "Sink names."},
		}},
		{Name: "default", Type: connectors.TypeStrings, Doc: "Sinks for records no rule matches (default: all)."},
		{Name: "mode", Type: connectors.TypeString, Default: "first", Enum: []string{"first", "all"}, Doc: "first: the first matching rule picks the sinks; all: every matching rule adds its sinks."},
	},
	Example: `processors:
  - route:
      rules:
        - {when: 'level == "error"', to: [alerts, archive]}
        - {key: 'eu.#', to: [eu_archive]}
      default: [archive]`,
}

type routeRule struct {
	when *Expr
	key  []string // pattern words
	mask uint64
}

type routeProc struct {
	rules []routeRule
	def   uint64
	all   bool
}

func newRoute(c *connectors.Config, res connectors.Resources) (connectors.Processor, error) {
	mask := func(field string, names []string) (uint64, error) {
		var m uint64
		for _, n := range names {
			i := slices.Index(res.Sinks, n)
			if i < 0 {
				return 0, c.Errorf(field, "no sink named %q in this pipeline (sinks: %s)", n, strings.Join(res.Sinks, ", "))
			}
			m |= 1 << i
		}
		return m, nil
	}
	p := &routeProc{all: c.String("mode") == "all"}
	for _, r := range c.Objects("rules") {
		var rule routeRule
		if r.String("when") == "" && r.String("key") == "" {
			return nil, r.Errorf("to", "a rule needs when (a condition) or key (a pattern)")
		}
		if r.String("when") != "" {
			e, err := CompileExpr(r.String("when"))
			if err != nil {
				return nil, exprErrAt(r, r.Node("when"), "when", err)
			}
			rule.when = e
		}
		if r.String("key") != "" {
			rule.key = strings.Split(r.String("key"), ".")
		}
		m, err := mask("rules", r.Strings("to"))
		if err != nil {
			return nil, err
		}
		rule.mask = m
		p.rules = append(p.rules, rule)
	}
	if c.Has("default") {
		m, err := mask("default", c.Strings("default"))
		if err != nil {
			return nil, err
		}
		p.def = m
		if m == 0 {
			p.def = 1 << 63 // "none": a bit no sink has
		}
	}
	return p, nil
}

func (p *routeProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		var routes uint64
		for _, r := range p.rules {
			ok := true
			if r.key != nil {
				ok = matchTopic(r.key, m.Key)
			}
			if ok && r.when != nil {
				var err error
				if ok, err = r.when.Bool(m); err != nil {
					m.Err = err
					break
				}
			}
			if ok {
				routes |= r.mask
				if !p.all {
					break
				}
			}
		}
		if routes == 0 {
			routes = p.def
		}
		m.Routes = routes
	}
	return batch, nil
}

// matchTopic matches a dotted key against an AMQP-style pattern.
func matchTopic(pattern []string, key []byte) bool {
	words := strings.Split(string(key), ".")
	var match func(p, w int) bool
	match = func(p, w int) bool {
		for p < len(pattern) {
			switch pattern[p] {
			case "#":
				for i := w; i <= len(words); i++ {
					if match(p+1, i) {
						return true
					}
				}
				return false
			case "*":
				if w >= len(words) {
					return false
				}
			default:
				if w >= len(words) || words[w] != pattern[p] {
					return false
				}
			}
			p++
			w++
		}
		return w == len(words)
	}
	return match(0, 0)
}

// --- sample

var sampleSpec = connectors.Spec{
	Name:    "sample",
	Summary: "Keep a fraction of the records: at random, or consistently by a field so that all records of one key are kept or dropped together.",
	Scalar:  "rate",
	Fields: []connectors.Field{
		{Name: "rate", Type: connectors.TypeFloat, Required: true, Doc: "Fraction kept, 0 to 1."},
		{Name: "field", Type: connectors.TypeString, Doc: "Sample by this field's value (_key: the record key) instead of at random."},
		{Name: "seed", Type: connectors.TypeInt, Default: 1, Doc: "Seed of the random choice, for repeatable runs (unused with field)."},
	},
	Example: `processors:
  - sample: {rate: 0.1, field: trace}`,
}

type sampleProc struct {
	rate  float64
	field string
	rng   *rand.Rand
}

func newSample(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	r := c.Float("rate")
	if r < 0 || r > 1 {
		return nil, c.Errorf("rate", "%v is not between 0 and 1", r)
	}
	return &sampleProc{rate: r, field: c.String("field"), rng: rand.New(rand.NewPCG(uint64(c.Int("seed")), 7))}, nil
}

func (p *sampleProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	out := batch[:0]
	for _, m := range batch {
		var keep bool
		if p.field == "" {
			keep = p.rng.Float64() < p.rate
		} else {
			var b []byte
			if p.field == "_key" {
				b = m.Key
			} else {
				b = connectors.AppendText(nil, m.Get(p.field))
			}
			// The same key must sample the same way in every worker and
			// run: hash with a fixed seed.
			h := fnv64(b)
			keep = float64(h%1_000_000)/1_000_000 < p.rate
		}
		if keep {
			out = append(out, m)
		} else {
			m.Release()
		}
	}
	return out, nil
}

func fnv64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// --- dedupe

var dedupeSpec = connectors.Spec{
	Name:    "dedupe",
	Summary: "Drop records whose key was already seen within a time window.",
	Doc:     "The key is a field's value (or the record key with field: _key). The memory of seen keys is bounded by max_keys (oldest forgotten first) and is not kept across restarts.",
	Scalar:  "field",
	Fields: []connectors.Field{
		{Name: "field", Type: connectors.TypeString, Default: "_key", Doc: "Field whose value identifies duplicates (_key: the record key)."},
		{Name: "window", Type: connectors.TypeDuration, Default: "10m", Doc: "How long a key is remembered."},
		{Name: "max_keys", Type: connectors.TypeInt, Default: 1000000, Min: 1, Doc: "Most keys remembered."},
	},
	Example: `processors:
  - dedupe: {field: event_id, window: 1h}`,
}

type dedupeProc struct {
	field  string
	window time.Duration
	max    int
	seen   map[string]time.Time
	order  []dedupeEntry // insertion order, for expiry
	head   int
	now    func() time.Time
}

type dedupeEntry struct {
	key string
	at  time.Time
}

func newDedupe(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	return &dedupeProc{field: c.String("field"), window: c.Duration("window"), max: c.Int("max_keys"),
		seen: map[string]time.Time{}, now: time.Now}, nil
}

func (p *dedupeProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	now := p.now()
	// Forget keys older than the window, or beyond the limit.
	for p.head < len(p.order) && (now.Sub(p.order[p.head].at) > p.window || len(p.seen) > p.max) {
		e := p.order[p.head]
		if t, ok := p.seen[e.key]; ok && t.Equal(e.at) {
			delete(p.seen, e.key)
		}
		p.head++
	}
	if p.head > 4096 && p.head > len(p.order)/2 {
		p.order = append(p.order[:0], p.order[p.head:]...)
		p.head = 0
	}
	out := batch[:0]
	var buf []byte
	for _, m := range batch {
		if p.field == "_key" {
			buf = append(buf[:0], m.Key...)
		} else {
			v := m.Get(p.field)
			if v == nil {
				out = append(out, m) // no key: not a duplicate of anything
				continue
			}
			buf = connectors.AppendText(buf[:0], v)
		}
		if t, ok := p.seen[string(buf)]; ok && now.Sub(t) <= p.window {
			m.Release()
			continue
		}
		k := string(buf)
		p.seen[k] = now
		p.order = append(p.order, dedupeEntry{k, now})
		out = append(out, m)
	}
	return out, nil
}

// --- timestamp

var timestampSpec = connectors.Spec{
	Name:    "timestamp",
	Summary: "Take the record time from a field.",
	Doc:     "Formats: rfc3339 (with or without fraction), unix, unix_ms, unix_us, unix_ns, or a Go layout such as '02/Jan/2006:15:04:05 -0700'. A record whose field does not parse goes to the dead-letter dataset.",
	Scalar:  "field",
	Fields: []connectors.Field{
		{Name: "field", Type: connectors.TypeString, Required: true, Doc: "The field holding the time."},
		{Name: "format", Type: connectors.TypeString, Default: "rfc3339", Doc: "How the time is written."},
		{Name: "timezone", Type: connectors.TypeString, Default: "UTC", Doc: "Zone of times without one."},
	},
	Example: `processors:
  - timestamp: {field: ts, format: rfc3339}`,
}

type timestampProc struct {
	field, format string
	loc           *time.Location
}

func newTimestamp(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	loc, err := time.LoadLocation(c.String("timezone"))
	if err != nil {
		return nil, c.Errorf("timezone", "%v", err)
	}
	return &timestampProc{field: c.String("field"), format: c.String("format"), loc: loc}, nil
}

func (p *timestampProc) Process(_ context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for _, m := range batch {
		v := m.Get(p.field)
		if v == nil {
			m.Fail("timestamp: the record has no field %q", p.field)
			continue
		}
		t, err := parseTime(v, p.format, p.loc)
		if err != nil {
			m.Fail("timestamp: field %q: %v", p.field, err)
			continue
		}
		m.Time = t
	}
	return batch, nil
}

func parseTime(v *fastjson.Value, format string, loc *time.Location) (time.Time, error) {
	if v.Type() == fastjson.TypeNumber {
		f := v.GetFloat64()
		switch format {
		case "unix", "rfc3339":
			return time.Unix(0, int64(f*1e9)).UTC(), nil
		case "unix_ms":
			return time.UnixMilli(int64(f)).UTC(), nil
		case "unix_us":
			return time.UnixMicro(int64(f)).UTC(), nil
		case "unix_ns":
			return time.Unix(0, int64(f)).UTC(), nil
		}
		return time.Time{}, fmt.Errorf("a number, but format is %s", format)
	}
	s := string(v.GetStringBytes())
	switch format {
	case "rfc3339":
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t, err = time.ParseInLocation("2006-01-02T15:04:05.999999999", s, loc)
		}
		return t, err
	case "unix", "unix_ms", "unix_us", "unix_ns":
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a number", s)
		}
		mult := map[string]float64{"unix": 1e9, "unix_ms": 1e6, "unix_us": 1e3, "unix_ns": 1}[format]
		return time.Unix(0, int64(n*mult)).UTC(), nil
	}
	return time.ParseInLocation(format, s, loc)
}

// --- rate_limit

var rateLimitSpec = connectors.Spec{
	Name:    "rate_limit",
	Summary: "Let at most rate records per second through (a token bucket); the pipeline waits, and the backlog stays in the hub.",
	Scalar:  "rate",
	Fields: []connectors.Field{
		{Name: "rate", Type: connectors.TypeFloat, Required: true, Doc: "Records per second."},
		{Name: "burst", Type: connectors.TypeInt, Doc: "Records allowed at once (default: one second's worth)."},
	},
	Example: `processors:
  - rate_limit: {rate: 5000}`,
}

type rateLimitProc struct{ lim *rate.Limiter }

func newRateLimit(c *connectors.Config, _ connectors.Resources) (connectors.Processor, error) {
	r := c.Float("rate")
	if r <= 0 {
		return nil, c.Errorf("rate", "must be more than 0")
	}
	burst := c.Int("burst")
	if burst <= 0 {
		burst = max(int(r), 1)
	}
	return &rateLimitProc{lim: rate.NewLimiter(rate.Limit(r), burst)}, nil
}

func (p *rateLimitProc) Process(ctx context.Context, batch []*connectors.Message) ([]*connectors.Message, error) {
	for n := len(batch); n > 0; {
		k := min(n, p.lim.Burst())
		if err := p.lim.WaitN(ctx, k); err != nil {
			return nil, err
		}
		n -= k
	}
	return batch, nil
}

// exprErrAt places an expression's compile error at its line and column
// in the file: the scalar n holding it, plus the offset in the
// expression (past an opening quote). Without n (or for a block scalar,
// where columns do not add up) it falls back to the field's place.
func exprErrAt(c *connectors.Config, n *yaml.Node, field string, err error) error {
	var ee *ExprError
	if n == nil || n.Kind != yaml.ScalarNode || !errors.As(err, &ee) ||
		n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 || strings.Contains(ee.Src, "\n") {
		return c.Errorf(field, "%v", err)
	}
	col := n.Column + ee.Offset
	if n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		col++
	}
	return connectors.ConfigError{Line: n.Line, Column: col, Msg: err.Error()}
}

// mapValue is the value node of key in the mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
