package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fastjson"

	"github.com/weirhub/weir/connectors"
	"github.com/weirhub/weir/internal/httpauth"
	"github.com/weirhub/weir/internal/tlsfiles"
)

var httpSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "http",
	Summary: "Receive records over HTTP: POST bodies of NDJSON, or JSON objects.",
	Doc: "A POST to path carries records: one per line (NDJSON or any text; empty lines are skipped) or, with " +
		"Content-Type application/json, one JSON object or an array of them. A body may be gzip-compressed " +
		"(Content-Encoding: gzip); max_body_bytes bounds it before and after decompression (413 beyond). " +
		"With token or token_file set, requests need Authorization: Bearer <token> (401 with WWW-Authenticate: Bearer " +
		"without a valid one, 403 for a token without the produce scope). A listener beyond loopback that needs neither " +
		"a token nor a client certificate logs a WARN when it starts.\n\n" +
		"A request's records are one batch, and the response waits until the batch is stored: 204 once it is, " +
		"503 with the reason if it failed or the source is closing, 503 if it is not stored within ack_timeout " +
		"(it may still be stored later: a client retrying then sends it twice, at least once). At most " +
		"max_pending batches wait at once; beyond that a request is answered 429 with Retry-After: 1 at once, " +
		"which is how a slow hub pushes back on clients. A request holding a record larger than the dataset takes (its " +
		"max_message_bytes, less room for the key and headers) is answered 413 with that limit, and nothing of it is " +
		"stored. Records get the time they were received.",
	Fields: []connectors.Field{
		{Name: "address", Type: connectors.TypeString, Default: "127.0.0.1:8080", Doc: "host:port to listen on (:8080 for every interface)."},
		{Name: "path", Type: connectors.TypeString, Default: "/ingest", Doc: "URL path records are POSTed to."},
		{Name: "max_body_bytes", Type: connectors.TypeSize, Default: "10MiB", Min: "1B", Doc: "Largest body, compressed or not (413 beyond)."},
		{Name: "token", Type: connectors.TypeString, Doc: "Bearer token clients must send; default: none needed. Use ${VAR} to keep it out of the file."},
		{Name: "token_file", Type: connectors.TypeString, Doc: "File of bearer tokens, one a line, each optionally followed by its scopes (a token here needs produce or *; none means all); read when the source starts and again when it changes, so tokens are added and revoked without a restart. Excludes token.", Example: "/etc/weir/ingest-tokens"},
		{Name: "tls", Type: connectors.TypeObject, Doc: "Serve HTTPS; the certificate is reloaded when its files change.", Fields: []connectors.Field{
			{Name: "cert_file", Type: connectors.TypeString, Doc: "PEM certificate chain."},
			{Name: "key_file", Type: connectors.TypeString, Doc: "PEM private key."},
			{Name: "client_ca_file", Type: connectors.TypeString, Doc: "Require client certificates signed by these CAs (mutual TLS)."},
		}},
		{Name: "max_pending", Type: connectors.TypeInt, Default: 16, Min: 1, Doc: "Most batches waiting to be stored; more requests get 429."},
		{Name: "ack_timeout", Type: connectors.TypeDuration, Default: "30s", Min: "1ms", Doc: "Longest a request waits for its batch to be stored (then 503)."},
	},
	Example: `sources:
  ingest:
    http: {address: "0.0.0.0:8080", path: /ingest, token: "${INGEST_TOKEN}", max_pending: 32}
    to: events
    processors:
      - parse: json`,
}

func init() { connectors.MustRegisterSource(httpSpec, newHTTP) }

// httpSource serves POSTs and hands each request's records to Read as a
// batch. It is safe for concurrent use: handlers run on the server's
// goroutines, Read on the runtime's.
type httpSource struct {
	address    string
	path       string
	maxBody    int64
	maxRecord  int // largest record the dataset takes; 0: unknown
	token      string
	tokenFile  string
	tlsFiles   *tlsfiles.Files
	ackTimeout time.Duration
	log        *slog.Logger

	slots   chan struct{} // one per batch not yet acknowledged
	batches chan *httpBatch
	closing chan struct{}

	mu     sync.Mutex // guards the fields below and sending into batches
	closed bool
	guard  *httpauth.Guard
	ln     net.Listener
	srv    *http.Server
	served chan struct{} // closed when Serve returns

	closeOnce sync.Once
	closeErr  error
}

