package objstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// S3Options configure an S3 store. The zero value of each field is its
// default.
type S3Options struct {
	// Endpoint is host:port of the server, without a scheme.
	Endpoint string
	// Bucket holds the objects; it must exist.
	Bucket string
	// Prefix is put before every key ("lake/" keeps keys under lake/);
	// default none.
	Prefix string
	// AccessKey and SecretKey sign requests; empty: Creds, or anonymous.
	AccessKey, SecretKey string
	// Creds sign requests when AccessKey is empty (OpenURL sets
	// AWSCredentials); nil: anonymous.
	Creds *credentials.Credentials
	// Region of the bucket; default us-east-1.
	Region string
	// Insecure talks plain HTTP instead of HTTPS. Default false.
	Insecure bool
	// Transport carries the requests; nil: minio-go's default.
	Transport http.RoundTripper
	// SignPayload, over plain HTTP, signs a PUT's body (a SHA-256 of
	// every byte, STREAMING-AWS4-HMAC-SHA256-PAYLOAD) instead of sending
	// it unsigned with a CRC32C trailer: for a server that does not take
	// trailing checksums. Over HTTPS bodies go unsigned either way, as is
	// standard (TLS keeps them whole).
	SignPayload bool
}

// S3 is a Store in a bucket of an S3-compatible server, through
// github.com/minio/minio-go/v7. A Put is atomic by the S3 protocol (an
// object appears whole when its upload completes); PutIfAbsent sends
// If-None-Match: *, which the server must honour (AWS S3, MinIO and
// versitygw do) and which holds for a single PUT: an object of up to
// 16MiB (larger ones go up in parts, and the condition is not checked).
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string
	crc    bool         // PUT bodies go unsigned with a CRC32C trailer
	hc     *http.Client // with crc: PUTs of file sections (putSection)
	region string
}

var _ Store = (*S3)(nil)

// NewS3 returns the store of opts; it does not contact the server.
func NewS3(opts S3Options) (*S3, error) {
	if opts.Endpoint == "" || opts.Bucket == "" {
		return nil, errors.New("objstore: s3 needs an endpoint and a bucket")
	}
	var creds *credentials.Credentials
	switch {
	case opts.AccessKey != "":
		creds = credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, "")
	case opts.Creds != nil:
		creds = opts.Creds
	default:
		creds = credentials.New(&credentials.Static{})
	}
	region := opts.Region
	if region == "" {
		region = "us-east-1"
	}
	// TrailingHeaders, over plain HTTP: a PUT's body goes unsigned with
	// its CRC32C in a trailer (put), which the server checks. Not over
	// HTTPS, where minio-go sends bodies unsigned without it (servers
	// that take no trailers keep working there).
	crc := opts.Insecure && !opts.SignPayload
	c, err := minio.New(opts.Endpoint, &minio.Options{Creds: creds, Secure: !opts.Insecure, Region: region,
		BucketLookup: minio.BucketLookupPath, TrailingHeaders: crc, Transport: opts.Transport})
	if err != nil {
		return nil, fmt.Errorf("objstore: s3: %w", err)
	}
	s := &S3{c: c, bucket: opts.Bucket, prefix: opts.Prefix, crc: crc, region: region}
	if crc {
		tr := opts.Transport
		if tr == nil {
			t, err := minio.DefaultTransport(false)
			if err != nil {
				return nil, fmt.Errorf("objstore: s3: %w", err)
			}
			// Connections that send a section's body from its file
			// with sendfile, at its pace (sectionConn).
			dial := t.DialContext
			if dial == nil {
				dial = (&net.Dialer{}).DialContext
			}
			t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := dial(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				return sectionConn{c}, nil
			}
			tr = t
		}
		s.hc = &http.Client{Transport: tr}
	}
	return s, nil
}

