package pipelines

import (
	"strings"
	"testing"
)

// TestRunTestsReplacedValues: processors that replace a record's value
// (parse regex or logfmt, parse with on_error: keep) are compared by what
// they made, not by the input.
func TestRunTestsReplacedValues(t *testing.T) {
	reg := testRegistry(t)
	src := `
datasets: {in: {}}
pipelines:
  p:
    from: in
    processors:
      - parse: {format: regex, pattern: '^(?P<level>[A-Z]+) ', on_error: keep}
    to:
      - memory: {id: unused}
tests:
  replaced:
    pipeline: p
    input: ['WARN disk full', '{"already":"json"}', 'no level']
    output:
      - '{"level":"WARN"}'
      - '{"already":"json"}'
      - '{"message":"no level"}'
  wrong:
    pipeline: p
    input: ['INFO started']
    output: ['INFO started']
`
	cfg, err := Load("t.yaml", []byte(src), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	res := RunTests(cfg, reg)
	if len(res) != 2 {
		t.Fatalf("RunTests = %d results, want 2", len(res))
	}
	for _, r := range res {
		switch r.Name {
		case "replaced":
			if len(r.Failures) > 0 {
				t.Errorf("test replaced failed: %s", strings.Join(r.Failures, "\n"))
			}
		case "wrong":
			if len(r.Failures) == 0 {
				t.Errorf("test wrong passed: the input was taken for the output")
			}
		}
	}
}

// TestRunTestsShowDeadLetterReasons: a test failing because records
// were dead-lettered shows why each was (issue 10 item 10).
func TestRunTestsShowDeadLetterReasons(t *testing.T) {
	reg := testRegistry(t)
	src := `
datasets: {in: {}}
pipelines:
  p:
    from: in
    processors: [{parse: json}, {set: {ratio: 'a / b'}}]
    to: [{memory: {id: unused}}]
tests:
  fails:
    pipeline: p
    input: ['not json', '{"a":1,"b":"x"}']
    output: ['{"a":1}']
`
	cfg, err := Load("t.yaml", []byte(src), LoadOptions{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	res := RunTests(cfg, reg)
	got := strings.Join(res[0].Failures, "\n")
	for _, want := range []string{"reason: processor parse: parse json", "reason: processor set: set ratio"} {
		if !strings.Contains(got, want) {
			t.Errorf("failures lack %q:\n%s", want, got)
		}
	}
}
