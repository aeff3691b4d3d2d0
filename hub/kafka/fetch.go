package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhub/weir/hub"
	wlog "github.com/weirhub/weir/log"
)

func handleFetch(c *conn, h *header, kreq kmsg.Request) *pending {
	req := kreq.(*kmsg.FetchRequest)
	if req.SessionID != 0 {
		// Weir answers every fetch with session id 0 (no session), so a
		// client never has a session to refer to.
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		resp.ErrorCode = kerr.FetchSessionIDNotFound.Code
		return ready(resp)
	}
	fr := hub.FetchRequest{MinBytes: req.MinBytes, MaxBytes: req.MaxBytes, MaxWait: ms(req.MaxWaitMillis),
		ReadCommitted: req.IsolationLevel == 1}
	denied := c.deniedFetch(req) // topics the principal may not read (acl.go)
	var at []int                 // with denied topics: each fetched partition's place in the response
	n := 0
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			n++
			if denied[t.Topic] {
				continue
			}
			at = append(at, n-1)
			fr.Partitions = append(fr.Partitions, hub.FetchPartition{Dataset: t.Topic, Partition: p.Partition,
				Offset: p.FetchOffset, MaxBytes: p.PartitionMaxBytes})
		}
	}
	// The writer runs the long poll itself when this response is next
	// (prepare), rather than a goroutine of the fetch's own that it would
	// wait for: the produce that ends the wait wakes the goroutine that
	// writes the answer, one wake-up on the way from producer to consumer
	// instead of two, and no goroutine per fetch. Responses go out in
	// request order, so the writer would wait for this one anyway. The
	// wait is counted from now: time spent queued behind earlier
	// responses is taken off MaxWait.
	arrived := time.Now()
	var results []hub.FetchResult
	p := &pending{}
	p.write = func(c *conn) error { return c.writeFetch(p, h.version, req, results) }
	p.done = func() { hub.ReleaseFetch(results) }
	if len(fr.Partitions) > 0 && fr.MinBytes <= 1 && c.writerIdle() {
		// Nothing is owed before this answer and no request waits
		// behind it: when the records are there already (a consumer
		// that fell behind, or one whose next fetch arrives after a
		// produce), the reader answers at once (conn.queue), with no
		// wake-up of the writer at all. Else the writer waits. Only
		// for MinBytes 1 (Kafka's default), so that a read not
		// answered found nothing, and no bytes are counted as fetched
		// twice.
		now := fr
		now.MaxWait = 0
		results = c.s.hub.Fetch(c.ctx, now)
		if fetchAnswered(results, fr.MinBytes) {
			if denied != nil {
				results = withRefusals(results, at, n)
			}
			return p
		}
		hub.ReleaseFetch(results)
		results = nil
	}
	p.prepare = func(c *conn) {
		if len(fr.Partitions) > 0 {
			if fr.MaxWait > 0 {
				fr.MaxWait = max(fr.MaxWait-time.Since(arrived), 0)
			}
			results = c.s.hub.Fetch(c.ctx, fr)
		}
		if denied != nil {
			results = withRefusals(results, at, n)
		}
	}
	return p
}

// fetchAnswered reports whether results, read without waiting, answer a
// fetch: MinBytes (at least one) are there, or a partition failed.
func fetchAnswered(results []hub.FetchResult, minBytes int32) bool {
	var total int64
	for i := range results {
		if results[i].Err != nil {
			return true
		}
		total += results[i].Bytes
	}
	return total >= int64(max(minBytes, 1))
}

// fetchChunk marks where a file section goes between the encoded bytes.
type fetchChunk struct {
	at  int // position in the encoded bytes
	sec wlog.Section
}

// encodeFetch encodes a Fetch response for versions 4 to 12 with the
// record bytes left out: chunks say where each file section belongs. The
// first four bytes are the frame size, covering the sections too.
func encodeFetch(b []byte, p *pending, version int16, req *kmsg.FetchRequest, results []hub.FetchResult, chunks []fetchChunk) ([]byte, []fetchChunk) {
	flex := version >= 12
	b = appendResponseHeader(b, p)
	b = binary.BigEndian.AppendUint32(b, 0) // throttle
	if version >= 7 {
		b = binary.BigEndian.AppendUint16(b, 0) // error code
		b = binary.BigEndian.AppendUint32(b, 0) // session id: none
	}
	b = appendArrayLen(b, len(req.Topics), flex)
	var records int64
	i := 0
	for _, t := range req.Topics {
		b = appendString(b, t.Topic, flex)
		b = appendArrayLen(b, len(t.Partitions), flex)
		for _, tp := range t.Partitions {
			r := &results[i]
			i++
			b = binary.BigEndian.AppendUint32(b, uint32(tp.Partition))
			b = binary.BigEndian.AppendUint16(b, uint16(errCode(r.Err)))
			b = binary.BigEndian.AppendUint64(b, uint64(r.HighWatermark))
			b = binary.BigEndian.AppendUint64(b, uint64(r.LastStableOffset))
			if version >= 5 {
				b = binary.BigEndian.AppendUint64(b, uint64(r.LogStartOffset))
			}
			switch {
			case len(r.Aborted) > 0:
				b = appendArrayLen(b, len(r.Aborted), flex)
				for _, a := range r.Aborted {
					b = binary.BigEndian.AppendUint64(b, uint64(a.ProducerID))
					b = binary.BigEndian.AppendUint64(b, uint64(a.FirstOffset))
					if flex {
						b = append(b, 0)
					}
				}
			case flex: // aborted transactions: null
				b = append(b, 0)
			default:
				b = binary.BigEndian.AppendUint32(b, 0xffffffff)
			}
			if version >= 11 {
				b = binary.BigEndian.AppendUint32(b, 0xffffffff) // preferred read replica: none
			}
			if flex {
				b = binary.AppendUvarint(b, uint64(r.Bytes)+1)
			} else {
				b = binary.BigEndian.AppendUint32(b, uint32(r.Bytes))
			}
			for _, s := range r.Sections {
				chunks = append(chunks, fetchChunk{at: len(b), sec: s})
			}
			records += r.Bytes
			if flex {
				b = append(b, 0)
			}
		}
		if flex {
			b = append(b, 0)
		}
	}
	if flex {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(int64(len(b)-4)+records))
	return b, chunks
}