func (s *S3) name(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// put stores r as key with opts; a failed precondition is ErrExists with
// absent (If-None-Match), else ErrPrecondition.
func (s *S3) put(ctx context.Context, key string, r io.Reader, opts minio.PutObjectOptions, absent bool) (string, error) {
	name, err := s.name(key)
	if err != nil {
		return "", err
	}
	size := int64(-1)
	if f, ok := r.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			if off, err := f.Seek(0, io.SeekCurrent); err == nil {
				size = st.Size() - off
			}
		}
	}
	if l, ok := r.(interface{ Len() int }); ok && size < 0 {
		size = int64(l.Len())
	}
	if size < 0 {
		// Up to one part, read it to know its size: a single PUT, where
		// a condition applies as it does to any PUT.
		const part = 16 << 20
		buf, err := io.ReadAll(io.LimitReader(r, part))
		if err != nil {
			return "", fmt.Errorf("objstore: s3: put %s: %w", key, err)
		}
		if len(buf) < part {
			r, size = bytes.NewReader(buf), int64(len(buf))
		} else {
			r = io.MultiReader(bytes.NewReader(buf), r)
			opts.PartSize = part
		}
	}
	if s.crc {
		// Over plain HTTP the body is not signed: its integrity is the
		// CRC32C minio-go computes as it sends (a trailer of an
		// aws-chunked body, x-amz-checksum-crc32c) and the server
		// checks before it stores the object (AWS S3, MinIO and
		// versitygw do). A signed body (STREAMING-AWS4-HMAC-SHA256-
		// PAYLOAD, minio-go's default over plain HTTP) costs a SHA-256
		// of every byte on both sides: most of an upload's CPU.
		opts.DisableContentSha256 = true
		opts.Checksum = minio.ChecksumCRC32C
	}
	info, err := s.c.PutObject(ctx, s.bucket, name, r, size, opts)
	if err != nil {
		// If-Match of a missing key: 404 NoSuchKey (AWS S3, versitygw).
		if er := minio.ToErrorResponse(err); er.StatusCode == http.StatusPreconditionFailed || er.Code == minio.NoSuchKey {
			if absent {
				return "", fmt.Errorf("%w: %s", ErrExists, key)
			}
			return "", fmt.Errorf("%w: %s", ErrPrecondition, key)
		}
		return "", fmt.Errorf("objstore: s3: put %s: %w", key, err)
	}
	return info.ETag, nil
}

// Put implements Store. A reader with FileSection goes up from its file
// over plain HTTP (see putSection).
func (s *S3) Put(ctx context.Context, key string, r io.Reader) error {
	if fs, ok := r.(FileSection); ok && s.crc {
		if f, off, n := fs.FileSection(); f != nil && n > 0 && n <= maxSectionPut {
			return s.putSection(ctx, key, r, f, off, n)
		}
	}
	_, err := s.put(ctx, key, r, minio.PutObjectOptions{}, false)
	return err
}

// maxSectionPut is the largest file section putSection sends: S3's limit
// of a single PUT.
const maxSectionPut = 5 << 30

// putSection stores n bytes of f from off (the FileSection of r) as key
// in one PUT whose body the kernel sends from the file (sectionConn; a
// section that does not end the file goes through minio-go), at r's pace
// if it is a Pacer,
// with its CRC32C in an x-amz-checksum-crc32c header that the
// server checks before it stores the object, as it checks minio-go's
// trailer. The CRC is r's SectionCRC32C if it has one (a segment's,
// from its batches' CRCs, without reading it), else the file is read
// once in user space for it; minio-go's
// PutObject reads it through its own wrappers and chunked encoding
// (two more copies of every byte, and no sendfile). Signed as minio-go
// signs (SigV4, UNSIGNED-PAYLOAD); a failure is not retried here (the
// caller's next pass is).
func (s *S3) putSection(ctx context.Context, key string, r io.Reader, f *os.File, off, n int64) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	fail := func(err error) error { return fmt.Errorf("objstore: s3: put %s: %w", key, err) }
	src, err := os.Open(f.Name())
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	if a, err1 := f.Stat(); err1 != nil {
		return fail(err1)
	} else if b, err2 := src.Stat(); err2 != nil || !os.SameFile(a, b) || b.Size() != off+n {
		// Another file under the name now, or bytes after the section
		// (net/http reads a body to its end, and sendfile takes a file
		// only with a single limit): send r through minio-go (which
		// keeps its pace).
		_, err := s.put(ctx, key, r, minio.PutObjectOptions{}, false)
		return err
	}
	var sum uint32
	if c, ok := r.(SectionCRC); ok {
		sum, err = c.SectionCRC32C()
	}
	if _, ok := r.(SectionCRC); !ok || err != nil {
		if sum, err = crc32cOf(src, off, n); err != nil {
			return fail(err)
		}
	}
	if _, err := src.Seek(off, io.SeekStart); err != nil {
		return fail(err)
	}
	u := *s.c.EndpointURL()
	u.Path = "/" + s.bucket + "/" + name
	u.RawPath = "/" + s.bucket + "/" + s3utils.EncodePath(name)
	pacer, _ := r.(Pacer)
	// The body is the file, which a sectionConn (the default transport's)
	// sends with sendfile, in paced parts with a Pacer; through another
	// transport's connection, the body's Read paces. ContentLength stops
	// it at the section's end. The transport closes it; so does the
	// defer, harmlessly.
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), &sectionBody{f: src, left: n, pacer: pacer})
	if err != nil {
		return fail(err)
	}
	req.ContentLength = n
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], sum)
	req.Header.Set("x-amz-checksum-crc32c", base64.StdEncoding.EncodeToString(crc[:]))
	req.Header.Set("x-amz-sdk-checksum-algorithm", "CRC32C")
	req.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
	creds, err := s.c.GetCreds()
	if err != nil {
		return fail(err)
	}
	if !creds.SignerType.IsAnonymous() && creds.AccessKeyID != "" {
		req = signer.SignV4(*req, creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken, s.region)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var er minio.ErrorResponse
	if xml.Unmarshal(body, &er) == nil && er.Code != "" {
		return fail(fmt.Errorf("%s (%s): %s", er.Code, resp.Status, er.Message))
	}
	return fail(errors.New(resp.Status))
}