// httpBatch is one request's records waiting for their acknowledgement.
type httpBatch struct {
	msgs   []*connectors.Message
	result chan error // buffered: the ack never blocks
	once   sync.Once
	src    *httpSource
}

func (b *httpBatch) ack(_ context.Context, err error) error {
	b.once.Do(func() {
		b.result <- err
		<-b.src.slots
	})
	return nil
}

var (
	_ connectors.Source    = (*httpSource)(nil)
	_ connectors.Connector = (*httpSource)(nil)
)

func newHTTP(conf *connectors.Config, res connectors.Resources) (connectors.Source, error) {
	s := &httpSource{
		address:    conf.String("address"),
		path:       conf.String("path"),
		maxBody:    conf.Size("max_body_bytes"),
		maxRecord:  res.MaxRecordBytes,
		token:      conf.String("token"),
		tokenFile:  conf.String("token_file"),
		ackTimeout: conf.Duration("ack_timeout"),
		log:        res.Logger,
		closing:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if _, _, err := net.SplitHostPort(s.address); err != nil {
		return nil, conf.Errorf("address", "%q is not host:port", s.address)
	}
	if !strings.HasPrefix(s.path, "/") {
		return nil, conf.Errorf("path", "%q does not start with /", s.path)
	}
	n := conf.Int("max_pending")
	if s.token != "" && s.tokenFile != "" {
		return nil, conf.Errorf("token_file", "token and token_file exclude each other")
	}
	if strings.ContainsAny(s.token, " \t\r\n;#") {
		// Not quoted: it is a secret.
		return nil, conf.Errorf("token", "holds white space, ';' or '#': one token only (token_file holds several)")
	}
	if t := conf.Object("tls"); t.String("cert_file") != "" || t.String("key_file") != "" || t.String("client_ca_file") != "" {
		s.tlsFiles = &tlsfiles.Files{CertFile: t.String("cert_file"), KeyFile: t.String("key_file"), ClientCAFile: t.String("client_ca_file")}
		if s.tlsFiles.CertFile == "" || s.tlsFiles.KeyFile == "" {
			return nil, conf.Errorf("tls", "needs cert_file and key_file")
		}
	}
	s.slots = make(chan struct{}, n)
	s.batches = make(chan *httpBatch, n)
	return s, nil
}

// Connect binds the address and starts serving. Calling it again once
// bound does nothing.
func (s *httpSource) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSourceClosed
	}
	if s.ln != nil {
		return nil
	}
	guard, err := httpauth.New(httpauth.Config{TLS: s.tlsFiles, Tokens: s.token, TokenFile: s.tokenFile, Name: "http source", Logger: s.log})
	if err != nil {
		return connectors.Permanent(fmt.Errorf("sources: %w", err))
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.address)
	if err != nil {
		// Waiting does not free an address another process holds: an
		// error of the start, as in weir serve.
		return connectors.Permanent(fmt.Errorf("sources: http: %w", err))
	}
	ln = guard.Listener(ln, s.log)
	mux := http.NewServeMux()
	mux.HandleFunc(s.path, s.handle)
	s.ln, s.guard = ln, guard
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("weir: http source stopped serving", "err", err)
		}
	}()
	s.log.Info("weir: http source listening", "address", ln.Addr().String(), "path", s.path, "tls", guard.TLSConfig() != nil, "tokens", guard.HasTokens())
	return nil
}

// addr is the bound address (for tests binding port 0), or nil.
func (s *httpSource) addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

func (s *httpSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	select {
	case b := <-s.batches:
		return b.msgs, b.ack, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-s.closing:
		return nil, nil, errSourceClosed
	}
}

