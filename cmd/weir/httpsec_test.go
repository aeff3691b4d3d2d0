package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhub/weir/internal/tlstest"
)

// curlRun runs curl with a timeout; its output is returned even when it
// exits non-zero (a stream cut by --max-time).
func curlRun(t *testing.T, args ...string) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is not installed: install Debian package curl (make test-deps)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, curl, append([]string{"-sS"}, args...)...).CombinedOutput()
	return string(out)
}

// TestServeHTTPTLSAndTokensWithCurl: weir serve --http-listen over HTTPS
// with a token file; curl trusts the CA with --cacert: /healthz is open,
// /metrics needs a metrics token (401 with WWW-Authenticate: Bearer
// without one, 403 for a subscribe token), the subscription streams with
// a subscribe token in the header or the access_token parameter, plain
// HTTP gets nothing, and no token shows in the log.
func TestServeHTTPTLSAndTokensWithCurl(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "weir-http-ca")
	cert, key, caFile := ca.Files(t, dir)
	tokens := filepath.Join(dir, "http-tokens")
	const promTok, subTok = "prom-7f3a9c2e41", "dash-0b5d8e6f97"
	if err := os.WriteFile(tokens, []byte("# tokens\n"+promTok+" metrics\n"+subTok+" subscribe\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, t.TempDir(), "--http-listen", "127.0.0.1:0", "--http-tls-cert", cert, "--http-tls-key", key,
		"--http-token-file", tokens, "--fsync", "always")
	base := "https://" + httpAddr(t, p)

	status := func(extra ...string) string {
		return curlRun(t, append([]string{"--cacert", caFile, "-o", "/dev/null", "-w", "%{http_code} %header{www-authenticate}"}, extra...)...)
	}
	for _, c := range []struct {
		path, token, want string
	}{
		{"/healthz", "", "200 "},
		{"/readyz", "", "200 "},
		{"/metrics", "", `401 Bearer realm="weir"`},
		{"/metrics", "wrong-token", `401 Bearer realm="weir", error="invalid_token"`},
		{"/metrics", subTok, `403 Bearer realm="weir", error="insufficient_scope", scope="metrics"`},
		{"/metrics", promTok, "200 "},
		{"/v1/datasets/users/subscribe", promTok, `403 Bearer realm="weir", error="insufficient_scope", scope="subscribe"`},
	} {
		args := []string{base + c.path}
		if c.token != "" {
			args = append(args, "-H", "Authorization: Bearer "+c.token)
		}
		if got := status(args...); got != c.want {
			t.Errorf("curl %s with %q: %q, want %q", c.path, c.token, got, c.want)
		}
	}
	if out := curlRun(t, "--cacert", caFile, "-H", "Authorization: Bearer "+promTok, base+"/metrics"); !strings.Contains(out, "weir_kafka_connections") {
		t.Errorf("/metrics with the metrics token:\n%.500s", out)
	}
	// Plain HTTP to the TLS port is not served.
	if got := curlRun(t, "-o", "/dev/null", "-w", "%{http_code}", strings.Replace(base, "https", "http", 1)+"/healthz"); strings.HasPrefix(got, "200") {
		t.Errorf("plain HTTP was answered: %s", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := mustClient(t, p.addr, kgo.DefaultProduceTopic("users"), kgo.AllowAutoTopicCreation())
	for _, r := range []*kgo.Record{{Key: []byte("u1"), Value: []byte(`{"name":"Ann"}`)}, {Key: []byte("u2"), Value: []byte(`{"name":"Bob"}`)}} {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"-H", "Authorization: Bearer " + subTok, base + "/v1/datasets/users/subscribe"},
		{"-H", "Accept: text/event-stream", base + "/v1/datasets/users/subscribe?access_token=" + subTok},
	} {
		out := curlRun(t, append([]string{"-N", "--max-time", "3", "--cacert", caFile}, args...)...)
		if !strings.Contains(out, `"key":"u1","value":{"name":"Ann"}`) || !strings.Contains(out, "event: snapshot_end\n") {
			t.Errorf("curl subscribe %v:\n%s", args, out)
		}
	}
	// The client commands: weir top with the metrics token, weir subscribe
	// with the subscribe token, both over HTTPS trusting the CA.
	promFile, subFile := filepath.Join(dir, "prom.token"), filepath.Join(dir, "sub.token")
	os.WriteFile(promFile, []byte(promTok+"\n"), 0o600)
	os.WriteFile(subFile, []byte(subTok+"\n"), 0o600)
	hostPort := strings.TrimPrefix(base, "https://")
	if out, errOut, err := runIn(t, "", "top", "--once", "--interval", "100ms", "--http", hostPort, "--http-tls", caFile, "--http-token-file", promFile); err != nil ||
		!strings.Contains(out, "users") {
		t.Errorf("weir top --once: %v\n%s%s", err, out, errOut)
	}
	if _, _, err := runIn(t, "", "top", "--once", "--interval", "100ms", "--http", hostPort, "--http-tls", caFile, "--http-token-file", subFile); err == nil ||
		!strings.Contains(err.Error(), "403") {
		t.Errorf("weir top --once with a subscribe token: %v, want 403", err)
	}
	exe, _ := os.Executable()
	sub := exec.CommandContext(ctx, exe, "-test.run=^$")
	sub.Env = append(os.Environ(), mainEnv+"=1", "WEIR_TEST_ARGS="+strings.Join([]string{"subscribe", "users", "--http", hostPort,
		"--http-tls", caFile, "--http-token-file", subFile}, "\x1f"))
	stdout, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sub.Process.Signal(syscall.SIGTERM); sub.Wait() }()
	lines := bufio.NewScanner(stdout)
	var types []string
	for lines.Scan() {
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("weir subscribe printed %q: %v", lines.Text(), err)
		}
		types = append(types, fmt.Sprint(m["type"]))
		if m["type"] == "snapshot_end" {
			break
		}
	}
	if strings.Join(types, ",") != "record,record,snapshot_end" {
		t.Errorf("weir subscribe over HTTPS with a token printed %v", types)
	}
	if log := p.output(); strings.Contains(log, promTok) || strings.Contains(log, subTok) {
		t.Errorf("a token appears in the log:\n%s", log)
	}
	if !strings.Contains(p.output(), "HTTP request refused") {
		t.Errorf("the refused tokens were not logged:\n%s", p.output())
	}
}

