package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/weirhub/weir/internal/objstore"
	wlog "github.com/weirhub/weir/log"
)

// inspectColdStore lists, read-only, every partition manifest in a cold
// store and the segments it names.
func inspectColdStore(w io.Writer, url string) error {
	s, err := objstore.OpenURL(url)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, err := s.List(ctx, "")
	if err != nil {
		return fmt.Errorf("listing %s: %w", url, err)
	}
	n := 0
	for _, o := range objs {
		if path.Base(o.Key) != wlog.ManifestName {
			continue
		}
		m, err := readStoreManifest(ctx, s, o.Key)
		if err != nil {
			return err
		}
		if n > 0 {
			fmt.Fprintln(w)
		}
		n++
		prefix := strings.TrimSuffix(o.Key, wlog.ManifestName)
		var bytes int64
		for _, sg := range m.Segments {
			bytes += sg.Bytes
		}
		if len(m.Segments) == 0 {
			fmt.Fprintf(w, "%s: remote: 0 segments\n", prefix)
			continue
		}
		fmt.Fprintf(w, "%s: remote: %d segments, offsets %d..%d, %s; manifest generation %d by %s\n", prefix, len(m.Segments),
			max(m.Segments[0].Base, m.Start), m.Segments[len(m.Segments)-1].Next-1, humanize.IBytes(uint64(bytes)), m.Generation, m.Writer)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEGMENT\tOFFSETS\tSIZE\tMAX TIMESTAMP\tINDEX")
		for _, sg := range m.Segments {
			fmt.Fprintf(tw, "%s\t%d..%d\t%s\t%s\t%s\n", sg.Object(".log"), sg.Base, sg.Next-1,
				humanize.IBytes(uint64(sg.Bytes)), fmtTS(sg.MaxTimestamp), humanize.IBytes(uint64(sg.IndexBytes)))
		}
		tw.Flush()
	}
	if n == 0 {
		return fmt.Errorf("no partition manifests (%s) in %s", wlog.ManifestName, url)
	}
	return nil
}

// readStoreManifest reads and decodes the partition manifest at key.
func readStoreManifest(ctx context.Context, s objstore.Store, key string) (wlog.Manifest, error) {
	var m wlog.Manifest
	rc, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		return m, fmt.Errorf("reading %s: %w", key, err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return m, fmt.Errorf("reading %s: %w", key, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", key, err)
	}
	return m, nil
}

// remoteSummary is the line weir log inspect DIR --cold-store prints for
// the part of a partition in the store: its manifest's segments, offsets
// and bytes.
func remoteSummary(m wlog.Manifest) string {
	if len(m.Segments) == 0 {
		return "remote: 0 segments"
	}
	var bytes int64
	for _, sg := range m.Segments {
		bytes += sg.Bytes
	}
	return fmt.Sprintf("remote: %d segments, offsets %d..%d, %s", len(m.Segments),
		m.Segments[0].Base, m.Segments[len(m.Segments)-1].Next-1, humanize.IBytes(uint64(bytes)))
}
