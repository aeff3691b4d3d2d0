package sinks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/hub"
)

var httpSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "http",
	Summary: "POST batches of records as NDJSON (one value per line) to an HTTP endpoint.",
	Doc: "A batch is sent as one or more requests of at most max_batch_bytes each (a single larger record goes " +
		"alone). A 2xx response means the request's records were delivered. A 5xx, 429, 408 or 425 response, or " +
		"no response at all, is transient: it fails the request and the ones after it in the batch, and the " +
		"pipeline retries them (the sink's retry setting: without limit by default), holding back. A network " +
		"error, and a 401, 403 or 404 (credentials or URL wrong: every record would fail alike), count as the " +
		"endpoint being unavailable, retried without limit. Any other 4xx (or a redirect other than 307 and 308, " +
		"which are followed) fails the request's records for good: they go to the dead-letter dataset at once with " +
		"the status and the start of the response body as the reason.",
	Scalar: "url",
	Fields: []connectors.Field{
		{Name: "url", Type: connectors.TypeString, Required: true, Doc: "The endpoint, http:// or https://.", Example: "https://collector.example.com/v1/logs"},
		{Name: "headers", Type: connectors.TypeStringMap, Doc: "Extra request headers.", Example: map[string]string{"X-Source": "weir"}},
		{Name: "timeout", Type: connectors.TypeDuration, Default: "30s", Min: "1ms", Doc: "Longest wait for one request's response."},
		{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "4MiB", Min: "1B", Doc: "Most bytes of records in one request body (before compression)."},
		{Name: "compression", Type: connectors.TypeString, Default: "none", Enum: []string{"none", "gzip"}, Doc: "Compression of request bodies (Content-Encoding)."},
		{Name: "user", Type: connectors.TypeString, Doc: "User for basic authentication."},
		{Name: "password", Type: connectors.TypeString, Doc: "Password for basic authentication."},
		{Name: "token", Type: connectors.TypeString, Doc: "Bearer token (Authorization: Bearer <token>)."},
	},
	Example: `pipelines:
  forward:
    from: access
    to:
      - http:
          url: https://collector.example.com/v1/logs
          token: ${COLLECTOR_TOKEN}
          compression: gzip
          max_batch_bytes: 1MiB
          headers: {X-Source: weir}`,
}

var webhookSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "webhook",
	Summary: "POST change events, signed, to an endpoint that keeps a cache in step: the http sink's delivery with events as bodies.",
	Doc: "Each request carries up to max_events records as subscription events, one JSON object a line " +
		"(type record or delete, id PARTITION-OFFSET, key, value, partition, offset, time, headers; a single event " +
		"is sent as application/json, several as application/x-ndjson). With a secret, the Weir-Signature header is " +
		"t=UNIX_SECONDS,v1=HEX where HEX is the HMAC-SHA256 of \"UNIX_SECONDS.\" followed by the body, keyed with the " +
		"secret: the receiver recomputes it and rejects old timestamps, as with Stripe's webhooks. Weir-Event-Id is " +
		"the id of the request's last event. Responses are handled as by the http sink: the pipeline's position moves " +
		"on only after a 2xx; 5xx, 429 and no response are retried with the sink's retry backoff; other 4xx send the " +
		"events to the dead-letter dataset, as does running out of retry attempts.",
	Scalar: "url",
	Fields: []connectors.Field{
		{Name: "url", Type: connectors.TypeString, Required: true, Doc: "The endpoint, http:// or https://.", Example: "https://app.internal/hooks/cache"},
		{Name: "secret", Type: connectors.TypeString, Doc: "Key of the HMAC-SHA256 signature (Weir-Signature); unsigned without it."},
		{Name: "max_events", Type: connectors.TypeInt, Default: 100, Min: 1, Doc: "Most events in one request (1: one request per event)."},
		{Name: "headers", Type: connectors.TypeStringMap, Doc: "Extra request headers."},
		{Name: "timeout", Type: connectors.TypeDuration, Default: "30s", Doc: "Longest wait for one request's response."},
		{Name: "max_batch_bytes", Type: connectors.TypeSize, Default: "4MiB", Doc: "Most bytes of events in one request body."},
		{Name: "compression", Type: connectors.TypeString, Default: "none", Enum: []string{"none", "gzip"}, Doc: "Compression of request bodies (Content-Encoding); the signature covers the uncompressed body."},
		{Name: "user", Type: connectors.TypeString, Doc: "User for basic authentication."},
		{Name: "password", Type: connectors.TypeString, Doc: "Password for basic authentication."},
		{Name: "token", Type: connectors.TypeString, Doc: "Bearer token (Authorization: Bearer <token>)."},
	},
	Example: `pipelines:
  cache-hooks:
    from: users
    to:
      - webhook: {url: "https://app.internal/hooks/cache", secret: "${WEBHOOK_SECRET}", max_events: 1}
    retry: {attempts: 10, backoff: 1s}`,
}

