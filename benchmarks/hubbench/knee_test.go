package main

import (
	"strings"
	"testing"
	"time"
)

func TestKneeReport(t *testing.T) {
	cfg := &config{kneeStart: 10000, kneeFactor: 1.5, kneeStep: time.Second, kneeP99: 5 * time.Millisecond}
	ms := time.Millisecond
	results := []result{
		{system: "weir", produce: newRate(400000, 400e6, time.Second),
			knee: []latency{{rate: 10000, achieved: 10000, p99: 2 * ms}, {rate: 15000, achieved: 15000, p99: 3 * ms}, {rate: 22500, achieved: 22500, p99: 9 * ms}}},
		{system: "NATS JetStream", produce: newRate(50000, 50e6, time.Second),
			knee: []latency{{rate: 10000, achieved: 10000, p99: 4 * ms}, {rate: 15000, achieved: 15000, p99: 6 * ms}}},
	}
	rep := kneeReport(cfg, results)
	for _, want := range []string{"weir: knee 15000 records/s, 4% of its maximum", "NATS JetStream: knee 10000 records/s, 20% of its maximum", "| 22500 | 0.00 | 9.00 | - | - |"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	var got []string
	kneeTargets(cfg, &results[0], &results[1], func(what, g string, measured, met bool) { got = append(got, what+": "+g) })
	if len(got) != 2 || !strings.Contains(got[1], "1 rates compared") {
		t.Errorf("targets %q", got)
	}
}
