package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/weirhub/weir/hub"
	whttp "github.com/weirhub/weir/hub/http"
	"github.com/weirhub/weir/hub/kafka"
	"github.com/weirhub/weir/internal/httpauth"
	"github.com/weirhub/weir/internal/tlsfiles"
	"github.com/weirhub/weir/pipelines"
)

// httpFront is the --http-listen listener of serve and run, serving
// /healthz, /readyz and /metrics.
type httpFront struct {
	srv    *whttp.Server
	addr   string
	served chan error
	logger *slog.Logger
}

// startHTTP binds addr and serves the front door with m's metrics, its
// TLS and bearer tokens as sec says. A bind failure, or a token file or
// certificate that cannot be read, is returned: the command must not start without the listener
// the operator asked for.
func startHTTP(addr string, sec httpauth.Config, m *metrics, logger *slog.Logger, tap *tapHandler, mount ...func(*whttp.Server)) (*httpFront, error) {
	guard, err := httpauth.New(sec)
	if err != nil {
		return nil, err
	}
	srv := whttp.NewServer(whttp.Options{Metrics: m.handler(logger), Logger: logger, Guard: guard})
	tap.mount(srv)
	for _, fn := range mount {
		fn(srv)
	}
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

// runFront is weir run's front door: the hub (when embedded), the pipeline
// components and, when the file serves Kafka clients, their requests.
type runFront struct {
	m            *metrics
	front        *httpFront
	listen       string
	perPartition bool
	sec          httpauth.Config
	allowOrigins []string      // of the subscriptions
	coalesce     int64         // of the subscriptions: hub.SubscribeOptions.CoalesceBytes
	kafka        *kafka.Server // serving hub.listen, or nil
	running      atomic.Bool
}

// newRunFront returns nil when listen is empty: nothing is served then.
func newRunFront(listen string, hc pipelines.HTTPConfig) *runFront {
	if listen == "" {
		return nil
	}
	sec := httpauth.Config{TokenFile: hc.TokenFile, Name: "http"}
	if hc.TLSCertFile != "" {
		sec.TLS = &tlsfiles.Files{CertFile: hc.TLSCertFile, KeyFile: hc.TLSKeyFile, ClientCAFile: hc.TLSClientCAFile}
	}
	return &runFront{m: newMetrics(), listen: listen, perPartition: hc.PartitionMetrics, sec: sec, allowOrigins: hc.AllowOrigins, coalesce: hc.SubscribeCoalesce}
}

// pipelineObserver is the engine's observer (sink writes), or nil.
func (r *runFront) pipelineObserver() pipelines.Observer {
	if r == nil {
		return nil
	}
	return r.m.sinkObserver()
}

// hubObserver is the hub's observer (fsyncs), or nil.
func (r *runFront) hubObserver() hub.Observer {
	if r == nil {
		return nil
	}
	return r.m.fsyncObserver()
}

// attach registers the engine's components and its embedded hub.
func (r *runFront) attach(e engineView) {
	if r == nil {
		return
	}
	if e.Hub() != nil {
		r.m.addHub(e.Hub(), r.perPartition)
	}
	r.m.addEngine(e)
}

// observer is the Kafka request observer for hub.listen, or nil.
func (r *runFront) observer() kafka.Observer {
	if r == nil {
		return nil
	}
	return r.m.kafkaObserver()
}

// kafkaServing adds the Kafka server's gauges and a readiness check.
func (r *runFront) kafkaServing(srv *kafka.Server) {
	if r != nil {
		r.m.addKafkaServers([]*kafka.Server{srv})
		r.kafka = srv
	}
}

// start binds the listener with checks for the hub and the pipelines.
func (r *runFront) start(e engineView, logger *slog.Logger) error {
	if r == nil {
		return nil
	}
	r.sec.Logger = logger
	mounts := []func(*whttp.Server){func(s *whttp.Server) { mountReload(s, e) }}
	if h := e.Hub(); h != nil { // the embedded hub: its datasets' subscriptions, as weir serve
		mounts = append(mounts, subscriptionsMount(h, r.allowOrigins, r.coalesce))
	}
	f, err := startHTTP(r.listen, r.sec, r.m, logger, &tapHandler{h: e.Hub(), e: e}, mounts...)
	if err != nil {
		return err
	}
	r.front = f
	if h := e.Hub(); h != nil {
		f.srv.AddCheck("hub", h.Err)
	}
	if srv := r.kafka; srv != nil {
		f.srv.AddCheck("kafka", func() error {
			if srv.Addr() == nil {
				return errors.New("the Kafka listener is not serving")
			}
			return nil
		})
	}
	f.srv.AddCheck("pipelines", func() error {
		if !r.running.Load() {
			return errors.New("the sources and pipelines are not running")
		}
		return nil
	})
	return nil
}

// setRunning marks the engine running or stopped, for /readyz.
func (r *runFront) setRunning(on bool) {
	if r != nil {
		r.running.Store(on)
		if !on && r.front != nil {
			r.front.srv.StartShutdown()
		}
	}
}

func (r *runFront) stop() {
	if r != nil {
		r.front.stop()
	}
}