func init() {
	connectors.MustRegisterSink(httpSpec, newHTTP)
	connectors.MustRegisterSink(webhookSpec, newWebhook)
}

// newWebhook is the http sink sending events, signed when a secret is set.
func newWebhook(conf *connectors.Config, res connectors.Resources) (connectors.Sink, error) {
	sk, err := newHTTP(conf, res)
	if err != nil {
		return nil, err
	}
	s := sk.(*httpSink)
	s.events, s.secret, s.maxEvents, s.now = true, []byte(conf.String("secret")), conf.Int("max_events"), time.Now
	if s.maxEvents < 1 {
		return nil, conf.Errorf("max_events", "must be at least 1")
	}
	return s, nil
}

// httpSink posts batches. Write is called by one goroutine at a time (mu
// guards the buffers regardless); Close may be called from any.
type httpSink struct {
	url      string
	headers  http.Header
	timeout  time.Duration
	maxBytes int
	gzip     bool
	user     string
	password string
	token    string
	client   *http.Client

	// webhook: events instead of values, signed with secret if set.
	events    bool
	secret    []byte
	maxEvents int
	now       func() time.Time

	mu     sync.Mutex // held by Write
	body   []byte
	zbuf   bytes.Buffer
	zw     *gzip.Writer
	closed atomic.Bool
}

var _ connectors.Sink = (*httpSink)(nil)

