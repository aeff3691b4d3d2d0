package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/weirhub/weir/connectors"
)

func newTestStdin(t *testing.T, conf string, in io.Reader) *stdinSource {
	t.Helper()
	s, err := newStdin(parseConfig(t, &stdinSpec, conf), connectors.Resources{})
	if err != nil {
		t.Fatalf("newStdin(%q): %v", conf, err)
	}
	src := s.(*stdinSource)
	src.in = in
	t.Cleanup(func() { src.Close(context.Background()) })
	return src
}

// values renders records as value strings, a truncated one with a "!".
func values(msgs []*connectors.Message) []string {
	var out []string
	for _, m := range msgs {
		v := string(m.Value)
		if string(m.Header(TruncatedHeader)) == "true" {
			v += "!"
		}
		out = append(out, v)
	}
	return out
}

func TestStdinLines(t *testing.T) {
	long := strings.Repeat("x", 100<<10) // longer than the reader's buffer
	tests := []struct {
		name, in, conf string
		want           []string
	}{
		{"lines", "a\nb c\n{\"x\":1}\n", "", []string{"a", "b c", `{"x":1}`}},
		{"no final newline", "a\nb", "", []string{"a", "b"}},
		{"crlf and empty lines", "a\r\n\r\n\nb\r\n", "", []string{"a", "b"}},
		{"invalid ndjson kept", "{\"a\":1}\nnot json\n", "codec: ndjson", []string{`{"a":1}`, "not json"}},
		{"truncated", "abcdefgh\nabc\nabcd\r\n", "max_line_bytes: 4", []string{"abcd!", "abc", "abcd"}},
		{"long line", long + "\nshort\n", "", []string{long, "short"}},
		{"long line truncated", long + "\nshort\n" + long, "max_line_bytes: 70000", []string{long[:70000] + "!", "short", long[:70000] + "!"}},
		{"empty", "", "", nil},
	}
	for _, tt := range tests {
		for _, r := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"", func(r io.Reader) io.Reader { return r }}, {"/one byte", iotest.OneByteReader}, {"/half", iotest.HalfReader}} {
			if r.name == "/one byte" && len(tt.in) > 1000 {
				continue
			}
			t.Run(tt.name+r.name, func(t *testing.T) {
				s := newTestStdin(t, tt.conf, r.wrap(strings.NewReader(tt.in)))
				var got []*connectors.Message
				for range 100 {
					batch, _, err := s.Read(context.Background())
					got = append(got, batch...)
					if errors.Is(err, connectors.ErrEndOfInput) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if g := values(got); strings.Join(g, "|") != strings.Join(tt.want, "|") || len(g) != len(tt.want) {
					t.Errorf("stdin(%.40q) = %.200q, want %.200q", tt.in, g, tt.want)
				}
				if _, _, err := s.Read(context.Background()); !errors.Is(err, connectors.ErrEndOfInput) {
					t.Errorf("Read after the end = %v, want ErrEndOfInput", err)
				}
			})
		}
	}
}

func TestStdinBatchSize(t *testing.T) {
	in := strings.Repeat("line\n", 25)
	s := newTestStdin(t, "batch_size: 10", strings.NewReader(in))
	var sizes []int
	for range 10 {
		batch, ack, err := s.Read(context.Background())
		if errors.Is(err, connectors.ErrEndOfInput) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
	}
	if !equalInts(sizes, []int{10, 10, 5}) {
		t.Errorf("batches = %v, want [10 10 5]", sizes)
	}
}

// TestStdinBatchPeriod checks a batch goes out after batch_period when
// the input pauses, and that Close ends a reader waiting for input.
func TestStdinBatchPeriod(t *testing.T) {
	pr, pw := io.Pipe()
	s := newTestStdin(t, "batch_size: 1000\nbatch_period: 50ms", pr)
	go func() {
		io.WriteString(pw, "a\nb\npartial")
	}()
	start := time.Now()
	batch, _, err := s.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond || d > 3*time.Second {
		t.Errorf("a batch came after %v, want after batch_period (50ms)", d)
	}
	if got := values(batch); strings.Join(got, "|") != "a|b" {
		t.Errorf("batch = %q, want [a b]", got)
	}
	// A Read with nothing arriving ends with its ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := s.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read with no input = %v, want the ctx's error", err)
	}
	// Close closes the pipe: the reader goroutine returns.
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader goroutine did not return after Close")
	}
	if _, _, err := s.Read(context.Background()); err == nil {
		t.Error("Read after Close = nil error")
	}
	s.Close(context.Background()) // again: no effect
}

func TestStdinCloseUnstarted(t *testing.T) {
	s := newTestStdin(t, "", strings.NewReader("a\n"))
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStdinReadError(t *testing.T) {
	boom := errors.New("boom")
	s := newTestStdin(t, "", io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)))
	batch, _, err := s.Read(context.Background())
	if err != nil || len(batch) != 1 {
		t.Fatalf("first Read = %d records, %v", len(batch), err)
	}
	if _, _, err := s.Read(context.Background()); !errors.Is(err, boom) {
		t.Errorf("second Read = %v, want the read error", err)
	}
	if _, _, err := s.Read(context.Background()); !errors.Is(err, connectors.ErrEndOfInput) {
		t.Errorf("third Read = %v, want ErrEndOfInput", err)
	}
}

func TestStdinConfigErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"batch_size: 0", `1:13: batch_size: must be at least 1, not 0`},
		{"batch_period: 0s", `1:15: batch_period: must be at least 1ms, not 0s`},
		{"max_line_bytes: 0", `1:17: max_line_bytes: must be from 1B to 1GiB, not 0`},
	}
	for _, tt := range tests {
		conf, err := parseOrErr(t, &stdinSpec, tt.src)
		if err == nil {
			_, err = newStdin(conf, connectors.Resources{})
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("newStdin(%q) = %v, want %s", tt.src, err, tt.want)
		}
	}
}

// TestStdinTimeFollowsReads: lines that one read brought share its time,
// a line that needed a later read gets that read's time, also when it
// began in the earlier one.
func TestStdinTimeFollowsReads(t *testing.T) {
	pr, pw := io.Pipe()
	s := newTestStdin(t, "batch_size: 1000\nbatch_period: 10ms", pr)
	go func() {
		io.WriteString(pw, "a\nb\nc-begins")
		time.Sleep(100 * time.Millisecond)
		io.WriteString(pw, "-ends\nd\n")
		pw.Close()
	}()
	var msgs []*connectors.Message
	for len(msgs) < 4 {
		batch, _, err := s.Read(context.Background())
		if err != nil {
			t.Fatalf("Read after %d records: %v", len(msgs), err)
		}
		msgs = append(msgs, batch...)
	}
	if got := strings.Join(values(msgs), "|"); got != "a|b|c-begins-ends|d" {
		t.Fatalf("records = %q", got)
	}
	if !msgs[0].Time.Equal(msgs[1].Time) {
		t.Errorf("a and b came in one read but have times %v and %v", msgs[0].Time, msgs[1].Time)
	}
	if d := msgs[2].Time.Sub(msgs[1].Time); d < 80*time.Millisecond {
		t.Errorf("c ended in a read 100ms after b's, but its time is only %v after b's", d)
	}
	if !msgs[3].Time.Equal(msgs[2].Time) {
		t.Errorf("c's end and d came in one read but have times %v and %v", msgs[2].Time, msgs[3].Time)
	}
}

// TestStdinReusesAckedBatches: once a batch is acknowledged its messages'
// memory serves later lines, and never before: batches held unacknowledged
// keep their values while later ones are read and acknowledged, and every
// line comes out as it went in.
func TestStdinReusesAckedBatches(t *testing.T) {
	var in strings.Builder
	const lines = 20000
	for i := range lines {
		fmt.Fprintf(&in, "{\"n\":%d,\"pad\":%q}\n", i, strings.Repeat("x", i%300))
	}
	want := strings.Split(strings.TrimSuffix(in.String(), "\n"), "\n")
	s := newTestStdin(t, "batch_size: 100", iotest.HalfReader(strings.NewReader(in.String())))
	type held struct {
		msgs []*connectors.Message
		want []string
		ack  connectors.AckFunc
	}
	var hold []held
	next := 0
	for next < lines {
		batch, ack, err := s.Read(context.Background())
		if err != nil {
			t.Fatalf("Read after %d lines: %v", next, err)
		}
		got := values(batch)
		if strings.Join(got, "\n") != strings.Join(want[next:next+len(got)], "\n") {
			t.Fatalf("batch from line %d = %.100q, want %.100q", next, got, want[next:next+len(got)])
		}
		// Every seventh batch is held back for three more batches,
		// and the pipeline's writes to a message (Sync's buffer, a
		// parsed view) are dropped with it.
		batch[0].Original = batch[0].Value
		if next/100%7 == 0 {
			hold = append(hold, held{batch, want[next : next+len(got)], ack})
		} else if err := ack(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		next += len(got)
		for len(hold) > 0 && next-len(hold[0].want) >= 400 {
			h := hold[0]
			if g := values(h.msgs); strings.Join(g, "\n") != strings.Join(h.want, "\n") {
				t.Fatalf("a batch held back changed to %.100q, want %.100q", g, h.want)
			}
			h.ack(context.Background(), nil)
			h.ack(context.Background(), nil) // again: no effect
			hold = hold[1:]
		}
	}
	if _, _, err := s.Read(context.Background()); !errors.Is(err, connectors.ErrEndOfInput) {
		t.Errorf("Read after the end = %v, want ErrEndOfInput", err)
	}
}

// TestStdinAllocations: reading and acknowledging batches allocates
// nothing per record once the first batches have been acknowledged, only
// a little per batch (a timer, the acknowledgement: 0.3 bytes a record
// here, a few with the race detector, against 365 when every batch had
// new memory, three quarters of what an NDJSON stdin-to-file run
// allocated).
func TestStdinAllocations(t *testing.T) {
	line := `{"ts":"2026-11-21T00:00:01.234Z","level":"info","host":"web-07","path":"/api/v1/orders/48213","status":200}` + "\n"
	const batches = 400
	s := newTestStdin(t, "batch_size: 1000", strings.NewReader(strings.Repeat(line, 1000*batches)))
	read := func(n int) {
		for range n {
			batch, ack, err := s.Read(context.Background())
			if err != nil || len(batch) == 0 {
				t.Fatalf("Read: %d records, %v", len(batch), err)
			}
			ack(context.Background(), nil)
		}
	}
	read(20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	read(batches - 40)
	runtime.ReadMemStats(&after)
	perRecord := float64(after.TotalAlloc-before.TotalAlloc) / float64((batches-40)*1000)
	t.Logf("%.2f bytes allocated per record", perRecord)
	if perRecord > 32 {
		t.Errorf("%.1f bytes allocated per record read and acknowledged, want at most 32 (the record is %d)", perRecord, len(line))
	}
}
