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
	"syscall"
	"testing"
	"time"

	"github.com/weirhub/weir/codecs"
)

// crashCompactEnv makes the crash child write keyed records to a compacted
// log with a Tier (crashTierEnv) and compact it all the time, so that
// kills land while cold segments are rewritten; its value is the
// iteration, which orders the values of the runs.
const crashCompactEnv = "WEIR_LOG_CRASH_COMPACT"

// crashCompactKeys is how many keys the compaction crash child writes.
const crashCompactKeys = 40

func crashCompactOptions() Options {
	o := crashOptions(true)
	o.Compact, o.MinCleanableRatio, o.CompactMapBytes = true, -1, 4096
	// Small segments and local retention: with 40 keys the compacted log
	// is small, and segments must go cold to be rewritten there.
	o.SegmentBytes, o.IndexIntervalBytes, o.LocalRetentionBytes = 4096, 512, 4096
	return o
}

// crashCompactChild appends one keyed record at a time with fsync always
// and prints "put KEY VALUE" once it is acknowledged, while another
// goroutine compacts and prints "cold N" when a run rewrote N segments in
// the tier.
func crashCompactChild(dir string) {
	l, err := Open(dir, crashCompactOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	iter := os.Getenv(crashCompactEnv)
	go func() {
		for {
			l.EnforceRetention() // kicks the tier: uploads and local deletions
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		for {
			st, err := l.Compact()
			if err != nil {
				fmt.Fprintln(os.Stderr, "compact:", err)
			}
			if st.ColdSegments > 0 {
				fmt.Printf("cold %d\n", st.ColdSegments)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	var b codecs.Builder
	for seq := 0; ; seq++ {
		key := fmt.Sprintf("k%02d", rng.IntN(crashCompactKeys))
		v := fmt.Sprintf("%06s.%09d", iter, seq)
		b.Reset()
		b.Append(time.Now().UnixMilli(), []byte(key), append([]byte(v+";"), bytes.Repeat([]byte{'x'}, rng.IntN(400))...), nil)
		batch, _ := b.Build()
		if _, err := l.Append(batch); err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(3)
		}
		fmt.Printf("put %s %s\n", key, v)
	}
}

// TestCrashKill9DuringColdCompaction kills (SIGKILL) a child that writes
// keyed records to a compacted log with a Tier (a directory) and a small
// local retention while it compacts all the time, so that kills land
// during uploads, local deletions and rewrites of cold segments. After
// each kill the reopened log reads from its start to its end without an
// error, and every key has its last acknowledged value or a later one.
// WEIR_CRASH_ITERATIONS overrides the default of 20 kills.
func TestCrashKill9DuringColdCompaction(t *testing.T) {
	iterations := 20
	if s := os.Getenv("WEIR_CRASH_ITERATIONS"); s != "" {
		iterations, _ = strconv.Atoi(s)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv(crashTierEnv, t.TempDir())
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	acked := map[string]string{} // key: its last acknowledged value
	coldRewrites, coldAtReopen := 0, 0
	// A loaded machine (the race detector, packages tested in parallel)
	// may go through the first kills before the child has a cold segment
	// to rewrite: up to three times as many kills are made until one
	// lands among them.
	iter := 0
	for ; iter < iterations || (coldRewrites == 0 || coldAtReopen == 0) && iter < 3*iterations; iter++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashCompactEnv+"="+strconv.Itoa(iter+1))
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
		// The kill comes at a random moment after the child's first
		// rewrite of a cold segment (or after 1s without one), so that
		// kills land while rewrites go on.
		killAfter := time.Duration(rng.IntN(150)) * time.Millisecond
		killTimer := time.After(time.Second)
		armed := false
		deadline := time.After(20 * time.Second)
	collect:
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					break collect
				}
				f := strings.Fields(line)
				switch {
				case len(f) == 3 && f[0] == "put" && len(f[2]) == 16:
					acked[f[1]] = f[2]
				case len(f) == 2 && f[0] == "cold":
					n, _ := strconv.Atoi(f[1])
					coldRewrites += n
					if !armed {
						armed, killTimer = true, time.After(killAfter)
					}
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
		if strings.Contains(stderr.String(), "compact:") {
			t.Fatalf("iteration %d: compaction failed in the child: %s", iter, stderr.String())
		}
		l, err := Open(dir, crashCompactOptions())
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill -9: %v", iter, err)
		}
		if l.TierStats().ColdSegments > 0 {
			coldAtReopen++
		}
		got := map[string]string{}
		it := l.NewIterator(l.StartOffset())
		last := int64(-1)
		for it.Next() {
			r := it.Record()
			if r.Offset <= last {
				t.Fatalf("iteration %d: offset %d after %d", iter, r.Offset, last)
			}
			last = r.Offset
			got[string(r.Key)] = string(r.Value[:bytes.IndexByte(r.Value, ';')])
		}
		if err := it.Err(); err != nil {
			t.Fatalf("iteration %d: reading the log after kill -9: %v", iter, err)
		}
		for k, v := range acked {
			if got[k] < v {
				t.Fatalf("iteration %d: key %s reads %q, its last acknowledged value is %q", iter, k, got[k], v)
			}
			acked[k] = got[k] // a later value that was written before the kill stands
		}
		l.Close()
	}
	t.Logf("%d kills, %d keys checked, %d cold segments rewritten, %d reopens with cold segments", iter, len(acked), coldRewrites, coldAtReopen)
	if coldRewrites == 0 || coldAtReopen == 0 {
		t.Fatalf("no kill landed among cold segments being compacted: %d rewrites, %d reopens with cold segments", coldRewrites, coldAtReopen)
	}
}
