package ducktest

import "testing"

func TestQuery(t *testing.T) {
	r := Query(t, "select 40 + 2 as answer, 'x' as s")
	if len(r.Rows) != 1 || r.Rows[0]["answer"] != float64(42) || r.Types[0] != "INTEGER" {
		t.Fatalf("Query = %+v, want one row with answer 42 (INTEGER)", r)
	}
}
