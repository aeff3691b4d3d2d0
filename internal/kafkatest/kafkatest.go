package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// Broker is a broker under test.
type Broker struct {
	// Addr is the host:port clients bootstrap from.
	Addr string

	// Restart, if set, stops and restarts the broker keeping its data, at
	// the same Addr. The group-commit-resume case then also checks that a
	// group resumes after its commit across a restart. May be nil.
	Restart func(t *testing.T)

	// AutoCreate says whether the broker creates a topic that a client asks
	// metadata for with auto-creation allowed. The create-delete-topics case
	// asserts that producing to a deleted topic recreates it (true) or fails
	// with UNKNOWN_TOPIC_OR_PARTITION (false).
	AutoCreate bool

	// Skip names subtests not to run, mapped to the reason, which the skip
	// logs. A key is a case name ("rebalance") or a case and subtest
	// ("produce-codecs/wire-codec/kcat-gzip"), as t.Run names them. Use it
	// only for a limitation of the broker that was verified, never to hide
	// a failure.
	Skip map[string]string
}

// opTimeout bounds every external process and every wait for a condition.
const opTimeout = 30 * time.Second

// kase is one top-level case of the suite.
type kase struct {
	name string
	run  func(e *env)
}

// cases lists the suite in the order Run runs it.
var cases = []kase{
	{"metadata", caseMetadata},
	{"produce-codecs", caseProduceCodecs},
	{"consume-from-offset", caseConsumeFromOffset},
	{"group-commit-resume", caseGroupCommitResume},
	{"group-since", caseGroupSince},
	{"rebalance", caseRebalance},
	{"create-delete-topics", caseCreateDeleteTopics},
	{"alter-configs", caseAlterConfigs},
	{"idempotent-retry", caseIdempotentRetry},
	{"kcat-idempotent", caseKcatIdempotent},
}

// Run runs every client case as subtests of t against the broker made by
// start. start is called once per top-level case; it returns a fresh broker
// with an empty state, or the same one: cases use unique topic and group
// names so that they can share. start may register the broker's shutdown
// with t.Cleanup.
//
// Run calls t.Run, so call it from the test's goroutine. The cases run one
// after another; against kfake the whole suite takes about 20 seconds. Each
// external process and each wait is bounded by 30 seconds.
func Run(t *testing.T, start func(t *testing.T) Broker) {
	runCases(t, start, nil)
}

// runCases runs the cases named in only, or all of them when only is nil.
func runCases(t *testing.T, start func(t *testing.T) Broker, only []string) {
	t.Helper()
	scripts := writeScripts(t)
	token := randomToken(t)
	for _, c := range cases {
		if only != nil && !slices.Contains(only, c.name) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			b := start(t)
			if reason, ok := b.Skip[c.name]; ok {
				t.Skip(reason)
			}
			e := &env{
				t:       t,
				b:       b,
				path:    c.name,
				prefix:  "kt-" + c.name + "-" + token,
				scripts: scripts,
			}
			e.franz = e.newAdmin()
			c.run(e)
		})
	}
}

// env is what a case runs with: its broker, a name prefix and the clients.
// A sub-env from run shares all but t and path.
type env struct {
	t       *testing.T
	b       Broker
	path    string // the subtest path below Run, to look up Broker.Skip
	prefix  string // unique per case and Run: kt-<case>-<token>
	scripts string // directory holding the Python scripts
	franz   *admin
}

// name is a topic or group name unique to this case and Run.
func (e *env) name(parts ...string) string {
	return e.prefix + "-" + strings.Join(parts, "-")
}

// run runs f as subtest name unless Broker.Skip names it.
func (e *env) run(name string, f func(e *env)) {
	e.t.Run(name, func(t *testing.T) {
		sub := *e
		sub.t = t
		sub.path = e.path + "/" + name
		if reason, ok := e.b.Skip[sub.path]; ok {
			t.Skip(reason)
		}
		f(&sub)
	})
}

// ctx is a context bounded by opTimeout and ended with the test.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

// probeTimeout bounds one request of a polling loop, so that the loop's
// last error is the broker's answer, not its own deadline.
const probeTimeout = 5 * time.Second

// waitFor polls cond until it holds or opTimeout passes, then fails with
// what() describing the state it last saw.
func (e *env) waitFor(desc string, cond func() bool, what func() string) {
	e.t.Helper()
	deadline := time.Now().Add(opTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %v waiting for %s; %s", opTimeout, desc, what())
		}
		<-tick.C
	}
}

func randomToken(t *testing.T) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("random token: %v", err)
	}
	return hex.EncodeToString(b[:])
}

// offsetsArg renders {0: 10, 1: 17} as "0:10,1:17" for the scripts.
func offsetsArg(m map[int32]int64) string {
	var parts []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d:%d", p, m[p]))
	}
	return strings.Join(parts, ",")
}
