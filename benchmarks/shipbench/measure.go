package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// result is one measured run of one side.
type result struct {
	Name      string        `json:"name"`
	Docs      int64         `json:"docs"`  // documents or lines delivered
	Bytes     int64         `json:"bytes"` // input bytes they came from
	Start     time.Time     `json:"start"`
	Wall      time.Duration `json:"wall"`
	Visible   time.Duration `json:"visible,omitempty"` // from Start until the server found every document
	CPU       time.Duration `json:"cpu"`               // user+system of the side's process(es)
	ServerCPU time.Duration `json:"server_cpu"`        // of the search server, from the start until it found every document
	RSS       int64         `json:"rss"`               // peak resident set of the side's process, bytes
	Note      string        `json:"note,omitempty"`
}

// usage is a process's CPU time and peak RSS so far.
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss * 1024
}

// meter measures a child side from inside: wall and CPU from start to
// stop, peak RSS at stop.
type meter struct {
	start time.Time
	cpu0  time.Duration
}

func startMeter() meter {
	cpu, _ := usage()
	return meter{start: time.Now(), cpu0: cpu}
}

func (m meter) stop(name string, docs, bytes int64) result {
	wall := time.Since(m.start)
	cpu, rss := usage()
	return result{Name: name, Docs: docs, Bytes: bytes, Start: m.start, Wall: wall, CPU: cpu - m.cpu0, RSS: rss}
}

// report is how a child hands its result to the parent: one JSON line
// on standard output.
func report(r result) {
	check(json.NewEncoder(os.Stdout).Encode(r))
}

// runChild runs this program as `shipbench child <args>` and returns the
// result it reports.
func runChild(args ...string) result {
	self, err := os.Executable()
	check(err)
	cmd := exec.Command(self, append([]string{"child"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err = cmd.Run()
	if err != nil {
		check(fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out.Bytes()))
	}
	var r result
	check(json.Unmarshal(out.Bytes(), &r))
	return r
}

// runShell runs a shell command and measures it from outside: wall time,
// and the CPU time and peak RSS that wait4 reports (the shell and the
// children it waited for).
func runShell(name, script string, docs, bytes int64) result {
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	check(cmd.Run())
	wall := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return result{Name: name, Docs: docs, Bytes: bytes, Start: start, Wall: wall, CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), RSS: ru.Maxrss * 1024}
}

// procCPU is the user+system CPU time of process pid so far, from
// /proc/<pid>/stat (0 where there is no /proc).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from its closing parenthesis: utime and stime are fields
	// 14 and 15, in clock ticks.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ, 100 on every Linux port that matters
	return time.Duration(ut+st) * time.Second / ticks
}
