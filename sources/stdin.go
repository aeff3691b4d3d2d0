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
	"sync/atomic"
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
	chunks chan *stdinChunk // from the reader; closed at the end of input
	err    error            // why the reader stopped, if not EOF; set before chunks closes
	done   chan struct{}    // closed by Close
	exited chan struct{}    // closed when the reader returns
	closed sync.Once

	// pending are the chunks received whose messages Read has not all
	// handed out yet: those of pending[0] from next on, then all of the
	// others; avail counts them.
	pending []*stdinChunk
	next    int
	avail   int
	ended   bool

	// freeChunks and freeBatches hold the memory of acknowledged
	// batches for the reader and Read to use again (what they have no
	// room for goes to the collector).
	freeChunks  chan *stdinChunk
	freeBatches chan batchMem
}

// stdinFree is how many acknowledged chunks and batches a stdin source
// keeps for reuse: more than the reader and Read have in hand at once
// (the chunks queue holds 4, a batch spans a few).
const stdinFree = 16

// stdinChunk is what the reader hands to Read: the lines one read of the
// input brought (or batch_size of them), as messages that live, with their
// values, in the chunk's own memory. Each batch holding some of its
// messages holds a reference, and so does Read until it has handed them
// all out; the last release returns the chunk to the source, whose reader
// fills it again. A run of stdin then allocates no memory per record once
// the first batches are acknowledged (it was three quarters of the bytes
// an NDJSON stdin-to-file run allocated, and the collector's work with
// them).
type stdinChunk struct {
	src   *stdinSource
	refs  atomic.Int32
	msgs  []connectors.Message
	ptrs  []*connectors.Message
	bytes []byte // the values, one after the other
	ends  []int  // where each message's value ends in bytes
}

// maxReusedChunk is the most value bytes a chunk keeps for reuse: one
// that held longer lines gives its memory back to the collector.
const maxReusedChunk = 1 << 20

func (c *stdinChunk) add(line []byte, now time.Time, truncated bool) {
	c.bytes = append(c.bytes, line...)
	c.ends = append(c.ends, len(c.bytes))
	c.msgs = append(c.msgs, connectors.Message{Time: now})
	if truncated {
		c.msgs[len(c.msgs)-1].Headers = []codecs.RecordHeader{{Key: []byte(TruncatedHeader), Value: []byte("true")}}
	}
}

// seal points the messages at their values, once every line is in: the
// memory does not move after that.
func (c *stdinChunk) seal() {
	start := 0
	for i := range c.msgs {
		end := c.ends[i]
		c.msgs[i].Value = c.bytes[start:end:end]
		c.ptrs = append(c.ptrs, &c.msgs[i])
		start = end
	}
}

// release drops a reference; the last one makes the chunk free.
func (c *stdinChunk) release() {
	if c.refs.Add(-1) != 0 {
		return
	}
	clear(c.msgs) // what the pipeline left in them (parsed views, errors)
	clear(c.ptrs)
	c.msgs, c.ptrs, c.ends = c.msgs[:0], c.ptrs[:0], c.ends[:0]
	c.bytes = c.bytes[:0]
	if cap(c.bytes) > maxReusedChunk {
		c.bytes = nil
	}
	select {
	case c.src.freeChunks <- c:
	default:
	}
}

func (s *stdinSource) newChunk() *stdinChunk {
	var c *stdinChunk
	select {
	case c = <-s.freeChunks:
	default:
		c = &stdinChunk{src: s}
	}
	c.refs.Store(1) // Read's, until it has handed every message out
	return c
}

// stdinBatch is a batch Read handed out and the chunks its messages live
// in, released by its acknowledgement. It is not reused (its slices are),
// so that an acknowledgement called twice cannot release another batch.
type stdinBatch struct {
	batchMem
	acked atomic.Bool
}

type batchMem struct {
	msgs   []*connectors.Message
	chunks []*stdinChunk
}

func (b *stdinBatch) ack(context.Context, error) error {
	if b.acked.Swap(true) {
		return nil // called again: the chunks were released already
	}
	src := b.chunks[0].src
	for _, c := range b.chunks {
		c.release()
	}
	clear(b.msgs)
	clear(b.chunks)
	select {
	case src.freeBatches <- batchMem{b.msgs[:0], b.chunks[:0]}:
	default:
	}
	b.batchMem = batchMem{}
	return nil
}

var _ connectors.Source = (*stdinSource)(nil)

