package sources

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weirhub/weir/connectors"
)

// TestFileReadOnce: mode read_once reads every matched file to its end,
// the last line without its line break too, then ends the source; files
// appearing later are not read, and a second run reads only what was
// added (issue 10 item 14).
func TestFileReadOnce(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	fileWriteLines(t, a, "a", 0, 2500)
	fileAppend(t, b, "b-00000\nb-00001 no break")
	readAll := func() []string {
		s := openFileSource(t, state, "mode: read_once\nbatch_size: 1000\npartial_timeout: 1h\n", filepath.Join(dir, "*.log"))
		defer fileClose(t, s)
		var got []string
		deadline := time.Now().Add(10 * time.Second)
		for {
			ctx, cancel := context.WithDeadline(context.Background(), deadline)
			msgs, ack, err := s.Read(ctx)
			cancel()
			if errors.Is(err, connectors.ErrEndOfInput) {
				if len(msgs) > 0 {
					t.Fatalf("ErrEndOfInput with %d records", len(msgs))
				}
				return got
			}
			if err != nil {
				t.Fatalf("Read: %v (read_once did not end after %d records)", err, len(got))
			}
			got = append(got, fileValues(fileRecs(t, msgs))...)
			if err := ack(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if len(got) == 2502 {
				// A file appearing now is not read in this run.
				fileWriteLines(t, filepath.Join(dir, "c.log"), "c", 0, 3)
			}
		}
	}
	got := readAll()
	want := append(fileLineNames("a", 0, 2500), "b-00000", "b-00001 no break")
	if !slices.Equal(fileSorted(got), fileSorted(want)) {
		t.Fatalf("read_once read %d records, want %d", len(got), len(want))
	}
	fileWriteLines(t, a, "a", 2500, 2502)
	got = readAll()
	want = append(fileLineNames("a", 2500, 2502), fileLineNames("c", 0, 3)...)
	if !slices.Equal(fileSorted(got), fileSorted(want)) {
		t.Fatalf("second read_once run read %v, want %v", got, want)
	}
}
