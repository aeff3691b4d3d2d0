package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirhub/weir/internal/objstore"
	"github.com/weirhub/weir/internal/objstore/s3test"
)

// TestS3 runs the Store contract against a real S3 server (versitygw).
func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("pre/"))
	if err != nil {
		t.Fatal(err)
	}
	objstore.TestStore(t, s)
}

// TestS3DeleteKeys deletes many keys with DeleteObjects, missing ones
// included, and leaves the others.
func TestS3DeleteKeys(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("pre/"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var keys []string
	for i := range 30 {
		k := fmt.Sprintf("d/%02d", i)
		if err := s.Put(ctx, k, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	if err := objstore.DeleteKeys(ctx, s, append(keys[:20:20], "d/missing")); err != nil {
		t.Fatal(err)
	}
	objs, err := s.List(ctx, "d/")
	if err != nil || len(objs) != 10 || objs[0].Key != "d/20" {
		t.Fatalf("after deleting 20 of 30: %v, %v", objs, err)
	}
}

// TestS3AWSFiles: OpenURL signs with the credentials the AWS tools would
// use, from the environment or the shared credentials and config files
// (AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE), checked by
// a real S3 server that rejects wrong signatures.
func TestS3AWSFiles(t *testing.T) {
	srv := s3test.Start(t)
	key, secret := srv.Options("").AccessKey, srv.Options("").SecretKey
	url := "s3://" + srv.Bucket + "/aws?endpoint=http://" + srv.Endpoint
	profile := func(name, k, s string) string {
		return fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n", name, k, s)
	}
	cases := []struct {
		name    string
		env     map[string]string
		files   map[string]string // path under the home directory, or absolute
		openErr bool              // OpenURL fails
		putErr  bool              // the server rejects the signature
		region  string
	}{
		{name: "default profile", files: map[string]string{".aws/credentials": profile("default", key, secret)}},
		{name: "wrong secret", files: map[string]string{".aws/credentials": profile("default", key, "wrong")}, putErr: true},
		{name: "AWS_PROFILE", env: map[string]string{"AWS_PROFILE": "weir"},
			files: map[string]string{".aws/credentials": profile("default", key, "wrong") + profile("weir", key, secret)}},
		{name: "AWS_SHARED_CREDENTIALS_FILE", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": "/creds"},
			files: map[string]string{".aws/credentials": profile("default", key, "wrong"), "/creds": profile("default", key, secret)}},
		{name: "config file profile", env: map[string]string{"AWS_PROFILE": "cfg"},
			files:  map[string]string{".aws/config": "[default]\nregion = eu-west-3\n" + profile("profile cfg", key, secret) + "region = us-east-1\n"},
			region: "us-east-1"},
		{name: "environment over files", env: map[string]string{"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret},
			files: map[string]string{".aws/credentials": profile("default", key, "wrong")}},
		{name: "missing profile", env: map[string]string{"AWS_PROFILE": "nobody"},
			files: map[string]string{".aws/credentials": profile("default", key, secret)}, openErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
				"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_REGION", "AWS_DEFAULT_REGION"} {
				t.Setenv(v, "")
			}
			t.Setenv("HOME", home)
			for k, v := range c.env {
				if strings.HasPrefix(v, "/") {
					v = filepath.Join(home, v)
				}
				t.Setenv(k, v)
			}
			for p, body := range c.files {
				p = filepath.Join(home, p)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if r, err := objstore.AWSRegion(); err != nil || r != c.region {
				t.Errorf("AWSRegion() = %q, %v; want %q", r, err, c.region)
			}
			s, err := objstore.OpenURL(url)
			if c.openErr {
				if err == nil {
					t.Fatal("OpenURL succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(context.Background(), "k", strings.NewReader("v"))
			if c.putErr != (err != nil) {
				t.Fatalf("Put = %v; want an error: %v", err, c.putErr)
			}
		})
	}
}

// BenchmarkS3Get reads a 64 MiB object in ranged GETs of 4 or 8 MiB,
// 1 to 8 at a time, into io.Discard: what the S3 server (versitygw over
// loopback) serves at most, the ceiling of a cold catch-up read (hub
// BenchmarkCatchUp, hub/kafka BenchmarkConsumeCatchUp).
//
//	go test ./internal/objstore -run '^$' -bench S3Get -benchtime 5x
func BenchmarkS3Get(b *testing.B) {
	srv := s3test.Start(b)
	s, err := objstore.NewS3(srv.Options("bench/"))
	if err != nil {
		b.Fatal(err)
	}
	const size = 64 << 20
	ctx := context.Background()
	if err := s.Put(ctx, "obj", bytes.NewReader(make([]byte, size))); err != nil {
		b.Fatal(err)
	}
	for _, chunk := range []int64{4 << 20, 8 << 20} {
		for _, conc := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("chunk=%dMiB/inflight=%d", chunk>>20, conc), func(b *testing.B) {
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					var wg sync.WaitGroup
					slots := make(chan struct{}, conc)
					errs := make(chan error, size/chunk)
					for off := int64(0); off < size; off += chunk {
						slots <- struct{}{}
						wg.Go(func() {
							defer func() { <-slots }()
							rc, err := s.Get(ctx, "obj", off, chunk)
							if err == nil {
								_, err = io.Copy(io.Discard, rc)
								rc.Close()
							}
							errs <- err
						})
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						if err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkS3Put stores a 64 MiB segment as 8 MiB objects, four at a
// time, as cold tier uploads do: what versitygw over loopback takes, and
// what the client (this process) and the server spend on each byte, in
// CPU seconds per GiB (getrusage; /proc for versitygw). Sub-benchmarks:
// reader, a bytes.Reader through minio-go's PutObject (aws-chunked body,
// CRC32C trailer); file-section, the bytes as sections of a file
// (objstore.FileSection, as the cold tier gives a sealed segment: one
// CRC pass and sendfile).
//
//	go test ./internal/objstore -run '^$' -bench S3Put -benchtime 20x
func BenchmarkS3Put(b *testing.B) {
	srv := s3test.Start(b)
	s, err := objstore.NewS3(srv.Options("bench/"))
	if err != nil {
		b.Fatal(err)
	}
	const size, obj = 64 << 20, 8 << 20
	data := make([]byte, obj)
	for i := range data {
		data[i] = byte(i * 7)
	}
	files := make([]*os.File, size/obj)
	for i := range files {
		p := filepath.Join(b.TempDir(), "seg")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
		if files[i], err = os.Open(p); err != nil {
			b.Fatal(err)
		}
		defer files[i].Close()
	}
	ctx := context.Background()
	for _, sub := range []struct {
		name string
		body func(i int) io.Reader
	}{
		{"reader", func(int) io.Reader { return bytes.NewReader(data) }},
		{"file-section", func(i int) io.Reader {
			return section{io.NewSectionReader(files[i], 0, obj), files[i], 0, obj}
		}},
	} {
		b.Run(sub.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			cpu0, gw0 := s3test.ProcessCPU(b), gwCPU(b, srv)
			for b.Loop() {
				var wg sync.WaitGroup
				slots := make(chan struct{}, 4)
				errs := make(chan error, size/obj)
				for i := range size / obj {
					slots <- struct{}{}
					wg.Go(func() {
						defer func() { <-slots }()
						errs <- s.Put(ctx, fmt.Sprintf("seg%d", i), sub.body(i))
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			gib := float64(b.N) * size / (1 << 30)
			b.ReportMetric((s3test.ProcessCPU(b)-cpu0).Seconds()/gib, "client-cpu-s/GiB")
			b.ReportMetric((gwCPU(b, srv)-gw0).Seconds()/gib, "gw-cpu-s/GiB")
		})
	}
}

func gwCPU(b *testing.B, srv *s3test.Server) time.Duration {
	d, err := srv.CPU()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// corrupter is a transport that flips one byte of the body of every PUT
// on the wire, after minio-go has computed the body's checksum: what a
// bad NIC, cable or proxy does to plain HTTP.
type corrupter struct {
	headers http.Header // of the last PUT
	mu      sync.Mutex
	on      bool
}

func (c *corrupter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	on := c.on
	if req.Method == http.MethodPut {
		c.headers = req.Header.Clone()
	}
	c.mu.Unlock()
	if on && req.Method == http.MethodPut && req.Body != nil {
		req.Body = &flipReader{rc: req.Body, at: 1000}
	}
	return http.DefaultTransport.RoundTrip(req)
}

type flipReader struct {
	rc  io.ReadCloser
	off int64
	at  int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.rc.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x20
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.rc.Close() }

// TestS3PutBodyChecked: over plain HTTP a PUT's body goes unsigned (no
// SHA-256 of every byte) with a CRC32C trailer, or signed with
// SignPayload, and either way the server refuses a body that was changed
// on the way; nothing is stored under the key.
func TestS3PutBodyChecked(t *testing.T) {
	srv := s3test.Start(t)
	for _, sign := range []bool{false, true} {
		t.Run(fmt.Sprint("SignPayload=", sign), func(t *testing.T) { testPutBodyChecked(t, srv, sign) })
	}
}

func testPutBodyChecked(t *testing.T, srv *s3test.Server, sign bool) {
	tr := &corrupter{}
	opts := srv.Options(fmt.Sprint("pre", sign, "/"))
	opts.Transport, opts.SignPayload = tr, sign
	s, err := objstore.NewS3(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	body := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	if err := s.Put(ctx, "good", bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	wantSHA, wantTrailer := "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-checksum-crc32c"
	if sign {
		wantSHA, wantTrailer = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", ""
	}
	if got := tr.headers.Get("X-Amz-Content-Sha256"); got != wantSHA {
		t.Errorf("x-amz-content-sha256 %q, want %q", got, wantSHA)
	}
	if got := tr.headers.Get("X-Amz-Trailer"); got != wantTrailer {
		t.Errorf("x-amz-trailer %q, want %q", got, wantTrailer)
	}
	// A file section (a sealed segment's bytes) goes up from its file,
	// over plain HTTP with its CRC32C in a header, and reads back whole.
	if err := s.Put(ctx, "good-middle", fileSection(t, body, "after")); err != nil {
		t.Fatal(err) // not the file's end: through minio-go
	}
	if err := s.Put(ctx, "good-section", fileSection(t, body, "")); err != nil {
		t.Fatal(err)
	}
	if !sign {
		if got := tr.headers.Get("X-Amz-Content-Sha256"); got != "UNSIGNED-PAYLOAD" {
			t.Errorf("file section: x-amz-content-sha256 %q, want UNSIGNED-PAYLOAD", got)
		}
		if got := tr.headers.Get("X-Amz-Checksum-Crc32c"); got == "" {
			t.Errorf("file section: no x-amz-checksum-crc32c header")
		}
	}
	for _, key := range []string{"good-middle", "good-section"} {
		rc, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: %d bytes, %v; want the %d of the section", key, len(got), err, len(body))
		}
	}
	tr.mu.Lock()
	tr.on = true
	tr.mu.Unlock()
	for name, put := range map[string]func(string) error{
		"Put":         func(k string) error { return s.Put(ctx, k, bytes.NewReader(body)) },
		"PutIfAbsent": func(k string) error { return s.PutIfAbsent(ctx, k, bytes.NewReader(body)) },
		"Put in parts": func(k string) error { // over 16 MiB: a multipart upload
			return s.Put(ctx, k, bytes.NewReader(bytes.Repeat(body, 17<<20/len(body))))
		},
		"Put of a file section": func(k string) error { return s.Put(ctx, k, fileSection(t, body, "")) },
		"Put of a file": func(k string) error {
			p := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(p, body, 0o644); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return s.Put(ctx, k, f)
		},
	} {
		key := "bad/" + strings.ReplaceAll(name, " ", "-")
		err := put(key)
		if err == nil {
			t.Errorf("%s: a corrupted body was stored", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if rc, err := s.Get(ctx, key, 0, -1); err == nil {
			rc.Close()
			t.Errorf("%s: %s exists after a refused PUT", name, key)
		}
	}
	tr.mu.Lock()
	tr.on = false
	tr.mu.Unlock()
	rc, err := s.Get(ctx, "good", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("good: %d bytes, %v", len(got), err)
	}
}

// section is a reader of a file section with objstore.FileSection, as
// the cold tier gives a sealed segment.
type section struct {
	*io.SectionReader
	f      *os.File
	off, n int64
}

func (s section) FileSection() (*os.File, int64, int64) { return s.f, s.off, s.n }

// fileSection returns body as a section of a file that has other bytes
// before it, and after.
func fileSection(t *testing.T, body []byte, after string) section {
	p := filepath.Join(t.TempDir(), "seg")
	data := append(append([]byte("before"), body...), after...)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return section{io.NewSectionReader(f, 6, int64(len(body))), f, 6, int64(len(body))}
}

// pacedSection is a section with a Pacer that allows step bytes a call
// and counts the calls and the bytes it allowed.
type pacedSection struct {
	section
	step          int64
	calls         int
	allowed, last int64
}

func (p *pacedSection) Pace(left int64) (int64, error) {
	p.calls++
	n := min(p.step, left)
	p.allowed += n
	p.last = left
	return n, nil
}

// TestS3PutSectionPaced: a PUT of a file section sends it from its file
// (sendfile through the store's sectionConn), and with a Pacer, in the
// parts the Pacer allows, asking before each, exactly the section's
// bytes in all; the object is the section.
func TestS3PutSectionPaced(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("paced/"))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 3<<20+77)
	for i := range body {
		body[i] = byte(i * 31)
	}
	var sent atomic.Int32
	objstore.SetSendHook(func() { sent.Add(1) })
	defer objstore.SetSendHook(nil)
	for _, paced := range []bool{false, true} {
		sent.Store(0)
		sec := fileSection(t, body, "")
		var r io.Reader = sec
		p := &pacedSection{section: sec, step: 1 << 20}
		if paced {
			r = p
		}
		if err := s.Put(context.Background(), fmt.Sprint("obj-", paced), r); err != nil {
			t.Fatal(err)
		}
		if n := sent.Load(); n != 1 {
			t.Errorf("paced=%v: %d sends from the file, want 1 (sendfile)", paced, n)
		}
		if paced {
			n := int64(len(body))
			if want := int((n + p.step - 1) / p.step); p.calls != want || p.allowed != n || p.last != n%p.step {
				t.Errorf("paced: %d Pace calls allowed %d bytes, the last for %d left; want %d calls, %d bytes, %d left", p.calls, p.allowed, p.last, want, n, n%p.step)
			}
		}
		rc, err := s.Get(context.Background(), fmt.Sprint("obj-", paced), 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(stored, body) {
			t.Fatalf("paced=%v: stored %d bytes (%v), want the %d-byte section", paced, len(stored), err, len(body))
		}
	}
}

// crcSection is a section that tells its CRC-32C (objstore.SectionCRC).
type crcSection struct {
	section
	crc   uint32
	calls int
}

func (c *crcSection) SectionCRC32C() (uint32, error) { c.calls++; return c.crc, nil }

// TestS3PutSectionCRC: a file section that tells its CRC-32C goes up
// with it, and the server checks it: the right one stores the section,
// a wrong one fails the PUT and stores nothing.
func TestS3PutSectionCRC(t *testing.T) {
	srv := s3test.Start(t)
	s, err := objstore.NewS3(srv.Options("crc/"))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 1<<20+5)
	for i := range body {
		body[i] = byte(i * 7)
	}
	ctx := context.Background()
	right := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	for _, c := range []struct {
		crc uint32
		ok  bool
	}{{right, true}, {right ^ 1, false}} {
		key := fmt.Sprintf("obj-%08x", c.crc)
		sec := &crcSection{section: fileSection(t, body, ""), crc: c.crc}
		err := s.Put(ctx, key, sec)
		if sec.calls != 1 || (err == nil) != c.ok {
			t.Fatalf("Put with CRC %08x (the body's is %08x): %v after %d SectionCRC32C calls; want ok %v after 1", c.crc, right, err, sec.calls, c.ok)
		}
		rc, err := s.Get(ctx, key, 0, -1)
		if !c.ok {
			if !errors.Is(err, objstore.ErrNotFound) {
				t.Fatalf("a PUT with the wrong CRC stored an object: %v", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		stored, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(stored, body) {
			t.Fatalf("stored %d bytes (%v), want the %d-byte section", len(stored), err, len(body))
		}
	}
}
