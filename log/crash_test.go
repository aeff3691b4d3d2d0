package log

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

const (
	crashChildEnv = "WEIR_LOG_CRASH_CHILD"
	// crashRollEnv makes the child roll a segment every few appends and
	// hold each background seal a while, so that kills land during rolls.
	crashRollEnv = "WEIR_LOG_CRASH_ROLL"
	// crashTierEnv names a directory the child (and the reopen) uses as
	// the log's Tier, with a small local retention, so that kills land
	// during uploads, manifest writes and local deletions.
	crashTierEnv = "WEIR_LOG_CRASH_TIER"
)

// crashOptions are the options of the crash child and of the reopen.
func crashOptions(roll bool) Options {
	if dir := os.Getenv(crashTierEnv); dir != "" {
		return Options{Sync: SyncAlways, SegmentBytes: 16 << 10, IndexIntervalBytes: 1024, Tier: dirTier(dir),
			LocalRetentionBytes: 48 << 10}
	}
	if roll {
		return Options{Sync: SyncAlways, SegmentBytes: 16 << 10, IndexIntervalBytes: 1024}
	}
	return Options{Sync: SyncAlways, SegmentBytes: 128 << 10, IndexIntervalBytes: 1024}
}

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild appends with fsync always from several goroutines until it is
// killed, and prints "ack BASE COUNT TAG" for each acknowledged batch.
func crashChild(dir string) {
	if os.Getenv(crashCompactEnv) != "" {
		crashCompactChild(dir)
		return
	}
	if os.Getenv(crashMergeEnv) != "" {
		crashMergeChild(dir)
		return
	}
	roll := os.Getenv(crashRollEnv) != ""
	if roll {
		sealHook = func(int64) { time.Sleep(3 * time.Millisecond) }
	}
	l, err := Open(dir, crashOptions(roll))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	if l.tier != nil {
		go func() {
			for {
				l.EnforceRetention() // kicks the tier: uploads and local deletions
				time.Sleep(time.Millisecond)
			}
		}()
	}
	run := os.Getpid()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for a := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(run), uint64(a)))
			var b codecs.Builder
			for seq := 0; ; seq++ {
				tag := fmt.Sprintf("p%d.a%d.s%d", run, a, seq)
				n := 1 + rng.IntN(20)
				b.Reset()
				for i := range n {
					v := fmt.Appendf(nil, "%s/%d/%d;", tag, i, n)
					v = append(v, bytes.Repeat([]byte{'x'}, rng.IntN(300))...)
					b.Append(time.Now().UnixMilli(), []byte(tag), v, nil)
				}
				batch, _ := b.Build()
				base, err := l.Append(batch)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString(fmt.Sprintf("ack %d %d %s\n", base, n, tag))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

type ack struct {
	base int64
	n    int
	tag  string
}

// TestCrashKill9 runs a child process that appends with fsync always and
// reports every acknowledged batch, kills it with SIGKILL at a random
// moment, reopens the log and checks that every acknowledged record is
// there and intact and that every batch in the log is whole. It repeats on
// the same directory, so recovery runs on logs that were themselves
// recovered. WEIR_CRASH_ITERATIONS overrides the default of 50 kills.
func TestCrashKill9(t *testing.T) {
	runCrashKill9(t, false)
}

// TestCrashKill9DuringRoll is TestCrashKill9 with a roll every few appends
// and slow background seals: kills land while closed segments are not yet
// synced or indexed, and recovery must scan and cut them like the active
// one. It checks that some kills did land so.
func TestCrashKill9DuringRoll(t *testing.T) {
	runCrashKill9(t, true)
}

// TestCrashKill9DuringUpload is TestCrashKill9DuringRoll with a Tier (a
// directory) and a small local retention: kills land during uploads,
// manifest writes and local deletions, and every acknowledged record is
// read back, from the tier or the disk.
func TestCrashKill9DuringUpload(t *testing.T) {
	tierDir := t.TempDir()
	t.Setenv(crashTierEnv, tierDir)
	cold := runCrashKill9(t, true)
	if cold == 0 {
		t.Fatal("no segment was only in the tier when a kill landed")
	}
}

// runCrashKill9 returns how many times the reopened log had segments only
// in its tier.
func runCrashKill9(t *testing.T, roll bool) (cold int) {
	iterations := 50
	if s := os.Getenv("WEIR_CRASH_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	var acked []ack
	var torn, zeroCuts, unsealedAtKill int
	var unsealed int64
	for iter := range iterations {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		if roll {
			cmd.Env = append(cmd.Env, crashRollEnv+"=1")
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Kill at a random moment after the child is under way.
		killAfter := time.Duration(5+rng.IntN(80)) * time.Millisecond
		var killTimer <-chan time.Time
		deadline := time.After(20 * time.Second)
		var got int
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
				}
				var a ack
				if _, err := fmt.Sscanf(line, "ack %d %d %s", &a.base, &a.n, &a.tag); err != nil {
					continue // a line cut by the kill
				}
				acked = append(acked, a)
				got++
				if killTimer == nil {
					killTimer = time.After(killAfter)
				}
			case <-killTimer:
				cmd.Process.Signal(syscall.SIGKILL)
				killTimer = nil
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				t.Fatalf("iteration %d: child made no progress: %s", iter, stderr.String())
			}
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("iteration %d: child ended with %v, not by SIGKILL: %s", iter, err, stderr.String())
		}
		unsealedAtKill += unsealedSegments(t, dir)
		l, err := Open(dir, crashOptions(roll))
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill -9: %v", iter, err)
		}
		torn += len(l.Recovered())
		for _, ev := range l.Recovered() {
			if ev.SavedTo == "" {
				zeroCuts++ // the window of zeros ahead of the data (see prewrite.go)
			}
		}
		if l.TierStats().ColdSegments > 0 {
			cold++
		}
		unsealed += l.stats.unsealed.Load()
		checkCrashLog(t, l, acked)
		l.Close()
		if iter == iterations-1 {
			t.Logf("%d kills, %d acknowledged batches checked, %d tails cut (%d of zeros only), %d closed segments found unsealed, log of %d records",
				iterations, len(acked), torn, zeroCuts, unsealed, l.HighWatermark())
		}
	}
	if int64(unsealedAtKill) != unsealed {
		t.Fatalf("%d closed segments had no index after the kills, recovery scanned %d", unsealedAtKill, unsealed)
	}
	if zeroCuts == 0 && iterations >= 10 {
		t.Fatalf("no kill in %d left zeros written ahead of the data: the window of fsync always is not tested", iterations)
	}
	if roll && unsealed == 0 {
		t.Fatalf("no kill landed during a roll in %d iterations", iterations)
	}
	if _, err := Verify(dir, nil); err != nil {
		t.Fatalf("Verify after %d crashes: %v", iterations, err)
	}
	return cold
}