func appendArrayLen(b []byte, n int, flex bool) []byte {
	if flex {
		return binary.AppendUvarint(b, uint64(n)+1)
	}
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

func appendString(b []byte, s string, flex bool) []byte {
	if flex {
		b = binary.AppendUvarint(b, uint64(len(s))+1)
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	}
	return append(b, s...)
}

// inlineFetchBytes is the most record bytes a fetch response carries
// copied in with its other bytes, in one write: below it a pread and one
// write (one TCP segment burst the client reads whole) cost less than a
// write, a sendfile per section and a write, each a packet of its own with
// TCP_NODELAY. A tailing consumer's fetches, a few batches each, take this
// path; catch-up reads of more take sendfile. A variable for the benchmark.
var inlineFetchBytes int64 = 64 << 10

// writeFetch writes a fetch response: the encoded bytes with the record
// batches from the segment files, with sendfile when they are more than
// inlineFetchBytes, else read in and written with the rest at once.
func (c *conn) writeFetch(p *pending, version int16, req *kmsg.FetchRequest, results []hub.FetchResult) error {
	b, chunks := encodeFetch(c.wbuf[:0], p, version, req, results, nil)
	c.wbuf = b
	var records int64
	for _, ch := range chunks {
		records += ch.sec.Len
	}
	if records <= inlineFetchBytes {
		bp := inlineBufs.Get().(*[]byte)
		out, err := inlineSections((*bp)[:0], b, chunks)
		if err == nil {
			_, err = c.nc.Write(out)
		} else {
			err = fmt.Errorf("reading a segment for a fetch: %w", err)
		}
		if cap(out) <= 2*int(inlineFetchBytes)+64<<10 {
			*bp = out // pooled at a bounded size only
			inlineBufs.Put(bp)
		}
		return err
	}
	at := 0
	for _, ch := range chunks {
		if ch.at > at {
			if _, err := c.nc.Write(b[at:ch.at]); err != nil {
				return err
			}
			at = ch.at
		}
		if err := sendSection(c.nc, ch.sec); err != nil {
			return fmt.Errorf("sending %d bytes at %d of a segment: %w", ch.sec.Len, ch.sec.Pos, err)
		}
	}
	if at < len(b) {
		if _, err := c.nc.Write(b[at:]); err != nil {
			return err
		}
	}
	return nil
}

// inlineBufs holds the buffers of fetch responses written with their
// records inline: shared by all connections, so that idle ones hold none.
var inlineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// inlineSections appends to dst the encoded response b with each chunk's
// section read in at its place.
func inlineSections(dst, b []byte, chunks []fetchChunk) ([]byte, error) {
	at := 0
	for _, ch := range chunks {
		dst = append(dst, b[at:ch.at]...)
		at = ch.at
		var err error
		if dst, err = ch.sec.AppendTo(dst); err != nil {
			return dst, err
		}
	}
	return append(dst, b[at:]...), nil
}

// sendSection sends a file section to a connection: with sendfile on a TCP
// connection (no copy into user space; the file's position is untouched, so
// readers can share the file), by reading and writing otherwise.
func sendSection(nc net.Conn, s wlog.Section) error {
	if s.File == nil {
		// A cold segment (or a log on a non-OS FS): written from the
		// cold cache's chunks, or through a pooled buffer.
		_, err := s.WriteTo(nc)
		return err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_, err := io.Copy(nc, io.NewSectionReader(s.File, s.Pos, s.Len))
		return err
	}
	out, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	in, err := s.File.SyscallConn()
	if err != nil {
		return err
	}
	var sent int64
	var serr error
	cerr := in.Control(func(infd uintptr) {
		werr := out.Write(func(outfd uintptr) bool {
			for sent < s.Len {
				off := s.Pos + sent
				n, err := syscall.Sendfile(int(outfd), int(infd), &off, int(min(s.Len-sent, 1<<30)))
				if n > 0 {
					sent += int64(n)
				}
				switch {
				case err == syscall.EAGAIN:
					return false // wait until the socket can take more
				case err == syscall.EINTR:
					continue
				case err != nil:
					serr = err
					return true
				case n == 0:
					serr = io.ErrUnexpectedEOF // the file is shorter than the section
					return true
				}
			}
			return true
		})
		if serr == nil {
			serr = werr
		}
	})
	if cerr != nil {
		return cerr
	}
	if serr != nil && !errors.Is(serr, os.ErrDeadlineExceeded) {
		return serr
	}
	return serr
}
