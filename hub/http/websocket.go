package http

import (
	"context"
	"errors"
	nethttp "net/http"

	"github.com/coder/websocket"

	"github.com/weirhub/weir/hub"
)

// serveWebSocket streams the subscription over a WebSocket: one text
// message per event, the JSON of hub.AppendEventJSON with its "type" and "id".
// The client sends nothing; a ping while idle keeps the connection alive.
// A client that does not take a message within WriteTimeout is cut: its
// socket is full, so the close (status 1008, a reason saying to resume)
// rarely reaches it, and it resumes with the id of the last message it got.
func serveWebSocket(w nethttp.ResponseWriter, r *nethttp.Request, h SubscribeHub, name string, so hub.SubscribeOptions, opts SubscribeOptions) {
	var ao *websocket.AcceptOptions
	if o := r.Header.Get("Origin"); o != "" && allowed(opts.AllowOrigins, o) {
		ao = &websocket.AcceptOptions{InsecureSkipVerify: true} // the origin is allowed above
	}
	var c *websocket.Conn
	sctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx := sctx
	accepted := false
	// The upgrade is answered once the start positions are fixed: a
	// client that is connected misses nothing written since.
	so.OnStart = func() error {
		accepted = true // answered, by Accept either way
		var err error
		if c, err = websocket.Accept(w, r, ao); err != nil {
			return err
		}
		ctx = c.CloseRead(sctx)
		go func() { <-ctx.Done(); cancel() }() // the client closed: end the subscription
		return nil
	}
	var buf []byte
	slow := false
	write := func(b []byte) error {
		wctx, cancel := context.WithTimeout(ctx, opts.WriteTimeout)
		defer cancel()
		err := c.Write(wctx, websocket.MessageText, b)
		if errors.Is(wctx.Err(), context.DeadlineExceeded) {
			slow = true
		}
		return err
	}
	so.OnIdle = func() error {
		pctx, cancel := context.WithTimeout(ctx, opts.WriteTimeout)
		defer cancel()
		return c.Ping(pctx)
	}
	err := h.Subscribe(sctx, name, so, func(e *hub.Event) error {
		buf = hub.AppendEventJSON(buf[:0], e, true)
		return write(buf)
	})
	if errors.Is(err, hub.ErrSlowSubscriber) {
		slow = true // after a "resume" message
	}
	switch {
	case !accepted:
		if err != nil {
			writeJSON(w, nethttp.StatusInternalServerError, map[string]string{"error": err.Error()})
		}
	case c == nil:
	case slow:
		c.Close(websocket.StatusPolicyViolation, "too slow: reconnect with last_event_id to resume")
	case ctx.Err() != nil:
		c.Close(websocket.StatusGoingAway, "shutting down")
	default:
		c.Close(websocket.StatusInternalError, truncateReason(err))
	}
}

// truncateReason fits an error in a close frame's 123 bytes.
func truncateReason(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}
