package sources

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/weirhub/weir/codecs"
	"github.com/weirhub/weir/connectors"
)

var stdinSpec = connectors.Spec{
	Kind:    connectors.SourceKind,
	Name:    "stdin",
	Summary: "Read records from standard input, one per line.",
	Doc: "Every line is a record (the line break, \\n or \\r\\n, removed); empty lines are skipped. With codec ndjson " +
		"each line is meant to be a JSON object, but it is not checked here: a line that is not becomes a record " +
		"all the same, and a parse processor sends it to the dead-letter dataset with the reason. A line longer " +
		"than max_line_bytes is cut there and its record gets the header weir.truncated: true. Records are handed " +
		"on in batches of batch_size, or of what arrived within batch_period of a batch's first record. At the end " +
		"of the input the source ends (after its last batch is stored).",
	Scalar: "codec",
	Fields: []connectors.Field{
		{Name: "codec", Type: connectors.TypeString, Default: "lines", Enum: []string{"lines", "ndjson"},
			Doc: "lines: any text; ndjson: a JSON object per line (checked by a parse processor, not here)."},
		{Name: "max_line_bytes", Type: connectors.TypeSize, Default: "960KiB", Min: "1B", Max: "1GiB", Doc: "Longer lines are truncated and marked with the header weir.truncated: true. The default leaves 64KiB under a dataset's default max_message_bytes (1MiB) for the record's headers and batch framing, so a cut line is still stored."},
		{Name: "batch_size", Type: connectors.TypeInt, Default: 1000, Min: 1, Doc: "Most records in a batch."},
		{Name: "batch_period", Type: connectors.TypeDuration, Default: "200ms", Min: "1ms", Doc: "Longest wait for a fuller batch after its first record arrived."},
	},
	Example: `sources:
  piped:
    stdin: {codec: ndjson, batch_size: 500}
    to: events
    processors:
      - parse: json`,
}

func init() { connectors.MustRegisterSource(stdinSpec, newStdin) }

// TruncatedHeader is the header set (to "true") on a record whose line
// was longer than the source's max_line_bytes and was cut.
const TruncatedHeader = "weir.truncated"

// stdinSource reads lines on a goroutine of its own (a read from stdin
// cannot be interrupted) and hands them to Read in chunks. Read is called
// by one goroutine at a time; Close may be called from any.
type stdinSource struct {
	in        io.Reader
	maxLine   int
	batchSize int
	period    time.Duration

	start  sync.Once
	chunks chan []*connectors.Message // from the reader; closed at the end of input
	err    error                      // why the reader stopped, if not EOF; set before chunks closes
	done   chan struct{}              // closed by Close
	exited chan struct{}              // closed when the reader returns
	closed sync.Once

	carry []*connectors.Message // what Read had beyond batch_size
	ended bool
}

var _ connectors.Source = (*stdinSource)(nil)

