package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// flaky is a loopback server that answers 503 to the first fails requests
// and 200 with body after that.
type flaky struct {
	mu       sync.Mutex
	fails    int
	seen     int
	headers  []string
	bodies   []string
	response string
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen++
	n := f.seen
	f.headers = append(f.headers, r.Header.Get("Authorization"))
	var b strings.Builder
	if r.Body != nil {
		buf := make([]byte, 512)
		for {
			k, err := r.Body.Read(buf)
			b.Write(buf[:k])
			if err != nil {
				break
			}
		}
	}
	f.bodies = append(f.bodies, b.String())
	f.mu.Unlock()
	if n <= f.fails {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte(f.response))
}

func (f *flaky) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func startFlaky(t *testing.T, fails int) (*flaky, *httptest.Server) {
	t.Helper()
	f := &flaky{fails: fails, response: "hello from the server\n"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func TestGetRetriesFlakyServer(t *testing.T) {
	f, srv := startFlaky(t, 2)
	r := run(t, "get", "--config", "testdata/seed.toml", "--policy", "fast_retry",
		"-H", "Authorization: Bearer s3cr3t-h3ader", srv.URL+"/flaky?token=qu3ry-s3cret&page=2")
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if r.stdout != "hello from the server\n" {
		t.Errorf("stdout %q, want the final body", r.stdout)
	}
	if got := f.requests(); got != 3 {
		t.Errorf("server saw %d requests, want 3", got)
	}
	for i, h := range f.headers {
		if h != "Bearer s3cr3t-h3ader" {
			t.Errorf("attempt %d sent Authorization %q", i+1, h)
		}
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	want := []string{
		"> GET " + srv.URL + "/flaky?page=REDACTED&token=REDACTED (policy fast_retry: 3 attempts)",
		"> headers: Authorization (values not shown)",
		// fast_retry's first delay is exactly wait_min: 100ms.
		"attempt 1/3: HTTPRequestError, 503 Service Unavailable; retry in 100ms",
		// its second is 100ms..150ms.
		"attempt 2/3: HTTPRequestError, 503 Service Unavailable; retry in 1",
		"attempt 3/3: 200 OK",
	}
	if len(lines) != len(want) {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(want), r.stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i+1, lines[i], w)
		}
	}
	for _, secret := range []string{"s3cr3t", "qu3ry", "Bearer"} {
		if strings.Contains(r.stderr, secret) {
			t.Errorf("stderr shows %q:\n%s", secret, r.stderr)
		}
	}
}

func TestGetPostIsNotRetriedAfterReachingTheServer(t *testing.T) {
	f, srv := startFlaky(t, 5)
	r := runIn(t, "a=1&b=2", "get", "--config", "testdata/seed.toml", "--policy", "fast_retry", "-d", "@-", srv.URL)
	if r.code != 0 {
		t.Errorf("exit %d: an HTTP answer is not a failure without --fail", r.code)
	}
	if f.requests() != 1 || f.bodies[0] != "a=1&b=2" {
		t.Errorf("server saw %d requests, bodies %q", f.requests(), f.bodies)
	}
	if !strings.Contains(r.stderr, "attempt 1/3: HTTPRequestError, 503 Service Unavailable; giving up: not idempotent") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if n := strings.Count(r.stderr, "Idempotency-Key"); n != 1 {
		t.Errorf("the advice is given %d times, want once:\n%s", n, r.stderr)
	}
	if r.stdout != "busy\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	r = run(t, "get", "--config", "testdata/seed.toml", "--fail", "-X", "post", "-d", "x", srv.URL)
	if r.code != 1 {
		t.Errorf("--fail on 503: exit %d, want 1", r.code)
	}
}

// TestGetPostResetAfterSending: a POST whose connection is closed after the
// server read it ends in an error (no response), and get gives the advice
// once, as it does for a response.
func TestGetPostResetAfterSending(t *testing.T) {
	var mu sync.Mutex
	seen := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen++
		mu.Unlock()
		buf := make([]byte, 64)
		for {
			if _, err := r.Body.Read(buf); err != nil {
				break
			}
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close() // the request reached the server; no answer
	}))
	t.Cleanup(srv.Close)
	r := run(t, "get", "--config", "testdata/seed.toml", "--policy", "fast_retry", "-d", "a=1", srv.URL)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	mu.Lock()
	n := seen
	mu.Unlock()
	if n != 1 {
		t.Errorf("server saw %d requests, want 1: a POST that reached it is not resent", n)
	}
	if !strings.Contains(r.stderr, "attempt 1/3: ConnectionError, ") ||
		!strings.Contains(r.stderr, "; giving up: not idempotent (POST is retried only when never sent: send an Idempotency-Key header") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
	if c := strings.Count(r.stderr, "Idempotency-Key"); c != 1 {
		t.Errorf("the advice is given %d times, want once:\n%s", c, r.stderr)
	}
}

