package rtx

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/policy"
)

// closeRecorder records whether the body was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error { c.closed.Store(true); return nil }

func TestOddRequestsAndResponses(t *testing.T) {
	f := testFactory(t, quick+"\n[default.resilience.retry.policies.keyed]\nidempotency_key = true\ntimeout_seconds = 5\nwait_min_seconds = 0.001\nwait_max_seconds = 0.001\n")
	t.Run("nil URL", func(t *testing.T) {
		body := &closeRecorder{Reader: strings.NewReader("x")}
		_, err := New(f, "quick", WithBase(newFixed())).RoundTrip(&http.Request{Method: "GET", Body: body})
		if err == nil || !body.closed.Load() {
			t.Errorf("err %v, body closed %v", err, body.closed.Load())
		}
	})
	t.Run("nil Header with idempotency_key", func(t *testing.T) {
		var got string
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			got = r.Header.Get("Idempotency-Key")
			return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
		})
		u, _ := url.Parse("http://api.test/")
		req := &http.Request{Method: "POST", URL: u}
		resp, err := New(f, "keyed", WithBase(base)).RoundTrip(req)
		if err != nil || got == "" || req.Header != nil {
			t.Errorf("err %v, key %q, caller's header %v", err, got, req.Header)
		}
		resp.Body.Close()
	})
	t.Run("response with a nil Body", func(t *testing.T) {
		base := roundTripFunc(func(*http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200}, nil
		})
		resp, err := New(f, "keyed", WithBase(base)).RoundTrip(mustGet(t, "http://api.test/"))
		if err != nil || resp.Body == nil {
			t.Fatalf("err %v, body %v", err, resp)
		}
		if err := resp.Body.Close(); err != nil {
			t.Error(err)
		}
	})
}

func TestPanicDoesNotWedgeAHalfOpenCircuit(t *testing.T) {
	doc := circuits + "[default.resilience.circuit_breaker.circuits.\"api.test:80\"]\nfail_max = 1\nreset_timeout_sec = 0.001\n"
	f := testFactory(t, doc)
	var mode atomic.Int32 // 0: fail, 1: panic, 2: succeed
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		switch mode.Load() {
		case 0:
			return nil, (netOpError{}).err()
		case 1:
			panic("bug in the base transport")
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	tr := New(f, "p", WithBase(base))
	tr.RoundTrip(mustGet(t, "http://api.test/")) // opens the circuit
	waitState(t, tr.e, "api.test:80", gobreaker.StateHalfOpen)
	mode.Store(1)
	func() {
		defer func() { recover() }()
		tr.RoundTrip(mustGet(t, "http://api.test/"))
	}()
	mode.Store(2)
	if resp, err := tr.RoundTrip(mustGet(t, "http://api.test/")); err != nil {
		t.Fatalf("after a panicking probe the circuit stays wedged: %v", err)
	} else {
		resp.Body.Close()
	}
}

func waitState(t *testing.T, e *engine, name string, want gobreaker.State) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for circuitState(e, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("circuit %s never became %v", name, want)
		}
		time.Sleep(time.Millisecond) // polling gobreaker's clock with a deadline
	}
}

func TestHookRefusalMatchesGobreaker(t *testing.T) {
	tr := New(testFactory(t, quick), "quick", WithBase(newFixed()), WithCircuitBreakerHook(func(*http.Request) bool { return true }))
	_, err := tr.RoundTrip(mustGet(t, "http://api.test/"))
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("err = %v", err)
	}
}

// fakeStreamErr converts itself like net/http's bundled HTTP/2 stream error.
type fakeStreamErr struct{ code uint32 }

func (e fakeStreamErr) Error() string { return "stream error" }
func (e fakeStreamErr) As(target any) bool {
	if p, ok := target.(*h2StreamError); ok {
		*p = h2StreamError{StreamID: 1, Code: e.code}
		return true
	}
	return false
}

func TestRefusedStreamRetriesAPost(t *testing.T) {
	var calls atomic.Int32
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return nil, fakeStreamErr{code: h2RefusedStream}
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	req, _ := http.NewRequest("POST", "http://api.test/", strings.NewReader("x"))
	resp, err := New(testFactory(t, quick), "quick", WithBase(base)).RoundTrip(req)
	if err != nil || calls.Load() != 2 {
		t.Fatalf("err %v after %d calls", err, calls.Load())
	}
	resp.Body.Close()
	// Any other reset is a ConnectionError the server may have processed.
	if c := Classify(nil, nil, fakeStreamErr{code: 0x2}); c != policy.ConnectionError || neverSent(fakeStreamErr{code: 0x2}) {
		t.Errorf("an INTERNAL_ERROR stream error classified %q, never sent %v", c, neverSent(fakeStreamErr{code: 0x2}))
	}
}

// A base's Permanent error ends the request at once, and the caller gets
// the error itself.
func TestTransportPermanentFromBase(t *testing.T) {
	final := errors.New("quota gone for the month")
	calls := 0
	base := roundTripFunc(func(*http.Request) (*http.Response, error) { calls++; return nil, Permanent(final) })
	f := testFactory(t, quick+"[default.resilience.retry.policies.any]\nattempts = 3\nwait_min_seconds = 0.001\nwait_max_seconds = 0.001\nexceptions = [\"Exception\"]\n")
	_, err := New(f, "any", WithBase(base)).RoundTrip(mustGet(t, "http://api.test/"))
	if calls != 1 || err != final {
		t.Errorf("%d calls, err %v (want the error itself, once)", calls, err)
	}
}
