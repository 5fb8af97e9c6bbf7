package rtx

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

const loserSettings = `
[default.resilience.retry.policies.h]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.02
max_hedges = 1
budget_ratio = -1.0

[default.resilience.retry.policies.h3]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.02
max_hedges = 1
budget_ratio = -1.0
`

const loserCircuits = loserSettings + `
[default.resilience.circuit_breaker]
default_fail_max = 1
default_reset_timeout_sec = 30.0
`

type closeSpy struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeSpy) Close() error { c.closed.Store(true); return nil }

// Regression: retryError.Attempts after hedges reports the number of the attempt that
// landed last, not how many were made.
func TestHedgeRetryErrorCountsEveryAttempt(t *testing.T) {
	var calls atomic.Int32
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 { // primary: fails after the hedge did
			time.Sleep(60 * time.Millisecond)
		}
		return nil, netOpError{}.err()
	})
	tr := New(testFactory(t, loserSettings), "h", WithBase(base))
	_, err := tr.RoundTrip(mustGet(t, "http://example.test/"))
	var re *RetryError
	if !errors.As(err, &re) {
		t.Fatalf("err %v", err)
	}
	if calls.Load() != 2 || re.Attempts != 2 {
		t.Fatalf("%d attempts made, RetryError.Attempts = %d", calls.Load(), re.Attempts)
	}
}

// Regression: a failure of a listed class that landed before the winner keeps its
// response open: never drained nor closed.
func TestHedgeEarlierFailureClosedWhenHedgeWins(t *testing.T) {
	var calls atomic.Int32
	spy := &closeSpy{Reader: strings.NewReader("busy")}
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch calls.Add(1) {
		case 1: // primary: a 503 that lands while the hedge is in flight
			time.Sleep(30 * time.Millisecond)
			return &http.Response{StatusCode: 503, Body: spy, Header: http.Header{}, Request: r}, nil
		default: // hedge: answers later
			time.Sleep(40 * time.Millisecond)
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Header: http.Header{}, Request: r}, nil
		}
	})
	tr := New(testFactory(t, loserSettings), "h3", WithBase(base))
	resp, err := tr.RoundTrip(mustGet(t, "http://example.test/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(50 * time.Millisecond)
	if resp.StatusCode != 200 || !spy.closed.Load() {
		t.Fatalf("status %d; discarded 503 closed: %v", resp.StatusCode, spy.closed.Load())
	}
}

// Regression: a loser whose first byte arrived before the winner landed is not
// cancelled, and its outcome is counted in the circuit.
func TestHedgeLoserOutcomeNotCounted(t *testing.T) {
	var calls atomic.Int32
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch calls.Add(1) {
		case 1: // primary: first byte at 25ms (after the hedge left), 503 at 60ms
			time.Sleep(25 * time.Millisecond)
			if tr := httptrace.ContextClientTrace(r.Context()); tr != nil && tr.GotFirstResponseByte != nil {
				tr.GotFirstResponseByte()
			}
			time.Sleep(35 * time.Millisecond)
			return &http.Response{StatusCode: 503, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		case 2: // hedge wins at ~30ms
			time.Sleep(10 * time.Millisecond)
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	tr := New(testFactory(t, loserCircuits), "h", WithBase(base))
	resp, err := tr.RoundTrip(mustGet(t, "http://example.test/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond) // the loser lands and is collected
	_, err = tr.RoundTrip(mustGet(t, "http://example.test/"))
	if errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("the loser's 503 opened the circuit: %v", err)
	}
}
