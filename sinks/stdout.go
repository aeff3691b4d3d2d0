package sinks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

var stdoutSpec = connectors.Spec{
	Kind:    connectors.SinkKind,
	Name:    "stdout",
	Summary: "Write each record as a line on standard output.",
	Doc: "With format value, the line is the record's value as it is. With format json, the line is a JSON object " +
		"with the record's key, value (embedded as JSON when it is a JSON object, else as a string), headers, time " +
		"(RFC 3339, UTC) and origin (dataset, partition, offset); absent parts are left out. " +
		"Output is buffered and written once per batch.",
	Scalar: "format",
	Fields: []connectors.Field{
		{Name: "format", Type: connectors.TypeString, Default: "value", Enum: []string{"value", "json"},
			Doc: "value: the value as it is; json: an object with key, value, headers, time and origin."},
	},
	Example: `pipelines:
  debug:
    from: access
    to:
      - stdout: {format: json}`,
}

func init() { connectors.MustRegisterSink(stdoutSpec, newStdout) }

// stdoutSink writes batches to out (os.Stdout unless a test set it). It is
// safe for concurrent use; Write and Close serialise on mu.
type stdoutSink struct {
	json bool

	mu     sync.Mutex
	out    io.Writer
	buf    []byte
	closed bool
}

var _ connectors.Sink = (*stdoutSink)(nil)

func newStdout(conf *connectors.Config, _ connectors.Resources) (connectors.Sink, error) {
	return &stdoutSink{json: conf.String("format") == "json", out: os.Stdout}, nil
}

// errSinkClosed is returned by Write after Close.
var errSinkClosed = errors.New("sinks: write after close")

func (s *stdoutSink) Write(_ context.Context, batch []*connectors.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSinkClosed
	}
	buf := s.buf[:0]
	for _, m := range batch {
		if s.json {
			buf = appendMessageJSON(buf, m)
		} else {
			buf = append(buf, m.Value...)
		}
		buf = append(buf, '\n')
	}
	s.buf = buf
	if len(buf) > 1<<20 {
		s.buf = nil // do not keep a huge batch's memory
	}
	if _, err := s.out.Write(buf); err != nil {
		return fmt.Errorf("sinks: stdout: %w", err)
	}
	return nil
}

func (s *stdoutSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed, s.buf = true, nil
	return nil
}

// appendMessageJSON appends m as one JSON object:
//
//	{"key":"k","value":{...}|"text","headers":{"h":"v"},"time":"...","dataset":"d","partition":0,"offset":7}
func appendMessageJSON(dst []byte, m *connectors.Message) []byte {
	dst = append(dst, '{')
	if m.Key != nil {
		dst = append(dst, `"key":`...)
		dst = codecs.AppendJSONString(dst, m.Key)
		dst = append(dst, ',')
	}
	dst = append(dst, `"value":`...)
	if isObjectValue(m) {
		dst = appendCompactLine(dst, m.Value)
	} else {
		dst = codecs.AppendJSONString(dst, m.Value)
	}
	if len(m.Headers) > 0 {
		dst = append(dst, `,"headers":{`...)
		for i, h := range m.Headers {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = codecs.AppendJSONString(dst, h.Key)
			dst = append(dst, ':')
			if h.Value == nil {
				dst = append(dst, "null"...)
			} else {
				dst = codecs.AppendJSONString(dst, h.Value)
			}
		}
		dst = append(dst, '}')
	}
	if !m.Time.IsZero() {
		dst = append(dst, `,"time":"`...)
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if m.Dataset != "" {
		dst = append(dst, `,"dataset":`...)
		dst = codecs.AppendJSONString(dst, []byte(m.Dataset))
		dst = append(dst, `,"partition":`...)
		dst = strconv.AppendInt(dst, int64(m.Partition), 10)
		dst = append(dst, `,"offset":`...)
		dst = strconv.AppendInt(dst, m.Offset, 10)
	}
	return append(dst, '}')
}