func newStdin(conf *connectors.Config, _ connectors.Resources) (connectors.Source, error) {
	s := &stdinSource{
		in:        os.Stdin,
		maxLine:   int(conf.Size("max_line_bytes")),
		batchSize: conf.Int("batch_size"),
		period:    conf.Duration("batch_period"),
		chunks:    make(chan []*connectors.Message, 4),
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	return s, nil
}

// errSourceClosed is returned by Read after Close.
var errSourceClosed = errors.New("sources: source closed")

// noAck is the AckFunc of sources with nothing to acknowledge.
func noAck(context.Context, error) error { return nil }

func (s *stdinSource) Read(ctx context.Context) ([]*connectors.Message, connectors.AckFunc, error) {
	s.start.Do(func() { go s.readLines() })
	select {
	case <-s.done:
		return nil, nil, errSourceClosed
	default:
	}
	if s.ended {
		return nil, nil, s.endErr()
	}
	batch := s.carry
	s.carry = nil
	var timeout <-chan time.Time
	for len(batch) < s.batchSize {
		if len(batch) > 0 && timeout == nil {
			t := time.NewTimer(s.period)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case chunk, ok := <-s.chunks:
			if !ok {
				s.ended = true
				if len(batch) > 0 {
					return batch, noAck, nil
				}
				return nil, nil, s.endErr()
			}
			batch = append(batch, chunk...)
		case <-timeout:
			return batch, noAck, nil
		case <-ctx.Done():
			s.carry = batch
			return nil, nil, ctx.Err()
		case <-s.done:
			return nil, nil, errSourceClosed
		}
	}
	if len(batch) > s.batchSize {
		s.carry = append([]*connectors.Message(nil), batch[s.batchSize:]...)
		batch = batch[:s.batchSize:s.batchSize]
	}
	return batch, noAck, nil
}

// endErr is what Read returns at the end: the read error once, if there
// was one, then ErrEndOfInput.
func (s *stdinSource) endErr() error {
	if err := s.err; err != nil {
		s.err = nil
		return fmt.Errorf("sources: stdin: %w", err)
	}
	return connectors.ErrEndOfInput
}

// readLines reads until the end of input, handing lines over in chunks:
// whenever a batch is full or the next read could block.
func (s *stdinSource) readLines() {
	defer close(s.exited)
	defer close(s.chunks)
	br := bufio.NewReaderSize(s.in, 64<<10)
	var (
		chunk     []*connectors.Message
		mem       arena
		long      []byte // a line longer than br's buffer, so far
		inLong    bool
		truncated bool
		now       time.Time
	)
	for {
		if len(chunk) > 0 && (len(chunk) >= s.batchSize || !hasLine(br)) {
			select {
			case s.chunks <- chunk:
				chunk = nil
			case <-s.done:
				return
			}
		}
		buffered := br.Buffered()
		line, err := br.ReadSlice('\n')
		if len(line) > buffered || now.IsZero() {
			// The line needed a read: lines taken from what one read
			// brought arrived together and share its time (a clock read
			// per line was 1.4 % of an NDJSON-to-Parquet run's CPU).
			now = time.Now()
		}
		if err == bufio.ErrBufferFull {
			long, truncated = s.appendCapped(long, line, truncated)
			inLong = true
			continue
		}
		line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
		if inLong {
			long, truncated = s.appendCapped(long, line, truncated)
			line, long, inLong = long, long[:0], false
			if !truncated {
				line = bytes.TrimSuffix(line, []byte{'\r'}) // a \r at the end of the buffer
			}
		} else if len(line) > s.maxLine {
			line, truncated = line[:s.maxLine], true
		}
		if len(line) > 0 {
			m := mem.message()
			m.Value, m.Time = mem.copy(line), now
			if truncated {
				m.Headers = []codecs.RecordHeader{{Key: []byte(TruncatedHeader), Value: []byte("true")}}
			}
			chunk = append(chunk, m)
		}
		truncated = false
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			if len(chunk) > 0 {
				select {
				case s.chunks <- chunk:
				case <-s.done:
				}
			}
			return
		}
	}
}

// appendCapped appends p to line up to max_line_bytes, reporting whether
// anything was cut (or already had been).
func (s *stdinSource) appendCapped(line, p []byte, truncated bool) ([]byte, bool) {
	if room := s.maxLine - len(line); len(p) > room {
		return append(line, p[:room]...), true
	}
	return append(line, p...), truncated
}

// hasLine reports whether br holds a whole line, so that reading it will
// not block.
func hasLine(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(b, '\n') >= 0
}

// Close stops the reader. It closes the input if it can be closed (stdin
// can), and waits a little for the reader to return: a read from a
// terminal that cannot be interrupted ends with the process.
func (s *stdinSource) Close(ctx context.Context) error {
	s.closed.Do(func() {
		close(s.done)
		s.start.Do(func() { close(s.exited) }) // never started
		if c, ok := s.in.(io.Closer); ok {
			c.Close()
		}
	})
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-ctx.Done():
	case <-t.C:
	}
	return nil
}

// arena hands out messages and copies of values from larger blocks, so
// that a batch costs a few allocations rather than two per record. Each
// piece is handed over for good: blocks are never reused.
type arena struct {
	bytes []byte
	msgs  []connectors.Message
}

func (a *arena) copy(p []byte) []byte {
	if len(p) > cap(a.bytes)-len(a.bytes) {
		a.bytes = make([]byte, 0, max(64<<10, len(p)))
	}
	start := len(a.bytes)
	a.bytes = append(a.bytes, p...)
	return a.bytes[start:len(a.bytes):len(a.bytes)]
}

func (a *arena) message() *connectors.Message {
	if len(a.msgs) == 0 {
		a.msgs = make([]connectors.Message, 256)
	}
	m := &a.msgs[0]
	a.msgs = a.msgs[1:]
	return m
}
