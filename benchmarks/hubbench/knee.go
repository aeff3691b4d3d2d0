package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
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

// stepFunc runs one latency step of the knee search at a fixed rate.
type stepFunc func(ctx context.Context, rate float64) (latency, error)

// fetchMinBytes is the Kafka consumer's fetch.min.bytes in every latency
// run, and -fetch-max-wait its fetch.max.wait: Kafka's defaults (1 and
// 500 ms), which a latency-sensitive consumer keeps: the broker answers a
// fetch as soon as one byte is there, and a broker that missed a wake-up
// shows as a tail of the max wait, not hidden by a short poll. The
// producer runs with linger 0 (-latency-linger) and acks=all, idempotent
// (Kafka's defaults since 3.0).
const fetchMinBytes = 1

// kneeSystem is one system in the knee search.
type kneeSystem struct {
	res  *result
	step stepFunc
	over int  // rates run whose p99 exceeded -knee-p99
	done bool // over exceeded -knee-beyond
}

// runKnee steps every system through the same ladder of rates together:
// at each rate each system runs -knee-repeat steps, the systems taking
// turns (and the first turn alternating from rate to rate), so that all
// see the same background load on a shared machine. A system stops
// -knee-beyond rates after the first at which its median p99 exceeds
// -knee-p99 (so that the table shows latencies at equal rates past the
// knee too). Each system's steps are kept in its result, one merged
// latency per rate. Then refineKnee narrows each system's knee between
// the ladder's rates.
func runKnee(ctx context.Context, cfg *config, systems []*kneeSystem) error {
	top := 0.0
	for _, s := range systems {
		top = max(top, s.res.produce.recordsPerSec())
	}
	for i, rate := range kneeRates(cfg, top) {
		rates := make([]float64, len(systems))
		for k, s := range systems {
			if !s.done && rate <= s.res.produce.recordsPerSec() {
				rates[k] = rate
			}
		}
		merged, err := kneeRound(ctx, cfg, systems, rates, i)
		if err != nil {
			return err
		}
		going := false
		for k, s := range systems {
			if merged[k] == nil {
				continue
			}
			if merged[k].p99 > cfg.kneeP99 {
				s.over++
				s.done = s.over > cfg.kneeBeyond
			}
			going = going || !s.done
		}
		if !going {
			break
		}
	}
	return refineKnee(ctx, cfg, systems)
}

// kneeRound runs -knee-repeat steps of each system k with rates[k] > 0 at
// that rate, the systems taking turns (turn picks who goes first), and
// appends each one's merged latency to its result's knee steps, which it
// also returns (nil for a system that did not run).
func kneeRound(ctx context.Context, cfg *config, systems []*kneeSystem, rates []float64, turn int) ([]*latency, error) {
	runs := make([][]latency, len(systems))
	for rep := range cfg.kneeRepeat {
		for j := range systems {
			k := (j + turn + rep) % len(systems) // take turns
			s := systems[k]
			if rates[k] <= 0 {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, cfg.kneeStep+cfg.timeout)
			l, err := s.step(sctx, rates[k])
			cancel()
			if err != nil {
				return nil, fmt.Errorf("%s latency knee at %.0f records/s: %w", s.res.system, rates[k], err)
			}
			fmt.Printf("  knee step, %s: %s\n", s.res.system, l)
			runs[k] = append(runs[k], l)
		}
	}
	merged := make([]*latency, len(systems))
	for k, s := range systems {
		if len(runs[k]) == 0 {
			continue
		}
		s.res.knee = append(s.res.knee, mergeSteps(runs[k]))
		merged[k] = &s.res.knee[len(s.res.knee)-1]
	}
	return merged, nil
}

// refineKnee narrows each system's knee between the ladder's rates: the
// ladder's factor (x1.5) leaves the true knee anywhere in a third of the
// knee's rate, so -knee-refine times the system runs the geometric middle
// of the highest rate within -knee-p99 and the lowest failing rate above
// it, -knee-repeat steps as on the ladder, the systems taking turns.
// A system whose steps have no such pair (none passed, or none above
// failed) is not refined.
func refineKnee(ctx context.Context, cfg *config, systems []*kneeSystem) error {
	for it := range cfg.kneeRefine {
		rates := make([]float64, len(systems))
		any := false
		for k, s := range systems {
			lo, hi := kneeBracket(cfg, s.res.knee)
			if mid := math.Round(math.Sqrt(lo * hi)); lo > 0 && mid > lo && mid < hi {
				rates[k], any = mid, true
			}
		}
		if !any {
			return nil
		}
		fmt.Printf("== latency knee, refining between the ladder's rates (%d of %d)\n", it+1, cfg.kneeRefine)
		if _, err := kneeRound(ctx, cfg, systems, rates, it); err != nil {
			return err
		}
	}
	return nil
}

