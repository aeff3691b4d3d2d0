package sources

import (
	"context"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/weirhub/weir/connectors"
)

var generateSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "generate",
	Summary: "Generate realistic web access-log records: for demos, tests and benchmarks.",
	Doc: "Records look like a fleet of web servers' access logs: 12 hosts, a weighted mix of methods and API, " +
		"static and search paths, statuses (about 88% 2xx, 4% 3xx, 6% 4xx, 2% 5xx), levels (error for 5xx, warn " +
		"for 4xx and very slow requests, debug for about a quarter of all records, else info), latencies and sizes " +
		"with long tails, a pool of client addresses and user agents, and a random trace id. In JSON a record is " +
		"about 270 bytes:\n\n" +
		"    {\"ts\":\"2026-01-01T00:00:00.000Z\",\"level\":\"info\",\"host\":\"web-03\",\"method\":\"GET\"," +
		"\"path\":\"/api/v1/orders/18311\",\"status\":200,\"latency_ms\":12.5,\"bytes\":5123,\"ua\":\"...\"," +
		"\"ip\":\"10.1.2.3\",\"trace\":\"...\"}\n\n" +
		"Records are stamped near the current time: without start, the clock starts at the wall-clock time of the " +
		"first read; with a rate, records are paced in real time and advance by 1/rate each, and without one they " +
		"advance by 1µs each and never fall behind the wall clock. So a dataset's retention.time applies to them as " +
		"to live data. With start (an RFC 3339 time), the clock starts there and advances by 1/rate per record (1ms " +
		"with rate 0) whatever the speed, so the same seed and start give byte-identical records. A record's " +
		"time is its ts. The source ends after count records or, with a rate, after rate*duration records; " +
		"without a rate, duration is wall-clock time.",
	Fields: []connectors.Field{
		{Name: "format", Type: connectors.TypeString, Default: "json", Enum: []string{"json", "logfmt", "line"},
			Doc: "json: an object per record; logfmt: key=value pairs; line: nginx combined log format plus the request time in seconds."},
		{Name: "rate", Type: connectors.TypeFloat, Default: 0.0, Doc: "Records per second; 0: as fast as they are read."},
		{Name: "count", Type: connectors.TypeInt, Default: 0, Min: 0, Doc: "Records in all; 0: no limit."},
		{Name: "duration", Type: connectors.TypeDuration, Default: "0s", Min: "0s", Doc: "How long to generate (see above); 0: no limit."},
		{Name: "seed", Type: connectors.TypeInt, Default: 1, Doc: "Seed of the random choices: the same seed gives the same records."},
		{Name: "start", Type: connectors.TypeString, Doc: "RFC 3339 time a fixed virtual clock starts at, for reproducible records (see above). Default: the current time.", Example: "2026-11-21T10:00:00Z"},
		{Name: "key_field", Type: connectors.TypeString, Enum: []string{"ts", "level", "host", "method", "path", "status", "ip", "trace"},
			Doc: "A field whose value becomes the record's key. Default: no key."},
		{Name: "batch_size", Type: connectors.TypeInt, Default: 1000, Min: 1, Doc: "Most records in a batch."},
	},
	Example: `sources:
  demo:
    generate: {rate: 5000, format: json, key_field: host, seed: 7}
    to: access`,
}

func init() { connectors.MustRegisterSource(generateSpec, newGenerate) }

// generateSource is a connectors.Source of synthetic records. Read is
// called by one goroutine at a time.
type generateSource struct {
	gen       *generator
	rate      float64
	limit     int64 // records in all; 0: none
	duration  time.Duration
	batchSize int
	fixed     bool // start was set: the clock does not wait for the first read

	started time.Time // wall clock at the first read
	emitted int64
	avgSize int
}

var _ connectors.Source = (*generateSource)(nil)

