package pipelines

import (
	"errors"
	"strings"
	"testing"

	"github.com/weirhub/weir/connectors"
)

// TestExprUnknownFunctions: calling a name that is not a function is a
// compile error with its offset, not "cannot call nil" for every record
// at run time (issue 10 item 10).
func TestExprUnknownFunctions(t *testing.T) {
	tests := []struct {
		src    string
		offset int
		want   string
	}{
		{`lenght(msg) > 3`, 0, "unknown function lenght (did you mean len?)"},
		{`foo(bar)`, 0, "unknown function foo"},
		{`status > 3 && uper(level) == "X"`, 14, "unknown function uper (did you mean upper?)"},
		{`level ==`, 7, "unexpected token EOF"},
	}
	for _, tt := range tests {
		_, err := CompileExpr(tt.src)
		var ee *ExprError
		if !errors.As(err, &ee) || ee.Offset != tt.offset || !strings.Contains(ee.Msg, tt.want) {
			t.Errorf("CompileExpr(%q) = %v (%+v), want %q at offset %d", tt.src, err, ee, tt.want, tt.offset)
		}
	}
	for _, ok := range []string{`len(msg) > 3`, `upper(level) == "X"`, `lower(_headers["a"]) == "b"`, `now() > _time`} {
		if _, err := CompileExpr(ok); err != nil {
			t.Errorf("CompileExpr(%q) = %v", ok, err)
		}
	}
}

// TestExprMissingFieldComparesFalse: an ordering comparison with a field
// the record lacks is false, on the fast path and in expr's VM alike.
func TestExprMissingFieldComparesFalse(t *testing.T) {
	for _, src := range []string{`status >= 400`, `status < 400`, `400 <= status`, `len(msg) > 0 && status >= 400`, `(status ?? nil) > 1`} {
		e, err := CompileExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		m := &connectors.Message{Value: []byte(`{"msg":"x"}`)}
		got, err := e.Bool(m)
		if err != nil || got {
			t.Errorf("%s on a record without status = %v, %v; want false, nil", src, got, err)
		}
		v, err := e.Eval(m)
		if err != nil || v != false {
			t.Errorf("%s through expr on a record without status = %v, %v; want false", src, v, err)
		}
	}
	e, _ := CompileExpr(`status >= 400`)
	if got, err := e.Bool(&connectors.Message{Value: []byte(`{"status":503}`)}); err != nil || !got {
		t.Errorf("status >= 400 on 503 = %v, %v", got, err)
	}
}

// TestLintExpressionsWithPlaces: lint reports bad expressions at their
// line and column, in the same pass as structural problems.
func TestLintExpressionsWithPlaces(t *testing.T) {
	testRegistry(t)
	src := `datasets: {in: {}}
pipelines:
  p:
    from: in
    nosuchkey: 1
    processors:
      - filter: 'lenght(msg) > 3'
      - set: {x: 'foo(bar)', y: '1'}
      - route:
          rules: [{when: 'uper(a) == "B"', to: [memory]}]
    to: [{memory: {id: x}}]
`
	_, err := Load("p.yaml", []byte(src), LoadOptions{Env: func(string) (string, bool) { return "", false }})
	if err == nil {
		t.Fatal("Load accepted unknown functions")
	}
	got := err.Error()
	for _, want := range []string{
		"p.yaml:5:5: ",
		"p.yaml:7:18: filter: ",
		"unknown function lenght (did you mean len?)",
		"p.yaml:8:19: set: ",
		"unknown function foo",
		"p.yaml:10:27: route: ",
		"unknown function uper",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lint output lacks %q:\n%s", want, got)
		}
	}
}