func (s *httpSource) handle(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST", http.StatusMethodNotAllowed)
		return
	}
	if err := s.guard.Authorize(r, httpauth.ScopeProduce); err != nil {
		s.guard.Refuse(w, r, httpauth.ScopeProduce, err)
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many batches waiting to be stored; retry", http.StatusTooManyRequests)
		return
	}
	msgs, status, err := s.records(w, r)
	if err != nil || len(msgs) == 0 {
		<-s.slots
		if err != nil {
			http.Error(w, err.Error(), status)
		} else {
			w.WriteHeader(http.StatusNoContent)
		}
		return
	}
	b := &httpBatch{msgs: msgs, result: make(chan error, 1), src: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.slots
		http.Error(w, "the source is closing; retry", http.StatusServiceUnavailable)
		return
	}
	s.batches <- b // never blocks: a slot is held
	s.mu.Unlock()

	timer := time.NewTimer(s.ackTimeout)
	defer timer.Stop()
	select {
	case err := <-b.result:
		if err != nil {
			http.Error(w, "records not stored: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case <-timer.C:
		http.Error(w, "records not stored in time; they may still be", http.StatusServiceUnavailable)
	case <-r.Context().Done():
		// The client is gone; the batch is still stored (or not).
	}
}

// records reads a request's body into messages, or returns an error with
// the status to answer.
func (s *httpSource) records(w http.ResponseWriter, r *http.Request) ([]*connectors.Message, int, error) {
	var body io.Reader = http.MaxBytesReader(w, r.Body, s.maxBody)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			status, err := s.readError(err, "bad gzip body")
			return nil, status, err
		}
		defer zr.Close()
		body = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content encoding %q is not supported (gzip is)", enc)
	}
	data, err := io.ReadAll(io.LimitReader(body, s.maxBody+1))
	if err == nil && int64(len(data)) > s.maxBody {
		err = &http.MaxBytesError{Limit: s.maxBody}
	}
	if err != nil {
		status, err := s.readError(err, "reading the body")
		return nil, status, err
	}
	now := time.Now()
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/json" {
		msgs, status, err := jsonRecords(data, now)
		if err == nil {
			status, err = s.checkSizes(msgs)
		}
		return msgs, status, err
	}
	var mem arena
	var msgs []*connectors.Message
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m := mem.message()
		m.Value, m.Time = line[:len(line):len(line)], now // the body is this batch's alone
		msgs = append(msgs, m)
	}
	status, err := s.checkSizes(msgs)
	return msgs, status, err
}

// checkSizes refuses a request with a record larger than the dataset
// takes: 413 with the limit, and none of its records stored (they would
// be cut into the dead-letter dataset, while the client heard 204).
func (s *httpSource) checkSizes(msgs []*connectors.Message) (int, error) {
	if s.maxRecord <= 0 {
		return 0, nil
	}
	for i, m := range msgs {
		if len(m.Value) > s.maxRecord {
			return http.StatusRequestEntityTooLarge, fmt.Errorf("record %d is %d bytes; a record can be at most %d bytes here (the dataset's max_message_bytes); nothing of this request was stored", i+1, len(m.Value), s.maxRecord)
		}
	}
	return 0, nil
}

// jsonRecords splits a JSON body: one object, or an array of objects.
func jsonRecords(data []byte, now time.Time) ([]*connectors.Message, int, error) {
	var p fastjson.Parser
	v, err := p.ParseBytes(data)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("the body is not JSON: %w", err)
	}
	var mem arena
	switch v.Type() {
	case fastjson.TypeObject:
		m := mem.message()
		m.Value, m.Time = bytes.TrimSpace(data), now
		return []*connectors.Message{m}, 0, nil
	case fastjson.TypeArray:
		items, _ := v.Array()
		out := make([]*connectors.Message, 0, len(items))
		var buf []byte
		for i, item := range items {
			if item.Type() != fastjson.TypeObject {
				return nil, http.StatusBadRequest, fmt.Errorf("item %d of the array is a JSON %s, not an object", i, item.Type())
			}
			start := len(buf)
			buf = connectors.AppendJSON(buf, item)
			m := mem.message()
			m.Value, m.Time = buf[start:len(buf):len(buf)], now
			out = append(out, m)
		}
		// Values may point into an earlier buf array that append left
		// behind; that is fine, nothing writes to it again.
		return out, 0, nil
	}
	return nil, http.StatusBadRequest, fmt.Errorf("the body is a JSON %s; want an object or an array of objects", v.Type())
}

// readError maps an error reading a body to a status and a message.
func (s *httpSource) readError(err error, doing string) (int, error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, fmt.Errorf("the body is larger than %d bytes", s.maxBody)
	}
	return http.StatusBadRequest, fmt.Errorf("%s: %w", doing, err)
}

// Close stops accepting requests, answers 503 to those whose batches
// were not read yet, and waits (within ctx) for the requests whose
// batches were read to get their acknowledgements. It is safe to call
// more than once.
func (s *httpSource) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		srv, served := s.srv, s.served
		s.mu.Unlock()
		close(s.closing)
		for {
			select {
			case b := <-s.batches:
				b.ack(ctx, errSourceClosed)
				continue
			default:
			}
			break
		}
		if srv == nil {
			return
		}
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			s.closeErr = fmt.Errorf("sources: http: shutdown: %w", err)
		}
		<-served
	})
	return s.closeErr
}