func newGenerate(conf *connectors.Config, _ connectors.Resources) (connectors.Source, error) {
	s := &generateSource{
		rate:      conf.Float("rate"),
		limit:     int64(conf.Int("count")),
		duration:  conf.Duration("duration"),
		batchSize: conf.Int("batch_size"),
		avgSize:   300,
	}
	if s.rate < 0 || math.IsInf(s.rate, 0) || math.IsNaN(s.rate) {
		return nil, conf.Errorf("rate", "must be 0 or a positive number")
	}
	format := map[string]int{"json": formatJSON, "logfmt": formatLogfmt, "line": formatLine}[conf.String("format")]
	key := map[string]int{"": -1, "ts": fieldTS, "level": fieldLevel, "host": fieldHost, "method": fieldMethod,
		"path": fieldPath, "status": fieldStatus, "ip": fieldIP, "trace": fieldTrace}[conf.String("key_field")]
	start := time.Now()
	tick := int64(time.Microsecond)
	if st := conf.String("start"); st != "" {
		t, err := time.Parse(time.RFC3339Nano, st)
		if err != nil {
			return nil, conf.Errorf("start", "%q is not an RFC 3339 time like 2026-11-21T10:00:00Z", st)
		}
		start, s.fixed = t, true
		tick = int64(time.Millisecond)
	}
	if s.rate > 0 {
		tick = int64(math.Round(1e9 / s.rate))
		if s.duration > 0 {
			n := int64(s.duration.Seconds() * s.rate)
			if s.limit == 0 || n < s.limit {
				s.limit = max(n, 1)
			}
		}
	}
	s.gen = newGenerator(uint64(int64(conf.Int("seed"))), format, key, start.UnixNano(), tick)
	return s, nil
}

func (s *generateSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	if s.started.IsZero() {
		s.started = now
		if !s.fixed {
			s.gen.clock = now.UnixNano()
		}
	}
	if !s.fixed && s.rate == 0 {
		// As fast as read, stamped near now: never behind the wall clock.
		s.gen.clock = max(s.gen.clock, now.UnixNano())
	}
	n := int64(s.batchSize)
	if s.limit > 0 {
		n = min(n, s.limit-s.emitted)
	}
	if n <= 0 || s.rate == 0 && s.duration > 0 && now.Sub(s.started) >= s.duration {
		return nil, nil, connectors.ErrEndOfInput
	}
	if s.rate > 0 {
		// Wait until a worthwhile batch is due: 100ms of records, or the
		// batch size, or what is left.
		want := min(n, max(1, int64(s.rate/10)))
		for {
			due := int64(time.Since(s.started).Seconds()*s.rate) + 1 - s.emitted
			if due >= want {
				n = min(n, due)
				break
			}
			at := s.started.Add(time.Duration(float64(s.emitted+want-1) / s.rate * 1e9))
			t := time.NewTimer(time.Until(at))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, nil, ctx.Err()
			}
		}
	}
	batch := s.gen.batch(int(n), s.avgSize)
	s.emitted += n
	return batch, noAck, nil
}

// Close does nothing: the source holds nothing.
func (s *generateSource) Close(context.Context) error { return nil }

const (
	formatJSON = iota
	formatLogfmt
	formatLine
)

// Fields a key can come from.
const (
	fieldTS = iota
	fieldLevel
	fieldHost
	fieldMethod
	fieldPath
	fieldStatus
	fieldIP
	fieldTrace
)

// generator writes records. Everything that can be is precomputed
// (strings, weighted choice tables) so that a record is a few random
// numbers and appends into one buffer per batch.
type generator struct {
	rng    *rand.Rand
	format int
	key    int
	clock  int64 // virtual time, unix ns
	tick   int64

	// The formatted second of the clock, for ts.
	second    int64
	secJSON   []byte // "2026-11-21T10:00:00."
	secCommon []byte // "21/Nov/2026:10:00:00 +0000"

	ips    []string
	keyBuf []byte // the key field's text of the last record
}

// A route is a kind of request path: prefix, a variable part, suffix.
type route struct {
	prefix, suffix string
	vary           int // what goes between: 0 nothing, 1 an id, 2 a hex hash, 3 search words
	weight         int
	medianMs       float64 // latency median
	medianBytes    float64
	methods        string // indexes into methods that make sense here, weighted by repetition
}

