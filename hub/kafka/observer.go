package kafka

import (
	"reflect"
	"time"
)

// Observer is told of the requests a Server answers, for metrics. Its
// methods are called from every connection's goroutines at once and must
// be quick; an adapter to a metrics library implements it (cmd/weir has
// the Prometheus one), so this package imports none.
type Observer interface {
	// ObserveRequest reports one request of API key and version, answered
	// (or, for acks=0 produces, handled) took after it was read.
	ObserveRequest(key, version int16, took time.Duration)
}

// Rejected counts the connections refused or closed to make room because
// of MaxConnections or MaxConnectionsPerIP (see Stats for each reason).
func (s *Server) Rejected() int64 {
	st := s.Stats()
	return st.RefusedPerIP + st.RefusedFull + st.EvictedIdle
}

// observe reports a request to the Observer, if there is one.
func (c *conn) observe(h *header, start time.Time) {
	if o := c.s.opts.Observer; o != nil && !start.IsZero() {
		o.ObserveRequest(h.key, h.version, time.Since(start))
	}
}

// observeWritten reports a response written.
func (c *conn) observeWritten(p *pending) {
	if c.s.opts.Observer == nil {
		return
	}
	c.observeErrors(p) // first: a request counted has its errors counted
	c.observe(&p.hdr, p.start)
}

// ErrorObserver is an Observer that also counts the error codes of the
// responses: each non-zero ErrorCode in a response (top level, per topic,
// per partition) is reported once. The server finds them by reflection,
// only when the Observer implements this.
type ErrorObserver interface {
	ObserveError(key int16, code int16)
}

// responseErrors calls fn for every non-zero int16 field named ErrorCode
// in v, a kmsg response, at any depth of structs and slices.
func responseErrors(v reflect.Value, fn func(code int16)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			responseErrors(v.Elem(), fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			switch {
			case f.Name == "ErrorCode" && f.Type.Kind() == reflect.Int16:
				if c := int16(v.Field(i).Int()); c != 0 {
					fn(c)
				}
			case f.Type.Kind() == reflect.Struct, f.Type.Kind() == reflect.Pointer,
				f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() != reflect.Uint8:
				responseErrors(v.Field(i), fn)
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			responseErrors(v.Index(i), fn)
		}
	}
}

// observeErrors reports p's error codes to an ErrorObserver.
func (c *conn) observeErrors(p *pending) {
	eo, ok := c.s.opts.Observer.(ErrorObserver)
	if !ok || p.resp == nil {
		return
	}
	responseErrors(reflect.ValueOf(p.resp), func(code int16) { eo.ObserveError(p.hdr.key, code) })
}