func newHTTP(conf *connectors.Config, _ connectors.Resources) (connectors.Sink, error) {
	u, err := url.Parse(conf.String("url"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, conf.Errorf("url", "%q is not an http:// or https:// URL", conf.String("url"))
	}
	s := &httpSink{
		url:      u.String(),
		headers:  http.Header{},
		timeout:  conf.Duration("timeout"),
		maxBytes: int(conf.Size("max_batch_bytes")),
		gzip:     conf.String("compression") == "gzip",
		user:     conf.String("user"),
		password: conf.String("password"),
		token:    conf.String("token"),
	}
	if s.token != "" && (s.user != "" || s.password != "") {
		return nil, conf.Errorf("token", "use either token or user and password, not both")
	}
	for _, k := range conf.Keys("headers") {
		s.headers.Set(k, conf.StringMap("headers")[k])
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	s.client = &http.Client{Transport: t, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		// Only 307 and 308 repeat the POST with its body; a 301, 302 or
		// 303 would turn it into a GET.
		if code := req.Response.StatusCode; (code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect) && len(via) < 5 {
			return nil
		}
		return http.ErrUseLastResponse
	}}
	return s, nil
}

// statusError is a response that failed a request.
type statusError struct {
	Status int
	Body   string // the start of the response body
}

func (e *statusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("sinks: http: status %d %s", e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("sinks: http: status %d %s: %s", e.Status, http.StatusText(e.Status), e.Body)
}

func (s *httpSink) Write(ctx context.Context, batch []*connectors.Message) error {
	if s.closed.Load() {
		return errSinkClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var failures []connectors.Failure
	delivered := 0
	for start := 0; start < len(batch); {
		end, body := start, s.body[:0]
		lastID := ""
		for end < len(batch) && (end == start || len(body)+len(batch[end].Value)+1 <= s.maxBytes) {
			if !s.events {
				body = append(body, batch[end].Value...)
			} else if end-start == s.maxEvents {
				break
			} else {
				e := redisEvent(batch[end])
				body = hub.AppendEventJSON(body, e, true)
				lastID = e.Token
			}
			body = append(body, '\n')
			end++
		}
		s.body = body
		err := s.post(ctx, body, end-start, lastID)
		var se *statusError
		switch {
		case err == nil:
			delivered += end - start
		case errors.As(err, &se) && (se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden || se.Status == http.StatusNotFound):
			// Not these records' fault: hold the pipeline back.
			return connectors.Unavailable(err)
		case errors.As(err, &se) && se.Status < 500 && se.Status != http.StatusTooManyRequests &&
			se.Status != http.StatusRequestTimeout && se.Status != http.StatusTooEarly:
			// A 4xx (or a redirect not followed): these records will not
			// do better next time.
			for i := start; i < end; i++ {
				failures = append(failures, connectors.Failure{Index: i, Err: err})
			}
		default:
			// The endpoint is in trouble: this request and the rest of
			// the batch fail, to be retried.
			if delivered == 0 && len(failures) == 0 {
				return err
			}
			for i := start; i < len(batch); i++ {
				failures = append(failures, connectors.Failure{Index: i, Err: err, Retryable: true})
			}
			return &connectors.WriteError{Failures: failures}
		}
		start = end
	}
	if cap(s.body) > 4*s.maxBytes {
		s.body = nil
	}
	if len(failures) > 0 {
		return &connectors.WriteError{Failures: failures}
	}
	return nil
}

// post sends one request body of NDJSON (n lines) and interprets the
// response. A webhook's body is signed, and names its last event.
func (s *httpSink) post(ctx context.Context, body []byte, n int, lastID string) error {
	ctype := "application/x-ndjson"
	if s.events && n == 1 {
		ctype, body = "application/json", body[:len(body)-1]
	}
	sig := ""
	if s.events && len(s.secret) > 0 {
		sig = signBody(s.secret, s.now().Unix(), body) // over the body before compression
	}
	if s.gzip {
		s.zbuf.Reset()
		if s.zw == nil {
			s.zw = gzip.NewWriter(&s.zbuf)
		} else {
			s.zw.Reset(&s.zbuf)
		}
		if _, err := s.zw.Write(body); err != nil {
			return fmt.Errorf("sinks: http: gzip: %w", err)
		}
		if err := s.zw.Close(); err != nil {
			return fmt.Errorf("sinks: http: gzip: %w", err)
		}
		body = s.zbuf.Bytes()
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("sinks: http: %w", err)
	}
	for k, v := range s.headers {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", ctype)
	if s.events {
		req.Header.Set("Weir-Event-Id", lastID)
		if sig != "" {
			req.Header.Set("Weir-Signature", sig)
		}
	}
	if s.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	switch {
	case s.token != "":
		req.Header.Set("Authorization", "Bearer "+s.token)
	case s.user != "" || s.password != "":
		req.SetBasicAuth(s.user, s.password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("sinks: http: %w", ctx.Err())
		case rctx.Err() != nil:
			return fmt.Errorf("sinks: http: no response within %v: %w", s.timeout, err)
		}
		return connectors.Unavailable(fmt.Errorf("sinks: http: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // to reuse the connection
		return nil
	}
	snippet := make([]byte, 512)
	got, _ := io.ReadFull(resp.Body, snippet)
	rest, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return &statusError{Status: resp.StatusCode, Body: textSnippet(snippet[:got], rest > 0)}
}

// signBody is the Weir-Signature of a webhook body sent at unix seconds
// ts: t=TS,v1=hex(HMAC-SHA256(secret, "TS." + body)).
func signBody(secret []byte, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	stamp := strconv.FormatInt(ts, 10)
	mac.Write([]byte(stamp + "."))
	mac.Write(body)
	return "t=" + stamp + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// textSnippet returns the start of a response body as one line of text,
// with "..." when the body went on.
func textSnippet(b []byte, more bool) string {
	s := strconv.Quote(strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD")))
	s = s[1 : len(s)-1]
	if more {
		s += "..."
	}
	return s
}

// Close releases idle connections; it does not wait for a Write in
// progress, and is safe to call more than once.
func (s *httpSink) Close(context.Context) error {
	s.closed.Store(true)
	s.client.CloseIdleConnections()
	return nil
}
