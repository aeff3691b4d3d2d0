package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

func TestStdoutJSON(t *testing.T) {
	ts := time.Date(2026, 11, 21, 10, 0, 0, 123e6, time.UTC)
	tests := []struct {
		in   connectors.Message
		want string
	}{
		{connectors.Message{Value: []byte("plain text")}, `{"value":"plain text"}`},
		{connectors.Message{Value: []byte(`{"a":1}`)}, `{"value":{"a":1}}`},
		{connectors.Message{Value: []byte(" {\n \"a\": [1,\n2]}\n")}, `{"value":{  "a": [1, 2]}}`},
		{connectors.Message{Value: []byte(`{"a":`)}, `{"value":"{\"a\":"}`},
		{connectors.Message{Value: []byte(`[1,2]`)}, `{"value":"[1,2]"}`},
		{connectors.Message{Value: []byte("tab\tquote\"nl\nctl\x01bad\xff é")}, `{"value":"tab\tquote\"nl\nctl\u0001bad` + "\uFFFD" + ` é"}`},
		{connectors.Message{Key: []byte("web-1"), Value: []byte(`x`), Time: ts, Dataset: "access", Partition: 2, Offset: 42,
			Headers: []codecs.RecordHeader{{Key: []byte("h"), Value: []byte("v")}, {Key: []byte("n")}}},
			`{"key":"web-1","value":"x","headers":{"h":"v","n":null},"time":"2026-11-21T10:00:00.123Z","dataset":"access","partition":2,"offset":42}`},
	}
	for _, tt := range tests {
		got := string(appendMessageJSON(nil, &tt.in))
		if got != tt.want {
			t.Errorf("appendMessageJSON(%q) = %s, want %s", tt.in.Value, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("appendMessageJSON(%q) = %s, not valid JSON", tt.in.Value, got)
		}
	}
}

func TestStdoutWrite(t *testing.T) {
	tests := []struct {
		format string
		values []string
		want   string
	}{
		{"value", []string{"a", "b c", `{"x":1}`}, "a\nb c\n{\"x\":1}\n"},
		{"json", []string{"a", `{"x":1}`}, `{"value":"a","time":"2026-11-21T10:00:00Z","dataset":"access","partition":0,"offset":0}` + "\n" +
			`{"value":{"x":1},"time":"2026-11-21T10:00:00Z","dataset":"access","partition":0,"offset":1}` + "\n"},
	}
	for _, tt := range tests {
		s, err := newStdout(parseConfig(t, &stdoutSpec, "format: "+tt.format), connectors.Resources{})
		if err != nil {
			t.Fatal(err)
		}
		var out countingBuffer
		s.(*stdoutSink).out = &out
		if err := s.Write(context.Background(), messages(tt.values...)); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != tt.want {
			t.Errorf("stdout %s Write(%q) = %q, want %q", tt.format, tt.values, got, tt.want)
		}
		if out.writes != 1 {
			t.Errorf("stdout %s: %d writes for one batch, want 1", tt.format, out.writes)
		}
		s.Close(context.Background())
		s.Close(context.Background())
		if err := s.Write(context.Background(), messages("x")); err == nil {
			t.Errorf("Write after Close = nil, want an error")
		}
	}
}

type countingBuffer struct {
	bytes.Buffer
	writes int
}

func (b *countingBuffer) Write(p []byte) (int, error) { b.writes++; return b.Buffer.Write(p) }
