package integration

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/integration/internal/faultproxy"
	"github.com/athomic-go/rtx/policy"
)

// settings are the policies the tests use, in rtx's settings layout.
//
// Each attempt gets 0.5s (timeout_seconds): a Delay fault holds its answer
// far longer, so rtx abandons that attempt and tries again. waits are short
// so the suite stays fast; jitter stays at its default.
const settings = `
# The policy the README snippets name.
[default.resilience.retry.policies.fast_retry]
attempts = 3
wait_min_seconds = 0.1
wait_max_seconds = 1.0
backoff = 1.5
exceptions = ["HTTPException"]

[default.resilience.retry.policies.sdk]
attempts = 4
wait_min_seconds = 0.01
wait_max_seconds = 0.05
backoff = 2.0
timeout_seconds = 0.5
exceptions = ["HTTPException"]

# Same, but POST and PATCH are retried even after they reached the server.
# Prometheus queries are POSTs (form-encoded PromQL, GET only as a fallback
# on 405), yet they only read: repeating one is safe, so opting in is right
# for a client that only queries. Never use this for a POST that creates
# something without an idempotency key.
[default.resilience.retry.policies.sdk_post]
attempts = 4
wait_min_seconds = 0.01
wait_max_seconds = 0.05
backoff = 2.0
timeout_seconds = 0.5
exceptions = ["HTTPException"]
retry_non_idempotent = true
`

// callTimeout bounds every SDK call, with rtx or without: long enough for
// rtx to spend its four attempts (0.5s for a held one plus short waits),
// shorter than the proxy's Delay (maxDelay), so a bare call that meets a
// Delay fails on this deadline.
const (
	callTimeout = 3 * time.Second
	maxDelay    = 30 * time.Second
)

// loadSettings writes settings to a file in t.TempDir() and loads it.
func loadSettings(t *testing.T) *policy.Factory {
	t.Helper()
	path := filepath.Join(t.TempDir(), "settings.toml")
	if err := os.WriteFile(path, []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := policy.LoadFile(path)
	if err != nil {
		t.Fatalf("policy.LoadFile: %v", err)
	}
	return f
}

// newProxy starts a fault proxy in front of upstream, closed in t.Cleanup.
func newProxy(t *testing.T, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(upstream, maxDelay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// countingTransport is the base transport handed to rtx with rtx.WithBase
// (or used bare): it counts every attempt that goes to the wire.
type countingTransport struct {
	base *http.Transport
	n    atomic.Int64

	mu      sync.Mutex
	methods []string
}

// newCounting returns a counting transport over a fresh pool of
// connections, whose idle connections are closed in t.Cleanup.
func newCounting(t *testing.T) *countingTransport {
	t.Helper()
	c := &countingTransport{base: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
	}}
	t.Cleanup(c.base.CloseIdleConnections)
	return c
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.methods = append(c.methods, r.Method)
	c.mu.Unlock()
	return c.base.RoundTrip(r)
}

func (c *countingTransport) CloseIdleConnections() { c.base.CloseIdleConnections() }

// Attempts returns how many requests went through c.
func (c *countingTransport) Attempts() int { return int(c.n.Load()) }

// rtxTransport wraps base in rtx with the named policy, and counts the
// retries rtx reports through OnRetry.
func rtxTransport(t *testing.T, f *policy.Factory, name string, base http.RoundTripper) (*rtx.Transport, *atomic.Int64) {
	t.Helper()
	var retries atomic.Int64
	rt := rtx.New(f, name, rtx.WithBase(base), rtx.OnRetry(func(rtx.RetryEvent) { retries.Add(1) }))
	t.Cleanup(rt.CloseIdleConnections)
	return rt, &retries
}

// eventually polls cond until it holds or d passes, then reports whether
// it held.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// checkRecords fails t unless the proxy saw exactly want faults, in order,
// each on method.
func checkRecords(t *testing.T, p *faultproxy.Proxy, method string, want []faultproxy.Fault) {
	t.Helper()
	got := p.Records()
	if len(got) != len(want) {
		t.Fatalf("proxy saw %d requests %v, want %d %v", len(got), got, len(want), want)
	}
	for i, r := range got {
		if r.Fault != want[i] || r.Method != method {
			t.Errorf("proxy request %d = %s %s, want %s %s", i, r.Method, r.Fault, method, want[i])
		}
	}
}

// withPass returns faults followed by one Pass: what the proxy should see
// when a client gets through.
func withPass(faults []faultproxy.Fault) []faultproxy.Fault {
	return append(append([]faultproxy.Fault(nil), faults...), faultproxy.Pass)
}

// checkGrowth fails t unless the server-side count read grew by exactly
// want since before. A server counts a request once it has answered it,
// which the client may see first, so growth is awaited (with a deadline)
// before it is compared: a count that overshoots still fails.
func checkGrowth(t *testing.T, what string, read func() float64, before, want float64) {
	t.Helper()
	var got float64
	eventually(5*time.Second, func() bool {
		got = read() - before
		return got >= want
	})
	if got != want {
		t.Errorf("%s grew by %v, want %v", what, got, want)
	}
}
