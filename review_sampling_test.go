package rtx

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/athomic-go/rtx/breaker"
)

// firstsIn returns the first attempts counted in the budget of the
// upstream key under the policy pol, now.
func firstsIn(t *testing.T, e *engine, key, pol string) int64 {
	t.Helper()
	p, err := e.factory.Snapshot().Policy(pol)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := e.ups.get([]byte(key), e.clock()).budgetFor(p).counts(e.clock())
	return f
}

// A call that an open circuit refuses before its first attempt counts the
// same in its upstream's budget whether circuits are keyed by upstream or
// by a custom key: the key only says where the circuit lives.
func TestRefusedCallCountsAlikeUnderEitherCircuitKey(t *testing.T) {
	doc := fmt.Sprintf(budgetPolicy, "budget_ratio = 0\nbudget_min_retries_per_sec = 0.01") + `
[default.resilience.circuit_breaker]
enabled = true
default_fail_max = 1
default_reset_timeout_sec = 60
`
	firsts := map[string]int64{}
	for _, key := range []string{"upstream", "custom"} {
		opts := []Option{WithBase(pathBase(nil))}
		if key == "custom" {
			opts = append(opts, WithCircuits(breaker.Config{Key: func(breaker.Target) string { return "backend" }}))
		}
		tr := New(testFactory(t, doc), "p", opts...)
		if _, err := tr.RoundTrip(mustGet(t, "http://a.test/fail")); err == nil {
			t.Fatalf("%s key: a failing call succeeded", key)
		}
		for range 10 {
			if _, err := tr.RoundTrip(mustGet(t, "http://a.test/ok")); !errors.Is(err, ErrCircuitOpen) {
				t.Fatalf("%s key: %v, want a refusal by the open circuit", key, err)
			}
		}
		firsts[key] = firstsIn(t, tr.e, "a.test:80", "p")
	}
	if firsts["upstream"] != firsts["custom"] {
		t.Errorf("one failed call and 10 refused ones count %d first attempts under the upstream key, %d under a custom key",
			firsts["upstream"], firsts["custom"])
	}
}

// Under a ratio alone (no floor), the first tries that succeeded before a
// failure decide whether it is retried: 8 of them and the failing call make
// 9 first attempts, which allow 4.5 retries at ratio 0.5. Every fresh
// Transport sent the same calls, so each must decide alike; a first try
// counted one time in 16, for 16, decides by luck at such traffic.
func TestLowTrafficBudgetDoesNotDependOnLuck(t *testing.T) {
	doc := fmt.Sprintf(budgetPolicy, "budget_ratio = 0.5\nbudget_min_retries_per_sec = 0")
	var fails atomic.Int64
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/fail" {
			fails.Add(1)
		}
		return pathBase(nil).RoundTrip(r)
	})
	const trials = 200
	refused := 0
	for range trials {
		tr := New(testFactory(t, doc), "p", WithBase(base))
		for range 8 {
			resp, err := tr.RoundTrip(mustGet(t, "http://low.test/ok"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		fails.Store(0)
		_, err := tr.RoundTrip(mustGet(t, "http://low.test/fail"))
		var re *RetryError
		if !errors.As(err, &re) {
			t.Fatalf("a failing call: %v", err)
		}
		if re.Reason == ReasonBudget {
			refused++
		} else if fails.Load() < 2 {
			t.Fatalf("not retried, yet not stopped by the budget: %v", err)
		}
	}
	if refused != 0 {
		t.Errorf("%d of %d Transports refused the retry that 9 first attempts allow at ratio 0.5 (4.5 retries)", refused, trials)
	}
}