var (
	levels  = [...]string{"debug", "info", "warn", "error"}
	hosts   = [...]string{"web-01", "web-02", "web-03", "web-04", "web-05", "web-06", "web-07", "web-08", "web-09", "web-10", "web-11", "web-12"}
	methods = [...]string{"GET", "POST", "PUT", "DELETE", "PATCH"}
	routes  = [...]route{
		{"/api/v1/orders/", "", 1, 14, 12, 1800, "0000000223"},
		{"/api/v1/orders", "", 0, 4, 25, 900, "0111"},
		{"/api/v1/users/", "", 1, 8, 9, 1200, "000000224"},
		{"/api/v1/products/", "", 1, 16, 7, 5200, "0"},
		{"/api/v1/products/", "/reviews", 1, 5, 18, 8600, "00001"},
		{"/api/v1/search?q=", "", 3, 10, 65, 14000, "0"},
		{"/api/v1/cart", "", 0, 6, 11, 2100, "0001123"},
		{"/static/js/app.", ".js", 2, 12, 2, 184000, "0"},
		{"/static/css/main.", ".css", 2, 6, 2, 42000, "0"},
		{"/images/products/", ".jpg", 1, 12, 3, 96000, "0"},
		{"/login", "", 0, 3, 40, 3100, "0011"},
		{"/checkout", "", 0, 2, 120, 4600, "0111"},
		{"/health", "", 0, 2, 1, 15, "0"},
	}
	words = [...]string{"shoes", "red", "laptop", "usb+c", "coffee", "desk", "lamp", "running", "wireless", "kids", "garden", "chair", "book", "phone+case", "gift"}
	uas   = [...]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile",
		"shop-app/4.12.0 (Android 14; Pixel 8)",
		"shop-app/4.12.1 (iOS 18.1; iPhone15,2)",
		"curl/8.11.0",
		"Go-http-client/2.0",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"kube-probe/1.31",
	}
	// routeTable and uaTable pick by weight with one random number.
	routeTable = func() (t []uint8) {
		for i, r := range routes {
			for range r.weight {
				t = append(t, uint8(i))
			}
		}
		return t
	}()
	uaTable = [...]uint8{0, 0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 8, 9, 10}
)

func newGenerator(seed uint64, format, key int, start, tick int64) *generator {
	g := &generator{
		rng:    rand.New(rand.NewPCG(seed, 0x77656972)), // "weir"
		format: format, key: key, clock: start, tick: tick, second: math.MinInt64,
	}
	// A pool of clients: mostly private addresses behind a proxy, some
	// from documentation ranges standing in for the internet.
	g.ips = make([]string, 4096)
	for i := range g.ips {
		var b []byte
		if g.rng.IntN(4) == 0 {
			b = append(b, [...]string{"203.0.113.", "198.51.100.", "192.0.2."}[g.rng.IntN(3)]...)
		} else {
			b = append(b, "10."...)
			b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
			b = append(b, '.')
			b = strconv.AppendInt(b, int64(g.rng.IntN(256)), 10)
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(1+g.rng.IntN(254)), 10)
		g.ips[i] = string(b)
	}
	return g
}

// batch makes n records. Their values share one buffer and their
// messages one array, handed over for good.
func (g *generator) batch(n, avgSize int) []*connectors.Message {
	buf := make([]byte, 0, n*(avgSize+avgSize/8))
	msgs := make([]connectors.Message, n)
	out := make([]*connectors.Message, n)
	for i := range msgs {
		start := len(buf)
		var ms int64
		buf, ms = g.record(buf)
		m := &msgs[i]
		m.Value = buf[start:len(buf):len(buf)]
		m.Time = time.UnixMilli(ms)
		if g.key >= 0 {
			ks := len(buf)
			buf = append(buf, g.keyBuf...)
			m.Key = buf[ks:len(buf):len(buf)]
		}
		out[i] = m
	}
	return out
}

// mark keeps dst[start:] as the key when field is the key field.
func (g *generator) mark(field int, dst []byte, start int) {
	if field == g.key {
		g.keyBuf = append(g.keyBuf[:0], dst[start:]...)
	}
}

