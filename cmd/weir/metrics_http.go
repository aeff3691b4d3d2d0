package main

import (
	"context"
	"log/slog"
	"time"

	whttp "github.com/weirhub/weir/hub/http"
)

// httpFront is the --http-listen listener of serve and run, serving
// /healthz, /readyz and /metrics.
type httpFront struct {
	srv    *whttp.Server
	addr   string
	served chan error
	logger *slog.Logger
}

// startHTTP binds addr and serves the front door with m's metrics. A bind
// failure is returned: the command must not start without the listener
// the operator asked for.
func startHTTP(addr string, m *metrics, logger *slog.Logger) (*httpFront, error) {
	srv := whttp.NewServer(whttp.Options{Metrics: m.handler(logger), Logger: logger})
	ln, err := srv.Listen(addr)
	if err != nil {
		return nil, err
	}
	f := &httpFront{srv: srv, addr: ln.Addr().String(), served: make(chan error, 1), logger: logger}
	go func() { f.served <- srv.Serve(ln) }()
	return f, nil
}

// stop shuts the listener down, waiting a little for scrapes in flight.
func (f *httpFront) stop() {
	if f == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.srv.Shutdown(ctx); err != nil {
		f.logger.Warn("weir: http requests did not finish in time; closed them", "err", err)
	}
	if err := <-f.served; err != nil {
		f.logger.Warn("weir: http server failed", "err", err)
	}
}
