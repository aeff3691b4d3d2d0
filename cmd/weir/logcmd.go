package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/weirhub/weir/internal/objstore"
	wlog "github.com/weirhub/weir/log"
)

func newLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Inspect and verify commit-log directories on disk",
		Long: `Operator tools for the on-disk commit log. DIR is one partition's log directory,
or any directory above such directories (a hub's data directory, a dataset), in
which case every log below it is handled.`,
	}
	var coldStore string
	inspect := &cobra.Command{
		Use: "inspect DIR|COLD-STORE-URL",
		Long: `Lists the segments of the logs under DIR; with a cold store URL
(s3://BUCKET/PREFIX?endpoint=http://HOST:PORT or file:///path, as weir serve --cold-store takes),
lists what the store holds for each partition, read-only, from its manifest. With DIR and
--cold-store, each partition of a hub's data directory (DATA/datasets/NAME/PARTITION) shows its
local part and, from the store's manifest (NAME/PARTITION/), its remote part: segments, offsets
and bytes of each.`,
		Short: "List segments with their offset and time ranges and sizes",
		Example: `  weir log inspect ./data
  weir log inspect ./data --cold-store 's3://weir/hub1?endpoint=http://127.0.0.1:7070'
  weir log inspect 's3://weir/hub1?endpoint=http://127.0.0.1:7070'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectLogsTiered(cmd.OutOrStdout(), args[0], coldStore)
		},
	}
	inspect.Flags().StringVar(&coldStore, "cold-store", "", "also show each partition's remote part from this cold store (the URL weir serve --cold-store was given)")
	verify := &cobra.Command{
		Use:   "verify DIR",
		Short: "CRC-check every batch; exit 1 at the first bad one, naming its file, position and offset",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return verifyLogs(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		},
	}
	cmd.AddCommand(inspect, verify)
	return cmd
}

// logDirs finds the directories under root that hold segment files.
func logDirs(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".log") && len(d.Name()) == 24 {
			dir := filepath.Dir(path)
			if len(dirs) == 0 || dirs[len(dirs)-1] != dir {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no log segments (*.log) found under %s; point at a partition or data directory", root)
	}
	return dirs, nil
}

func fmtTS(ms int64) string {
	if ms == math.MinInt64 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
}

func inspectLogs(w io.Writer, root string) error { return inspectLogsTiered(w, root, "") }

// inspectLogsTiered is inspectLogs; with cold, a cold store URL, each
// partition directory of a hub (…/datasets/NAME/PARTITION) also shows
// what the store's manifest at NAME/PARTITION/ lists.
func inspectLogsTiered(w io.Writer, root, cold string) error {
	if strings.HasPrefix(root, "s3://") || strings.HasPrefix(root, "file://") {
		if cold != "" {
			return fmt.Errorf("--cold-store goes with a data directory; %s is a store already", root)
		}
		return inspectColdStore(w, root)
	}
	dirs, err := logDirs(root)
	if err != nil {
		return err
	}
	var store objstore.Store
	if cold != "" {
		if store, err = objstore.OpenURL(cold); err != nil {
			return fmt.Errorf("--cold-store: %w", err)
		}
	}
	for i, dir := range dirs {
		infos, err := wlog.Inspect(dir)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		var bytes, records int64
		for _, in := range infos {
			bytes += in.Bytes
			records += in.Records
		}
		part := ""
		if store != nil {
			part = "local: "
		}
		fmt.Fprintf(w, "%s: %s%d segments, offsets %d..%d, %d records, %s\n", dir, part, len(infos),
			infos[0].BaseOffset, infos[len(infos)-1].NextOffset-1, records, humanize.IBytes(uint64(bytes)))
		if store != nil {
			if err := inspectRemotePart(w, store, dir); err != nil {
				return err
			}
		}
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEGMENT\tOFFSETS\tBATCHES\tRECORDS\tSIZE\tFIRST TIMESTAMP\tMAX TIMESTAMP\tINDEX\tSTATE")
		for _, in := range infos {
			state := "closed"
			if in.Active {
				state = "active"
			}
			if in.Problem != "" {
				state = "PROBLEM: " + in.Problem
			}
			index := fmt.Sprint(in.IndexEntries)
			if in.IndexEntries < 0 {
				index = "-"
			}
			fmt.Fprintf(tw, "%s\t%d..%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", filepath.Base(in.Path), in.BaseOffset, in.NextOffset-1,
				in.Batches, in.Records, humanize.IBytes(uint64(in.Bytes)), fmtTS(in.FirstTimestamp), fmtTS(in.MaxTimestamp), index, state)
		}
		tw.Flush()
	}
	return nil
}

// inspectRemotePart prints the remote part of the partition in dir, a
// hub's DATA/datasets/NAME/PARTITION, from the manifest at NAME/PARTITION/
// of store.
func inspectRemotePart(w io.Writer, store objstore.Store, dir string) error {
	part, name := filepath.Base(dir), filepath.Base(filepath.Dir(dir))
	if filepath.Base(filepath.Dir(filepath.Dir(dir))) != "datasets" {
		return nil // not a dataset's partition (the group offsets' log): never tiered
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := path.Join(name, part, wlog.ManifestName)
	m, err := readStoreManifest(ctx, store, key)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, objstore.ErrNotFound) {
		fmt.Fprintf(w, "%s: remote: none (no %s in the store)\n", dir, key)
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s: %s\n", dir, remoteSummary(m))
	return nil
}

func verifyLogs(w, progressOut io.Writer, root string) error {
	dirs, err := logDirs(root)
	if err != nil {
		return err
	}
	var total wlog.VerifyReport
	start := time.Now()
	for _, dir := range dirs {
		p := newProgress(progressOut, "verify "+dir)
		rep, err := wlog.Verify(dir, func(done, all int64) { p.update(done, all) })
		p.finish(-1, 0)
		total.Segments += rep.Segments
		total.Batches += rep.Batches
		total.Records += rep.Records
		total.Bytes += rep.Bytes
		var ce *wlog.CorruptError
		if errors.As(err, &ce) {
			fmt.Fprintf(w, "CORRUPT %s\n  file:     %s\n  position: %d\n  offset:   %d\n  reason:   %v\n",
				dir, ce.Path, ce.Position, ce.Offset, ce.Err)
			fmt.Fprintf(w, "Batches before it are intact. Opening the log serves data up to it; a damaged active segment is cut there and the cut bytes kept in a .corrupt file.\n")
			return &exitError{code: 1, err: fmt.Errorf("%s: first bad batch at %s position %d (offset %d)", dir, ce.Path, ce.Position, ce.Offset)}
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "ok %s: %d segments, %d batches, %d records, %s\n", dir, rep.Segments, rep.Batches, rep.Records, humanize.IBytes(uint64(rep.Bytes)))
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(w, "verified %d logs: %d batches, %d records, %s in %.2fs (%s/s)\n", len(dirs), total.Batches, total.Records,
		humanize.IBytes(uint64(total.Bytes)), secs, humanize.IBytes(uint64(float64(total.Bytes)/max(secs, 1e-9))))
	return nil
}