// record appends one record and returns its time in unix ms.
func (g *generator) record(dst []byte) ([]byte, int64) {
	r := g.rng
	ms := g.clock / 1e6
	g.clock += g.tick

	rt := &routes[routeTable[r.IntN(len(routeTable))]]
	method := int(rt.methods[r.IntN(len(rt.methods))] - '0')
	var status int
	switch x := r.IntN(1000); {
	case x < 20:
		status = [...]int{500, 500, 502, 503}[x&3]
	case x < 80:
		status = [...]int{404, 404, 404, 404, 404, 400, 400, 401, 403, 429}[x%10]
	case x < 120:
		status = [...]int{304, 304, 304, 304, 304, 304, 304, 301, 301, 301}[x%10]
	default:
		status = [...]int{200, 201, 200, 204, 200}[method]
	}
	latency := rt.medianMs * math.Exp(r.NormFloat64()*0.9)
	if status >= 500 {
		latency *= 6
	}
	latency = min(latency, 30000)
	size := int64(rt.medianBytes * math.Exp(r.NormFloat64()*0.7))
	switch {
	case status == 204 || status == 304:
		size = 0
	case status >= 400:
		size = 60 + int64(r.IntN(400))
	}
	level := 1
	switch {
	case status >= 500:
		level = 3
	case status >= 400 || latency > 1000:
		level = 2
	case r.IntN(100) < 28: // of the ~88% left: about a quarter of all
		level = 0
	}
	host := hosts[r.IntN(len(hosts))]
	ua := uas[uaTable[r.IntN(len(uaTable))]]
	ip := g.ips[r.IntN(len(g.ips))]
	t1 := r.Uint64()

	switch g.format {
	case formatJSON:
		dst = append(dst, `{"ts":"`...)
		s := len(dst)
		dst = g.appendISO(dst, ms)
		g.mark(fieldTS, dst, s)
		dst = g.appendField(dst, `","level":"`, fieldLevel, levels[level])
		dst = g.appendField(dst, `","host":"`, fieldHost, host)
		dst = g.appendField(dst, `","method":"`, fieldMethod, methods[method])
		dst = append(dst, `","path":"`...)
		s = len(dst)
		dst = g.appendPath(dst, rt)
		g.mark(fieldPath, dst, s)
		dst = append(dst, `","status":`...)
		s = len(dst)
		dst = strconv.AppendInt(dst, int64(status), 10)
		g.mark(fieldStatus, dst, s)
		dst = append(dst, `,"latency_ms":`...)
		dst = appendTenths(dst, latency)
		dst = append(dst, `,"bytes":`...)
		dst = strconv.AppendInt(dst, size, 10)
		dst = g.appendField(dst, `,"ua":"`, -1, ua)
		dst = g.appendField(dst, `","ip":"`, fieldIP, ip)
		dst = append(dst, `","trace":"`...)
		s = len(dst)
		dst = appendHex(dst, t1)
		g.mark(fieldTrace, dst, s)
		dst = append(dst, `"}`...)
	case formatLogfmt:
		dst = append(dst, `ts=`...)
		s := len(dst)
		dst = g.appendISO(dst, ms)
		g.mark(fieldTS, dst, s)
		dst = g.appendField(dst, ` level=`, fieldLevel, levels[level])
		dst = g.appendField(dst, ` host=`, fieldHost, host)
		dst = g.appendField(dst, ` method=`, fieldMethod, methods[method])
		dst = append(dst, ` path=`...)
		s = len(dst)
		dst = g.appendPath(dst, rt)
		g.mark(fieldPath, dst, s)
		dst = append(dst, ` status=`...)
		s = len(dst)
		dst = strconv.AppendInt(dst, int64(status), 10)
		g.mark(fieldStatus, dst, s)
		dst = append(dst, ` latency_ms=`...)
		dst = appendTenths(dst, latency)
		dst = append(dst, ` bytes=`...)
		dst = strconv.AppendInt(dst, size, 10)
		dst = g.appendField(dst, ` ua="`, -1, ua)
		dst = g.appendField(dst, `" ip=`, fieldIP, ip)
		dst = append(dst, ` trace=`...)
		s = len(dst)
		dst = appendHex(dst, t1)
		g.mark(fieldTrace, dst, s)
	case formatLine:
		// ip - - [21/Nov/2026:10:00:00 +0000] "GET /path HTTP/1.1" 200 5123 "-" "ua" 0.013
		dst = g.appendField(dst, ``, fieldIP, ip)
		dst = append(dst, ` - - [`...)
		s := len(dst)
		dst = g.appendCommon(dst, ms)
		g.mark(fieldTS, dst, s)
		dst = g.appendField(dst, `] "`, fieldMethod, methods[method])
		dst = append(dst, ' ')
		s = len(dst)
		dst = g.appendPath(dst, rt)
		g.mark(fieldPath, dst, s)
		dst = append(dst, ` HTTP/1.1" `...)
		s = len(dst)
		dst = strconv.AppendInt(dst, int64(status), 10)
		g.mark(fieldStatus, dst, s)
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, size, 10)
		dst = g.appendField(dst, ` "-" "`, -1, ua)
		dst = append(dst, `" `...)
		dst = appendMillis(dst, latency)
		switch g.key { // not in the line
		case fieldLevel:
			g.keyBuf = append(g.keyBuf[:0], levels[level]...)
		case fieldHost:
			g.keyBuf = append(g.keyBuf[:0], host...)
		case fieldTrace:
			g.keyBuf = appendHex(g.keyBuf[:0], t1)
		}
	}
	return dst, ms
}