func TestGetPutIsRetriedWithItsBody(t *testing.T) {
	f, srv := startFlaky(t, 1)
	r := run(t, "get", "--config", "testdata/seed.toml", "--policy", "fast_retry", "-X", "PUT", "-d", `{"n":1}`, srv.URL)
	if r.code != 0 || f.requests() != 2 {
		t.Fatalf("exit %d, %d requests\n%s", r.code, f.requests(), r.stderr)
	}
	for i, b := range f.bodies {
		if b != `{"n":1}` {
			t.Errorf("attempt %d body %q", i+1, b)
		}
	}
}

func TestGetNotListedClass(t *testing.T) {
	f, srv := startFlaky(t, 5)
	r := run(t, "get", "--config", "testdata/seed.toml", "--policy", "long_retry", srv.URL)
	if r.code != 0 || f.requests() != 1 {
		t.Fatalf("exit %d, %d requests", r.code, f.requests())
	}
	if !strings.Contains(r.stderr, "attempt 1/10: HTTPRequestError, 503 Service Unavailable; not retried: policy long_retry does not list HTTPRequestError") {
		t.Errorf("stderr:\n%s", r.stderr)
	}
}

func TestGetConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	path := writeSettings(t, `
[default.resilience.retry.default_policy]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.001
`)
	r := run(t, "get", "--config", path, "http://"+addr+"/x?key=v3ry-s3cret")
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	for _, w := range []string{
		"attempt 1/2: ConnectionError, ", "; retry in 1ms",
		"attempt 2/2: ConnectionError, ", "giving up: attempts exhausted",
	} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("missing %q in:\n%s", w, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "v3ry") || r.stdout != "" {
		t.Errorf("stdout %q, stderr:\n%s", r.stdout, r.stderr)
	}
}

func TestGetLoadErrors(t *testing.T) {
	r := run(t, "get", "--config", "testdata/broken.toml", "http://127.0.0.1:1/")
	if r.code != 1 || !strings.Contains(r.stderr, `testdata/broken.toml: retry policy "slow"`) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = run(t, "get", "--config", "testdata/seed.toml", "--policy", "nope", "http://127.0.0.1:1/")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown retry policy") {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestRedactor(t *testing.T) {
	red := &redactor{url: "http://h/p?q=REDACTED", raw: []string{"http://u:pw@h/p?q=abc"}, secrets: []string{"tok3n", "ab"}}
	got := red.text(`Get "http://u:pw@h/p?q=abc": tok3n rejected; ab stays`)
	want := `Get "http://h/p?q=REDACTED": REDACTED rejected; ab stays`
	if got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
}

func TestGetWithoutSettingsUsesBuiltinDefault(t *testing.T) {
	f, srv := startFlaky(t, 0)
	t.Chdir(t.TempDir()) // no settings.toml here
	r := run(t, "get", srv.URL)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "no settings.toml here: using the built-in default policy") {
		t.Errorf("stderr does not say the built-in default is used:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "(policy default: 3 attempts)") {
		t.Errorf("stderr does not show the default policy:\n%s", r.stderr)
	}
	if f.requests() != 1 || r.stdout != "hello from the server\n" {
		t.Errorf("server saw %d requests, stdout %q", f.requests(), r.stdout)
	}

	// A file asked for by name must exist.
	r = run(t, "get", "--config", "settings.toml", srv.URL)
	if r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Errorf("--config of a missing file: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