// crc32cOf returns the CRC32C of n bytes of f from off, read with pread
// through a pooled buffer.
func crc32cOf(f *os.File, off, n int64) (uint32, error) {
	bp := crcBufs.Get().(*[]byte)
	defer crcBufs.Put(bp)
	buf := *bp
	var sum uint32
	for n > 0 {
		k, err := f.ReadAt(buf[:min(int64(len(buf)), n)], off)
		sum = crc32.Update(sum, castagnoli, buf[:k])
		off, n = off+int64(k), n-int64(k)
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	return sum, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var crcBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// PutIfAbsent implements Store.
func (s *S3) PutIfAbsent(ctx context.Context, key string, r io.Reader) error {
	var opts minio.PutObjectOptions
	opts.SetMatchETagExcept("*")
	_, err := s.put(ctx, key, r, opts, true)
	return err
}

// PutIfMatch implements Store with If-Match: version, an ETag from
// GetVersion or an earlier PutIfMatch (a single PUT: up to 16MiB, as
// PutIfAbsent).
func (s *S3) PutIfMatch(ctx context.Context, key string, r io.Reader, version string) (string, error) {
	if version == "" {
		return "", fmt.Errorf("%w: %s: no version to match", ErrPrecondition, key)
	}
	var opts minio.PutObjectOptions
	opts.SetMatchETag(version)
	return s.put(ctx, key, r, opts, false)
}

// GetVersion implements Store: the version is the object's ETag.
func (s *S3) GetVersion(ctx context.Context, key string) ([]byte, string, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, "", err
	}
	body, info, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, name, minio.GetObjectOptions{})
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, "", fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return nil, "", fmt.Errorf("objstore: s3: get %s: %w", key, err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, "", fmt.Errorf("objstore: s3: get %s: %w", key, err)
	}
	if info.ETag == "" {
		return nil, "", fmt.Errorf("objstore: s3: get %s: the server sent no ETag", key)
	}
	return b, info.ETag, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	name, err := s.name(key)
	if err != nil {
		return nil, err
	}
	var opts minio.GetObjectOptions
	if n == 0 {
		return io.NopCloser(strings.NewReader("")), nil
	}
	switch {
	case n > 0:
		err = opts.SetRange(off, off+n-1)
	case off > 0:
		err = opts.SetRange(off, 0) // to the end
	}
	if err != nil {
		return nil, fmt.Errorf("objstore: s3: get %s: %w", key, err)
	}
	// One GET per call: Client.GetObject would first send a HEAD.
	body, _, _, err := minio.Core{Client: s.c}.GetObject(ctx, s.bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return nil, fmt.Errorf("objstore: s3: get %s: %w", key, err)
	}
	return body, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("objstore: s3: list %s: %w", prefix, o.Err)
		}
		out = append(out, Object{Key: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	name, err := s.name(key)
	if err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, name, minio.RemoveObjectOptions{}); err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return fmt.Errorf("objstore: s3: delete %s: %w", key, err)
	}
	return nil
}

var _ BatchDeleter = (*S3)(nil)

// DeleteKeys implements BatchDeleter with S3's DeleteObjects: up to 1000
// keys a request.
func (s *S3) DeleteKeys(ctx context.Context, keys []string) error {
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		name, err := s.name(k)
		if err != nil {
			return err
		}
		ch <- minio.ObjectInfo{Key: name}
	}
	close(ch)
	var errs []error
	for e := range s.c.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err != nil && minio.ToErrorResponse(e.Err).Code != minio.NoSuchKey {
			errs = append(errs, fmt.Errorf("objstore: s3: delete %s: %w", strings.TrimPrefix(e.ObjectName, s.prefix), e.Err))
		}
	}
	return errors.Join(errs...)
}