func (g *generator) appendField(dst []byte, prefix string, field int, value string) []byte {
	dst = append(dst, prefix...)
	s := len(dst)
	dst = append(dst, value...)
	g.mark(field, dst, s)
	return dst
}

func (g *generator) appendPath(dst []byte, rt *route) []byte {
	r := g.rng
	dst = append(dst, rt.prefix...)
	switch rt.vary {
	case 1:
		dst = strconv.AppendInt(dst, int64(1000+r.IntN(99000)), 10)
	case 2:
		dst = appendHex(dst, r.Uint64())[:len(dst)+8]
	case 3:
		dst = append(dst, words[r.IntN(len(words))]...)
		if r.IntN(2) == 0 {
			dst = append(dst, '+')
			dst = append(dst, words[r.IntN(len(words))]...)
		}
	}
	return append(dst, rt.suffix...)
}

// appendISO appends 2026-11-21T10:00:00.123Z.
func (g *generator) appendISO(dst []byte, ms int64) []byte {
	g.setSecond(ms)
	dst = append(dst, g.secJSON...)
	dst = append3(dst, ms)
	return append(dst, 'Z')
}

// appendCommon appends 21/Nov/2026:10:00:00 +0000.
func (g *generator) appendCommon(dst []byte, ms int64) []byte {
	g.setSecond(ms)
	return append(dst, g.secCommon...)
}

func (g *generator) setSecond(ms int64) {
	sec := ms / 1000
	if ms < 0 && ms%1000 != 0 {
		sec--
	}
	if sec == g.second {
		return
	}
	g.second = sec
	t := time.Unix(sec, 0).UTC()
	g.secJSON = t.AppendFormat(g.secJSON[:0], "2006-01-02T15:04:05.")
	g.secCommon = t.AppendFormat(g.secCommon[:0], "02/Jan/2006:15:04:05 +0000")
}

func append3(dst []byte, ms int64) []byte {
	m := ms % 1000
	if m < 0 {
		m += 1000
	}
	return append(dst, byte('0'+m/100), byte('0'+m/10%10), byte('0'+m%10))
}

// appendTenths appends x with one decimal: 12.5.
func appendTenths(dst []byte, x float64) []byte {
	t := int64(x*10 + 0.5)
	dst = strconv.AppendInt(dst, t/10, 10)
	return append(dst, '.', byte('0'+t%10))
}

// appendMillis appends ms as seconds with three decimals: 0.013.
func appendMillis(dst []byte, ms float64) []byte {
	t := int64(ms + 0.5)
	dst = strconv.AppendInt(dst, t/1000, 10)
	dst = append(dst, '.')
	return append3(dst, t)
}

func appendHex(dst []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return append(dst, b[:]...)
}