// TestServeHTTPSecurityFromConfig: http: {tls, token_file} in weir.yaml,
// and WEIR_HTTP_TOKENS adding a token inline.
func TestServeHTTPSecurityFromConfig(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "weir-http-ca")
	cert, key, caFile := ca.Files(t, dir)
	tokens := filepath.Join(dir, "http-tokens")
	if err := os.WriteFile(tokens, []byte("file-token-1 metrics\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "weir.yaml")
	yml := "http:\n  listen: 127.0.0.1:0\n  tls: {cert_file: " + cert + ", key_file: " + key + "}\n  token_file: " + tokens + "\n"
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WEIR_HTTP_TOKENS", "env-token-2 metrics;env-token-3 subscribe")
	p := startServe(t, t.TempDir(), "--config", cfg)
	base := "https://" + httpAddr(t, p)
	for tok, want := range map[string]string{"": "401", "file-token-1": "200", "env-token-2": "200", "env-token-3": "403"} {
		args := []string{"--cacert", caFile, "-o", "/dev/null", "-w", "%{http_code}", base + "/metrics"}
		if tok != "" {
			args = append(args, "-H", "Authorization: Bearer "+tok)
		}
		if got := curlRun(t, args...); got != want {
			t.Errorf("/metrics with %q: %s, want %s", tok, got, want)
		}
	}
}