// kneeBracket returns the knee of steps (the highest rate within
// -knee-p99) and the lowest rate above it that was run and not within,
// or 0 for either that does not exist.
func kneeBracket(cfg *config, steps []latency) (lo, hi float64) {
	lo = knee(cfg, steps)
	for _, l := range steps {
		if l.rate > lo && !kneeWithin(cfg, l) && (hi == 0 || l.rate < hi) {
			hi = l.rate
		}
	}
	return lo, hi
}

// mergeSteps merges repeated steps at one rate: the median p50, p99,
// acknowledgement p50 and p99, request round trips, CPU pressure, machine,
// server and client CPU, the largest
// max and client GC pause, the lowest achieved rate, the client's GCs
// summed.
func mergeSteps(runs []latency) latency {
	med := func(f func(latency) float64) float64 {
		v := make([]float64, len(runs))
		for i, l := range runs {
			v[i] = f(l)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m := runs[0]
	m.p50 = time.Duration(med(func(l latency) float64 { return float64(l.p50) }))
	m.p99 = time.Duration(med(func(l latency) float64 { return float64(l.p99) }))
	m.cpuWait = med(func(l latency) float64 { return l.cpuWait })
	m.ackP50 = time.Duration(med(func(l latency) float64 { return float64(l.ackP50) }))
	m.ackP99 = time.Duration(med(func(l latency) float64 { return float64(l.ackP99) }))
	m.client.cpuShare = med(func(l latency) float64 { return l.client.cpuShare })
	m.machineCPUs = med(func(l latency) float64 { return l.machineCPUs })
	m.serverCPUs = med(func(l latency) float64 { return l.serverCPUs })
	m.produceRTT = time.Duration(med(func(l latency) float64 { return float64(l.produceRTT) }))
	m.fetchRTT = time.Duration(med(func(l latency) float64 { return float64(l.fetchRTT) }))
	m.client.schedP99 = time.Duration(med(func(l latency) float64 { return float64(l.client.schedP99) }))
	m.client.gcs, m.client.cpu = 0, 0
	m.p99s = nil
	m.tcp = "" // each step's line tells its own
	m.fetches, m.fetchMeanBytes, m.fetchBusy = 0, 0, 0
	for _, l := range runs {
		m.client.gcs += l.client.gcs
		m.client.cpu += l.client.cpu
		m.client.pauseMax = max(m.client.pauseMax, l.client.pauseMax)
		m.max = max(m.max, l.max)
		if l.produceSlowest.DurationE2E() > m.produceSlowest.DurationE2E() {
			m.produceSlowest = l.produceSlowest
		}
		if l.fetchSlowest.DurationE2E() > m.fetchSlowest.DurationE2E() {
			m.fetchSlowest = l.fetchSlowest
		}
		m.achieved = min(m.achieved, l.achieved)
		m.p99s = append(m.p99s, l.p99)
	}
	m.samples = 0
	for _, l := range runs {
		m.samples += l.samples
	}
	return m
}

// knee is the highest rate whose p99 was within -knee-p99 and that the
// client achieved, or 0.
func knee(cfg *config, steps []latency) float64 {
	best := 0.0
	for _, l := range steps {
		if kneeWithin(cfg, l) {
			best = max(best, l.rate)
		}
	}
	return best
}

// kneeWithin reports whether a step's p99 was within -knee-p99 at the
// rate asked (the client sent at least 95% of it).
func kneeWithin(cfg *config, l latency) bool {
	return l.p99 <= cfg.kneeP99 && l.achieved >= 0.95*l.rate
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
	fmt.Fprintf(&b, "\nLatency knee: the highest fixed rate at which p99 produce->consume stays <= %s, stepping from %.0f records/s by x%.2f, %s per step, "+
		"then narrowed %d time(s) between a system's highest rate within and the next failing one (their geometric middle).\n",
		cfg.kneeP99, cfg.kneeStart, cfg.kneeFactor, cfg.kneeStep, cfg.kneeRefine)
	fmt.Fprintf(&b, "At each rate every system ran %d step(s), the systems taking turns so they share the machine's background load; "+
		"p50 and p99 are the medians over the steps, the p99 of each step in brackets. "+
		"Kafka clients as a latency-sensitive user sets them: producer linger %s, acks=all (idempotent); consumer fetch.min.bytes %d, fetch.max.wait %s. "+
		"NATS: PublishAsync, ordered pull consumer. "+
		"Acked p99: from handing a record to the producer to its acknowledgement (Kafka only: the produce half of the trip). "+
		"Client CPUs: CPU time of the benchmark process (producer, consumer and probe) over the step's length; server CPUs: the server process's (weir's with -broker-pid); "+
		"other CPUs: what the machine spent besides (/proc/stat): above a tenth or so, other work shared the two CPUs and the step measures it too. "+
		"CPU wait: share of the step during which some task on the machine was runnable but waited for a CPU (/proc/pressure/cpu); "+
		"above a few percent the tail measures the machine's other work as much as the system.\n\n",
		cfg.kneeRepeat, cfg.latencyLinger, fetchMinBytes, cfg.fetchMaxWait)
	first := &results[0]
	for _, r := range with {
		k := knee(cfg, r.knee)
		fmt.Fprintf(&b, "- %s: knee %.0f records/s, %.0f%% of its maximum produce rate (%.0f records/s)",
			r.system, k, 100*k/r.produce.recordsPerSec(), r.produce.recordsPerSec())
		if r != first && first.produce.recordsPerSec() > 0 {
			fmt.Fprintf(&b, ", %.0f%% of %s's (%.0f records/s)", 100*k/first.produce.recordsPerSec(), first.system, first.produce.recordsPerSec())
		}
		b.WriteString("\n")
	}
	if f := find(results, floorName); f != nil && len(f.knee) > 0 && first.produce.recordsPerSec() > 0 {
		share := knee(cfg, f.knee) / first.produce.recordsPerSec()
		verdict := "within reach of a broker"
		if share < 0.4 {
			verdict = "beyond even the floor"
		}
		fmt.Fprintf(&b, "- %s, the protocol's least, reached %.0f%% of %s's maximum produce rate: a knee of 40%% of it is %s with these clients on this machine.\n",
			f.system, 100*share, first.system, verdict)
	}
	fmt.Fprintf(&b, "\n| records/s |")
	for _, r := range with {
		fmt.Fprintf(&b, " %s p50 ms | %s p99 ms | acked p99 ms | client CPUs | server CPUs | other CPUs | CPU wait %% |", r.system, r.system)
	}
	fmt.Fprintf(&b, "\n|---:|%s\n", strings.Repeat("---:|---:|---:|---:|---:|---:|---:|", len(with)))
	top := 0.0
	for _, r := range with {
		top = max(top, r.produce.recordsPerSec())
	}
	for _, rate := range kneeRates(cfg, top) {
		cells, any := "", false
		for _, r := range with {
			c := " - | - | - | - | - | - | - |"
			for _, l := range r.knee {
				if l.rate == rate {
					ack := "-"
					if l.ackP99 > 0 {
						ack = fmt.Sprintf("%.2f", float64(l.ackP99)/1e6)
					}
					c, any = fmt.Sprintf(" %.2f | %.2f%s | %s | %.2f | %s | %s | %.0f |", float64(l.p50)/1e6, float64(l.p99)/1e6, eachP99(l), ack, l.client.cpuShare,
						cpus(l.serverCPUs), cpus(l.otherCPUs()), 100*l.cpuWait), true
				}
			}
			cells += c
		}
		if !any {
			break
		}
		fmt.Fprintf(&b, "| %.0f |%s\n", rate, cells)
	}
	ladder := kneeRates(cfg, top)
	for _, r := range with {
		for _, l := range r.knee {
			if !slices.Contains(ladder, l.rate) {
				fmt.Fprintf(&b, "\n- %s between the ladder's rates, at %.0f records/s: p50 %.2f ms, p99 %.2f ms%s, acked p99 %.2f ms, client CPUs %.2f, server CPUs %s, other CPUs %s, CPU wait %.0f%%",
					r.system, l.rate, float64(l.p50)/1e6, float64(l.p99)/1e6, eachP99(l), float64(l.ackP99)/1e6, l.client.cpuShare, cpus(l.serverCPUs), cpus(l.otherCPUs()), 100*l.cpuWait)
			}
		}
	}
	b.WriteString("\n")
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

// eachP99 lists the p99 of each step merged into l, when there were several.
func eachP99(l latency) string {
	if len(l.p99s) < 2 {
		return ""
	}
	ms := make([]string, len(l.p99s))
	for i, d := range l.p99s {
		ms[i] = fmt.Sprintf("%.1f", float64(d)/1e6)
	}
	return " (" + strings.Join(ms, ", ") + ")"
}

// cpus renders a CPU count, or "-" when not known (negative).
func cpus(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}