// unsealedSegments counts the closed segments of dir without an index.
func unsealedSegments(t *testing.T, dir string) int {
	t.Helper()
	bases, err := listSegments(osFS{}, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range bases[:max(len(bases)-1, 0)] {
		if _, err := os.Stat(segmentName(dir, b, indexSuffix)); err != nil {
			n++
		}
	}
	return n
}

// checkCrashLog reads the whole log: every batch whole (all of its records,
// in order, at consecutive offsets) and every acknowledged batch present at
// its acknowledged offset.
func checkCrashLog(t *testing.T, l *Log, acked []ack) {
	t.Helper()
	type seen struct {
		base int64
		n    int
	}
	batches := map[string]seen{}
	it := l.NewIterator(0)
	var cur string
	var curNext, curN int
	var curBase int64
	for it.Next() {
		r := it.Record()
		v := string(r.Value[:bytes.IndexByte(r.Value, ';')])
		parts := strings.Split(v, "/")
		tag := parts[0]
		i, _ := strconv.Atoi(parts[1])
		n, _ := strconv.Atoi(parts[2])
		if tag != cur {
			if cur != "" && curNext != curN {
				t.Fatalf("batch %s is half visible: %d of %d records", cur, curNext, curN)
			}
			if _, dup := batches[tag]; dup {
				t.Fatalf("batch %s appears twice", tag)
			}
			cur, curNext, curN, curBase = tag, 0, n, r.Offset
		}
		if i != curNext || r.Offset != curBase+int64(i) || string(r.Key) != tag {
			t.Fatalf("batch %s: record %d at offset %d, want record %d at %d", tag, i, r.Offset, curNext, curBase+int64(curNext))
		}
		curNext++
		batches[tag] = seen{curBase, n}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("reading the recovered log: %v", err)
	}
	if cur != "" && curNext != curN {
		t.Fatalf("last batch %s is half visible: %d of %d records", cur, curNext, curN)
	}
	for _, a := range acked {
		s, ok := batches[a.tag]
		if !ok {
			t.Fatalf("acknowledged batch %s (offset %d) is lost", a.tag, a.base)
		}
		if s.base != a.base || s.n != a.n {
			t.Fatalf("acknowledged batch %s at offset %d with %d records; found at %d with %d", a.tag, a.base, a.n, s.base, s.n)
		}
	}
}
