package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/weirhub/weir/internal/ducktest"
)

// TestAnalyticsExample runs examples/analytics.yaml as a user would: events
// POSTed over HTTP land, by the day of their ts, in Parquet files that
// DuckDB reads with hive_partitioning; events that are not JSON, have no
// ts or do not fit a declared column are kept out.
func TestAnalyticsExample(t *testing.T) {
	dir := t.TempDir()
	port := lsFreePort(t)
	env := []string{fmt.Sprintf("HTTP_ADDRESS=127.0.0.1:%d", port), "WEIR_DATA_DIR=" + dir, "LAKE_ROTATE=300ms"}
	run := lsStart(t, env, filepath.Join("..", "..", "examples", "analytics.yaml"), port, 1)
	const days, perDay = 3, 400
	var body bytes.Buffer
	for i := range days * perDay {
		ts := time.Date(2026, 11, 20+i%days, 23, 59, i%60, 0, time.FixedZone("", 3600)) // 22:59 UTC: the UTC day
		fmt.Fprintf(&body, `{"ts":%q,"user_id":%d,"event":"view","props":{"page":"/p/%d","ms":%d.5}}`+"\n", ts.Format(time.RFC3339), i%50, i%7, i)
	}
	body.WriteString("not json\n")
	body.WriteString(`{"user_id":1,"event":"no time"}` + "\n")
	body.WriteString(`{"ts":"2026-11-20T10:00:00Z","user_id":"abc"}` + "\n")
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/events", port), "application/x-ndjson", &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("POST = %s, want 204", resp.Status)
	}
	glob := fmt.Sprintf("read_parquet('%s/lake/events/*/*.parquet', hive_partitioning = true)", dir)
	var got string
	for deadline := time.Now().Add(30 * time.Second); ; {
		r, err := ducktest.Run(context.Background(), "select count(*) as n from "+glob)
		if err == nil {
			if got = fmt.Sprint(r.Rows[0]["n"]); got == fmt.Sprint(days*perDay) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30s DuckDB reads %q rows (err %v), want %d:\n%s", got, err, days*perDay, run.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	run.stop()
	r := ducktest.Query(t, "select date::varchar as date, count(*) as n, count(distinct user_id) as users, min(ts)::varchar as first from "+glob+" group by date order by date")
	if len(r.Rows) != days {
		t.Fatalf("days = %v, want %d", r.Rows, days)
	}
	for i, row := range r.Rows {
		day := fmt.Sprintf("2026-11-%d", 20+i)
		if row["date"] != day || fmt.Sprint(row["n"]) != fmt.Sprint(perDay) || fmt.Sprint(row["users"]) != "50" {
			t.Errorf("day %d = %v, want date %s with %d events of 50 users", i, row, day, perDay)
		}
	}
	r = ducktest.Query(t, "describe select ts, user_id, props from "+glob)
	for i, want := range []string{"TIMESTAMP WITH TIME ZONE", "BIGINT", `STRUCT(page VARCHAR, ms DOUBLE)`} {
		if got := fmt.Sprint(r.Rows[i]["column_type"]); got != want {
			t.Errorf("column %v is %s, want %s", r.Rows[i]["column_name"], got, want)
		}
	}
}
