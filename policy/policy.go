package policy

import (
	"math"
	"time"
)

// MaxAttempts is the largest value accepted for a policy's attempts.
const MaxAttempts = 100

// Policy is one named retry policy: how many times to try, how long to wait
// between tries, and which classes of failure are worth another try.
//
// Policies returned by a [Factory] or [Snapshot] are shared by every request
// that uses them and must not be modified. The zero value is not a usable
// policy (it has zero attempts); [Default] returns the built-in one. A
// *Policy is safe for concurrent use as long as nobody modifies it.
type Policy struct {
	// Name is the policy's name in the settings file; "" for the default policy.
	Name string
	// Attempts is the total number of tries, the first included (1..MaxAttempts).
	Attempts int
	// WaitMin and WaitMax bound every delay between tries.
	WaitMin, WaitMax time.Duration
	// Backoff multiplies the delay from one retry to the next (>= 1).
	Backoff float64
	// Jitter is the share of each delay that is random, 0..1 (1 = full jitter).
	Jitter float64
	// Timeout bounds each attempt; 0 means no per-attempt timeout.
	Timeout time.Duration
	// Exceptions names the classes that are retried; a class covers its descendants.
	Exceptions []string
	// RetryNonIdempotent retries POST, PATCH and other non-idempotent
	// requests on every listed class, as the seed does.
	RetryNonIdempotent bool
	// IdempotencyKey adds one generated Idempotency-Key header to
	// non-idempotent requests that carry none, which makes them retryable.
	IdempotencyKey bool
	// BudgetRatio caps retries at this share of first attempts per upstream; -1 turns the budget off.
	BudgetRatio float64
	// BudgetMinRetriesPerSec is the budget's floor: retries always allowed per second.
	BudgetMinRetriesPerSec float64
	// BudgetWindow is the span over which the budget counts attempts.
	BudgetWindow time.Duration
	// HedgeDelay is hedge_delay_seconds: how long an attempt may go
	// unanswered before a hedge (a copy of the request) is sent; 0 means
	// no hedging. When > 0 it is at least 1 ms.
	HedgeDelay time.Duration
	// HedgeQuantile is hedge_quantile: when in (0,1), the hedge delay is
	// this quantile of the upstream's recent attempt latencies, HedgeDelay
	// being its floor (and its value until enough samples); 0 is off.
	HedgeQuantile float64
	// MaxHedges is max_hedges: how many attempts may be in flight at once
	// beyond the first, 1..Attempts-1 when hedging (default 1), 0 when not.
	MaxHedges int

	retries map[string]bool // every class covered by Exceptions
}

// Default returns the built-in default policy: 3 attempts, 1 s to 10 s,
// backoff 2, full jitter, no per-attempt timeout, retrying HTTPRequestError
// and HTTPTimeoutError. A missing field in a settings file takes its value
// from here. Each call returns a new Policy.
func Default() *Policy {
	p := &Policy{
		Attempts:               3,
		WaitMin:                time.Second,
		WaitMax:                10 * time.Second,
		Backoff:                2,
		Jitter:                 1,
		Exceptions:             []string{HTTPRequestError, HTTPTimeoutError},
		BudgetRatio:            0.2,
		BudgetMinRetriesPerSec: 10,
		BudgetWindow:           10 * time.Second,
	}
	p.retries = builtinClasses().covered(p.Exceptions)
	return p
}

// Delay returns the wait before retry n (n = 1 after the first failed
// attempt) for the uniform draw r in [0,1):
//
//	base_n  = min(WaitMax, WaitMin * Backoff^(n-1))
//	delay_n = max(WaitMin, base_n * (1 - Jitter*r))
//
// It is deterministic: the caller supplies the randomness. Values of n below
// 1 are treated as 1 and r is clamped to [0,1].
func (p *Policy) Delay(n int, r float64) time.Duration {
	if n < 1 {
		n = 1
	}
	if !(r >= 0) { // also catches NaN
		r = 0
	}
	if r > 1 {
		r = 1
	}
	lo, hi := p.WaitMin.Seconds(), p.WaitMax.Seconds()
	base := lo * math.Pow(p.Backoff, float64(n-1))
	if !(base <= hi) { // +Inf and NaN end at the cap too
		base = hi
	}
	d := math.Max(lo, base*(1-p.Jitter*r))
	return time.Duration(d * float64(time.Second))
}

// Retries reports whether the policy's exceptions list covers class, that is
// whether class or one of its ancestors is listed. An empty class is never
// retried.
func (p *Policy) Retries(class string) bool {
	return class != "" && p.retries[class]
}

// Hedges reports whether the policy sends hedges: HedgeDelay > 0 and
// MaxHedges > 0.
func (p *Policy) Hedges() bool { return p.HedgeDelay > 0 && p.MaxHedges > 0 }

// single returns a copy of p limited to one attempt and no hedges, for
// MESH mode and disabled retries.
func (p *Policy) single() *Policy {
	q := *p
	q.Attempts = 1
	q.HedgeDelay, q.HedgeQuantile, q.MaxHedges = 0, 0, 0
	return &q
}
