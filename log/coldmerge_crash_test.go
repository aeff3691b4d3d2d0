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

// crashMergeEnv makes the crash child append small batches to a log with
// a Tier (crashTierEnv), rolling every few appends, so that small
// segments go cold and merge all the time and kills land during merges.
const crashMergeEnv = "WEIR_LOG_CRASH_MERGE"

func crashMergeOptions() Options {
	o := crashOptions(true)
	o.SegmentBytes, o.IndexIntervalBytes, o.LocalRetentionBytes, o.TierMergeBytes = 64<<10, 512, 4096, 16<<10
	return o
}

// crashMergeChild appends one batch at a time with fsync always, rolls
// after one to four, and prints "ack BASE TAG" once each is acknowledged
// and "merged N" whenever the count of merged segments grows.
func crashMergeChild(dir string) {
	l, err := Open(dir, crashMergeOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	go func() {
		var merged int64
		for {
			l.EnforceRetention() // kicks the tier: uploads, local deletions, merges
			if m := l.TierStats().MergedSegments; m > merged {
				merged = m
				fmt.Printf("merged %d\n", m)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 2))
	for seq := 0; ; seq++ {
		tag := fmt.Sprintf("%d.%d", os.Getpid(), seq)
		base, err := l.Append(crashBatch(tag, rng.IntN(400)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "append:", err)
			os.Exit(3)
		}
		fmt.Printf("ack %d %s\n", base, tag)
		if rng.IntN(3) == 0 {
			l.Roll()
		}
	}
}

// crashBatch is a batch of one record whose value is tag, a ';' and pad
// bytes.
func crashBatch(tag string, pad int) []byte {
	var b bytes.Buffer
	b.WriteString(tag)
	b.WriteByte(';')
	b.Write(bytes.Repeat([]byte{'m'}, pad))
	var bb codecs.Builder
	bb.Append(time.Now().UnixMilli(), nil, b.Bytes(), nil)
	out, err := bb.Build()
	if err != nil {
		panic(err) // one small record: cannot fail
	}
	return out
}

// TestCrashKill9DuringColdMerge kills (SIGKILL) a child that appends to a
// log whose small segments go to a Tier (a directory) and merge there,
// at random moments once merges run. After each kill the reopened log
// reads from its start to its end without an error, with every
// acknowledged record at its offset, once. WEIR_CRASH_ITERATIONS
// overrides the default of 20 kills.
func TestCrashKill9DuringColdMerge(t *testing.T) {
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
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	acked := map[int64]string{} // offset: the acknowledged record's tag
	merges, mergedAtReopen := 0, 0
	// Up to three times as many kills are made until one lands while
	// segments merge (a loaded machine may go through the first ones
	// before the child has merged anything).
	iter := 0
	for ; iter < iterations || merges == 0 && iter < 3*iterations; iter++ {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashMergeEnv+"=1")
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
		// merge (or after 1s without one).
		killAfter := time.Duration(rng.IntN(100)) * time.Millisecond
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
				case len(f) == 3 && f[0] == "ack":
					off, _ := strconv.ParseInt(f[1], 10, 64)
					acked[off] = f[2]
				case len(f) == 2 && f[0] == "merged":
					merges++
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
		l, err := Open(dir, crashMergeOptions())
		if err != nil {
			t.Fatalf("iteration %d: reopening after kill -9: %v", iter, err)
		}
		if l.TierStats().ColdSegments > 0 {
			mergedAtReopen++
		}
		seen := map[int64]string{}
		it := l.NewIterator(l.StartOffset())
		last := int64(-1)
		for it.Next() {
			r := it.Record()
			if r.Offset <= last {
				t.Fatalf("iteration %d: offset %d after %d", iter, r.Offset, last)
			}
			last = r.Offset
			seen[r.Offset] = string(r.Value[:bytes.IndexByte(r.Value, ';')])
		}
		if err := it.Err(); err != nil {
			t.Fatalf("iteration %d: reading the log after kill -9: %v", iter, err)
		}
		for off, tag := range acked {
			if seen[off] != tag {
				t.Fatalf("iteration %d: offset %d reads %q, acknowledged as %q", iter, off, seen[off], tag)
			}
		}
		l.Close()
	}
	t.Logf("%d kills, %d acknowledged records checked, %d merge reports, %d reopens with cold segments", iter, len(acked), merges, mergedAtReopen)
	if merges == 0 {
		t.Fatal("no kill landed while segments merged")
	}
}
