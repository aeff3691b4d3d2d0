package log

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/weirhub/weir/codecs"
)

// TestSetLimits: limits changed on an open log apply at once: a smaller
// batch limit to the next append, a smaller segment size to the next roll,
// a retention to the next EnforceRetention; invalid limits are refused and
// change nothing. Appends run concurrently (for the race detector).
func TestSetLimits(t *testing.T) {
	l := openLog(t, t.TempDir(), Options{SegmentBytes: 1 << 20, Sync: SyncNever})
	defer l.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			l.Append(batchOf(t, fmt.Sprint("bg", i), 1, 100, 1))
		}
	}()
	if err := l.SetLimits(Limits{SegmentBytes: 10}); err == nil {
		t.Error("SetLimits accepted 10-byte segments")
	}
	if got := l.Limits().SegmentBytes; got != 1<<20 {
		t.Errorf("a refused SetLimits changed SegmentBytes to %d", got)
	}
	if err := l.SetLimits(Limits{SegmentBytes: 4 << 10, MaxBatchBytes: 1000, RetentionBytes: 8 << 10}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := l.Append(batchOf(t, "big", 1, 2000, 1)); !errors.Is(err, codecs.ErrTooLarge) {
		t.Errorf("a 2000-byte batch with MaxBatchBytes 1000: %v", err)
	}
	for i := range 100 {
		if _, err := l.Append(batchOf(t, fmt.Sprint(i), 1, 200, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if segs := len(*l.segs.Load()); segs < 5 {
		t.Errorf("%d segments after 4 KiB segments were set", segs)
	}
	if n, err := l.EnforceRetention(); err != nil || n == 0 || l.Size() > 16<<10 {
		t.Errorf("EnforceRetention with 8 KiB set: deleted %d (%v), size %d", n, err, l.Size())
	}
}
