package rtx

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Regression: a breaker hook that panicked while a hedge was launched
// unwound the call with the primary still in flight, waiting for a
// verdict nobody would give, holding its circuit's probe and connection.
func TestHedgeHookPanicLeavesNoAttemptBehind(t *testing.T) {
	f := testFactory(t, hedgeSettings+`
[default.resilience.circuit_breaker]
enabled = true
default_fail_max = 5
default_reset_timeout_sec = 30.0
`)
	release := make(chan struct{})
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		<-release // slow primary; ignores its context, as a base may
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
	var hookCalls atomic.Int32
	hook := func(*http.Request) bool {
		if hookCalls.Add(1) == 2 { // the hedge's launch
			panic("hook boom")
		}
		return false
	}
	tr := New(f, "hedge", WithBase(base), WithCircuitBreakerHook(hook))
	func() {
		defer func() { recover() }()
		tr.RoundTrip(mustGet(t, "http://example.test/"))
	}()
	close(release) // the primary answers now
	time.Sleep(200 * time.Millisecond)
	buf := make([]byte, 1<<20)
	s := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(s, "(*flight).land") {
		t.Errorf("a hedged attempt is blocked forever in flight.land (no verdict):\n%s", s[strings.Index(s, "(*flight).land")-200:][:600])
	}
}