func newStdin(conf *connectors.Config, _ connectors.Resources) (connectors.Source, error) {
	s := &stdinSource{
		in:          os.Stdin,
		maxLine:     int(conf.Size("max_line_bytes")),
		batchSize:   conf.Int("batch_size"),
		period:      conf.Duration("batch_period"),
		chunks:      make(chan *stdinChunk, 4),
		freeChunks:  make(chan *stdinChunk, stdinFree),
		freeBatches: make(chan batchMem, stdinFree),
		done:        make(chan struct{}),
		exited:      make(chan struct{}),
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
		if s.avail > 0 {
			return s.take()
		}
		return nil, nil, s.endErr()
	}
	var timeout <-chan time.Time
	for s.avail < s.batchSize {
		if s.avail > 0 && timeout == nil {
			t := time.NewTimer(s.period)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case c, ok := <-s.chunks:
			if !ok {
				s.ended = true
				if s.avail > 0 {
					return s.take()
				}
				return nil, nil, s.endErr()
			}
			s.pending = append(s.pending, c)
			s.avail += len(c.ptrs)
		case <-timeout:
			return s.take()
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-s.done:
			return nil, nil, errSourceClosed
		}
	}
	return s.take()
}

// take hands out up to batch_size of the pending messages as a batch.
func (s *stdinSource) take() ([]*connectors.Message, connectors.AckFunc, error) {
	b := new(stdinBatch)
	select {
	case b.batchMem = <-s.freeBatches:
	default:
	}
	for len(s.pending) > 0 && len(b.msgs) < s.batchSize {
		c := s.pending[0]
		n := min(len(c.ptrs)-s.next, s.batchSize-len(b.msgs))
		b.msgs = append(b.msgs, c.ptrs[s.next:s.next+n]...)
		c.refs.Add(1)
		b.chunks = append(b.chunks, c)
		s.next += n
		s.avail -= n
		if s.next == len(c.ptrs) {
			s.pending[0] = nil
			s.pending = s.pending[1:]
			s.next = 0
			c.release() // Read's reference
		}
	}
	return b.msgs, b.ack, nil
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
		chunk     *stdinChunk
		long      []byte // a line longer than br's buffer, so far
		inLong    bool
		truncated bool
		now       time.Time
	)
	send := func() bool {
		chunk.seal()
		select {
		case s.chunks <- chunk:
			chunk = nil
			return true
		case <-s.done:
			return false
		}
	}
	for {
		// A whole line in the buffer is taken from there, found with one
		// scan; without one the next read may block, so the lines so far
		// go first.
		var line []byte
		var err error
		if !inLong {
			b, _ := br.Peek(br.Buffered())
			if k := bytes.IndexByte(b, '\n'); k >= 0 {
				line = b[:k+1]
			}
		}
		if chunk != nil && len(chunk.msgs) > 0 && (line == nil || len(chunk.msgs) >= s.batchSize) {
			if !send() {
				return
			}
		}
		if line != nil {
			br.Discard(len(line))
			if now.IsZero() {
				now = time.Now()
			}
		} else {
			buffered := br.Buffered()
			line, err = br.ReadSlice('\n')
			if len(line) > buffered || now.IsZero() {
				// The line needed a read: lines taken from what one read
				// brought arrived together and share its time (a clock
				// read per line was 1.4 % of an NDJSON-to-Parquet run's
				// CPU).
				now = time.Now()
			}
		}
		if err == bufio.ErrBufferFull {
			long, truncated = s.appendCapped(long, line, truncated)
			inLong = true
			continue
		}
		line = trimByte(trimByte(line, '\n'), '\r')
		if inLong {
			long, truncated = s.appendCapped(long, line, truncated)
			line, long, inLong = long, long[:0], false
			if !truncated {
				line = trimByte(line, '\r') // a \r at the end of the buffer
			}
		} else if len(line) > s.maxLine {
			line, truncated = line[:s.maxLine], true
		}
		if len(line) > 0 {
			if chunk == nil {
				chunk = s.newChunk()
			}
			chunk.add(line, now, truncated)
		}
		truncated = false
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			if chunk != nil && len(chunk.msgs) > 0 {
				send()
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

// trimByte removes c from the end of b, if it is there.
func trimByte(b []byte, c byte) []byte {
	if n := len(b); n > 0 && b[n-1] == c {
		return b[:n-1]
	}
	return b
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
