package main

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// kneeRates is the ladder of rates the knee search steps through, the same
// for every system so that their latencies compare at equal rates: from
// -knee-start, times -knee-factor, up to maxRate (a system's measured
// produce rate; no step asks for more than it can take).
func kneeRates(cfg *config, maxRate float64) []float64 {
	var rates []float64
	for r := cfg.kneeStart; cfg.kneeStart > 0 && r <= maxRate; r *= cfg.kneeFactor {
		rates = append(rates, math.Round(r))
	}
	return rates
}

// findKnee runs latency steps at rising fixed rates until p99 exceeds
// -knee-p99 (that step included) or the ladder ends.
func findKnee(ctx context.Context, cfg *config, maxRate float64, step func(context.Context, float64) (latency, error)) ([]latency, error) {
	var steps []latency
	for _, r := range kneeRates(cfg, maxRate) {
		sctx, cancel := context.WithTimeout(ctx, cfg.kneeStep+cfg.timeout)
		l, err := step(sctx, r)
		cancel()
		if err != nil {
			return steps, fmt.Errorf("at %.0f records/s: %w", r, err)
		}
		fmt.Printf("  knee step: %s\n", l)
		steps = append(steps, l)
		if l.p99 > cfg.kneeP99 {
			break
		}
	}
	return steps, nil
}

// knee is the highest rate whose p99 was within -knee-p99 and that the
// client achieved, or 0.
func knee(cfg *config, steps []latency) float64 {
	best := 0.0
	for _, l := range steps {
		if l.p99 <= cfg.kneeP99 && l.achieved >= 0.95*l.rate {
			best = max(best, l.rate)
		}
	}
	return best
}

// kneeReport renders the knee search: each system's knee against its own
// maximum produce rate, and p99 at every rate of the ladder for every
// system side by side.
func kneeReport(cfg *config, results []result) string {
	var b strings.Builder
	var with []*result
	for i := range results {
		if len(results[i].knee) > 0 {
			with = append(with, &results[i])
		}
	}
	if len(with) == 0 {
		return ""
	}
	fmt.Fprintf(&b, "\nLatency knee: the highest fixed rate at which p99 produce->consume stays <= %s, stepping from %.0f records/s by x%.2f, %s per step:\n\n",
		cfg.kneeP99, cfg.kneeStart, cfg.kneeFactor, cfg.kneeStep)
	for _, r := range with {
		k := knee(cfg, r.knee)
		fmt.Fprintf(&b, "- %s: knee %.0f records/s, %.0f%% of its maximum produce rate (%.0f records/s)\n",
			r.system, k, 100*k/r.produce.recordsPerSec(), r.produce.recordsPerSec())
	}
	fmt.Fprintf(&b, "\n| records/s |")
	for _, r := range with {
		fmt.Fprintf(&b, " %s p50 ms | %s p99 ms |", r.system, r.system)
	}
	fmt.Fprintf(&b, "\n|---:|%s\n", strings.Repeat("---:|---:|", len(with)))
	top := 0.0
	for _, r := range with {
		top = max(top, r.produce.recordsPerSec())
	}
	for _, rate := range kneeRates(cfg, top) {
		cells, any := "", false
		for _, r := range with {
			c := " - | - |"
			for _, l := range r.knee {
				if l.rate == rate {
					c, any = fmt.Sprintf(" %.2f | %.2f |", float64(l.p50)/1e6, float64(l.p99)/1e6), true
				}
			}
			cells += c
		}
		if !any {
			break
		}
		fmt.Fprintf(&b, "| %.0f |%s\n", rate, cells)
	}
	return b.String()
}

// kneeTargets judges the broker under test (w) against the issue's
// targets: its knee at least 40% of its own maximum produce rate, and at
// every rate both it and NATS ran, a p99 no higher than NATS's.
func kneeTargets(cfg *config, w, nats *result, target func(what, got string, measured, met bool)) {
	if cfg.kneeStart <= 0 {
		return
	}
	k := knee(cfg, w.knee)
	share := 0.0
	if w.produce.recordsPerSec() > 0 {
		share = k / w.produce.recordsPerSec()
	}
	target(fmt.Sprintf("latency knee (p99 <= %s) >= 40%% of max produce rate", cfg.kneeP99),
		fmt.Sprintf("%.0f records/s, %.0f%%", k, 100*share), len(w.knee) > 0, share >= 0.4)
	if nats == nil {
		return
	}
	var worse []string
	compared := 0
	for _, l := range w.knee {
		for _, n := range nats.knee {
			if l.rate == n.rate && n.p99 <= cfg.kneeP99 {
				compared++
				if l.p99 > n.p99 {
					worse = append(worse, fmt.Sprintf("%.0f/s: %.2f vs %.2f ms", l.rate, float64(l.p99)/1e6, float64(n.p99)/1e6))
				}
			}
		}
	}
	got := fmt.Sprintf("%d rates compared", compared)
	if len(worse) > 0 {
		got += "; higher at " + strings.Join(worse, ", ")
	}
	target("p99 <= NATS's p99 at every rate both sustain", got, compared > 0, len(worse) == 0)
}
