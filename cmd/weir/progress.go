package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/term"
)

// progress prints a one-line progress report for long work: redrawn in
// place on a terminal, a line every few seconds otherwise.
type progress struct {
	w       io.Writer
	label   string
	tty     bool
	start   time.Time
	last    time.Time
	printed bool
}

func newProgress(w io.Writer, label string) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	now := time.Now()
	return &progress{w: w, label: label, tty: tty, start: now, last: now}
}

// update reports done of total bytes (total 0 when unknown), plus extra.
func (p *progress) update(done, total int64, extra ...string) {
	now := time.Now()
	every := 5 * time.Second
	if p.tty {
		every = 200 * time.Millisecond
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.draw(done, total, extra...)
}

func (p *progress) draw(done, total int64, extra ...string) {
	secs := max(time.Since(p.start).Seconds(), 1e-9)
	line := fmt.Sprintf("%s: %s", p.label, humanize.IBytes(uint64(done)))
	if total > 0 {
		line += fmt.Sprintf(" of %s (%3.0f%%)", humanize.IBytes(uint64(total)), 100*float64(done)/float64(total))
	}
	line += fmt.Sprintf(", %s/s", humanize.IBytes(uint64(float64(done)/secs)))
	for _, e := range extra {
		line += ", " + e
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.printed = true
}

// finish ends the progress line; with done >= 0 it first draws the final
// figures.
func (p *progress) finish(done, total int64) {
	if done >= 0 {
		p.draw(done, total)
	}
	if p.tty && p.printed {
		fmt.Fprintln(p.w)
	}
}
