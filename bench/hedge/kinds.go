package hedge

import (
	"fmt"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/timeout"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// Kind is one client under test.
type Kind struct {
	// Name labels the kind's row.
	Name string
	// New returns a client over base whose attempts each end after
	// attemptTimeout (0: no per-attempt timeout). An error means the kind
	// is not available with the code at hand (the row says why).
	New func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error)
}

// The retrying kinds share one retry schedule: 3 attempts in all, delays
// from 1 ms to 10 ms.
const (
	attempts = 3
	waitMin  = time.Millisecond
	waitMax  = 10 * time.Millisecond
)

// FixedDelay is the delay of the fixed-delay hedges: twice the steady
// median, under the steady p95.
const FixedDelay = 4 * time.Millisecond

// Failsafe's adaptive delay: the p95 of the recent attempt durations it
// records, as an exponentially weighted moving quantile that remembers about
// quantileAge executions, hedging only once threshold executions are
// recorded (rtx hedges at its floor until 100 samples; failsafe-go does not
// hedge until then).
const (
	quantile    = 0.95
	quantileAge = 200
	threshold   = 100
)

// NoHedging is the base transport alone, with the per-attempt timeout as
// the client's timeout: one attempt per logical request.
var NoHedging = Kind{Name: "no hedging", New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return &http.Client{Transport: base, Timeout: attemptTimeout}, nil
}}

// FailsafeFixed is failsafe-go's hedge policy with a fixed delay of
// FixedDelay, inside its HTTP retry policy.
var FailsafeFixed = Kind{Name: fmt.Sprintf("failsafe-go, fixed %v", FixedDelay), New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return failsafeClient(base, attemptTimeout, hedgepolicy.NewWithDelay[*http.Response](FixedDelay)), nil
}}

// FailsafeQuantile is failsafe-go's hedge policy with its built-in adaptive
// delay (hedgepolicy.NewWithDelayQuantile: the p95 of recent attempt
// durations), inside its HTTP retry policy.
var FailsafeQuantile = Kind{Name: "failsafe-go, p95 quantile", New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return failsafeClient(base, attemptTimeout, hedgepolicy.NewWithDelayQuantile[*http.Response](quantile, quantileAge, threshold)), nil
}}

// failsafeClient composes, outermost first, failsafe-go's HTTP retry policy
// (the schedule above), the hedge policy and, when set, the per-attempt
// timeout, so that every copy a hedge sends has its own timeout.
func failsafeClient(base http.RoundTripper, attemptTimeout time.Duration, hp hedgepolicy.HedgePolicy[*http.Response]) *http.Client {
	rp := failsafehttp.NewRetryPolicyBuilder().
		WithMaxAttempts(attempts).
		WithBackoff(waitMin, waitMax).
		ReturnLastFailure().
		Build()
	policies := []failsafe.Policy[*http.Response]{rp, hp}
	if attemptTimeout > 0 {
		policies = append(policies, timeout.New[*http.Response](attemptTimeout))
	}
	return &http.Client{Transport: failsafehttp.NewRoundTripper(base, policies...)}
}

// RTXFixed is rtx under the policy "hedge_fixed": hedge_delay_seconds =
// FixedDelay.
var RTXFixed = Kind{Name: fmt.Sprintf("rtx, fixed %v", FixedDelay), New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return rtxClient(base, attemptTimeout, "hedge_fixed")
}}

// RTXQuantile is rtx under the policy "hedge_q95": hedge_quantile = 0.95
// with a 2 ms floor.
var RTXQuantile = Kind{Name: "rtx, hedge_quantile 0.95", New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return rtxClient(base, attemptTimeout, "hedge_q95")
}}

// RTXQuantileLow is rtx under the policy "hedge_q965": hedge_quantile =
// 0.965, which bounds hedges at about failsafe-go's p95 load (5.25%: see
// rtx's latency.effective), to compare p99 at no more extra load.
var RTXQuantileLow = Kind{Name: "rtx, hedge_quantile 0.965", New: func(base http.RoundTripper, attemptTimeout time.Duration) (*http.Client, error) {
	return rtxClient(base, attemptTimeout, "hedge_q965")
}}

// Settings returns the rtx settings document of one rtx kind: the policy
// "hedge_fixed" (hedge_delay_seconds = FixedDelay), "hedge_q95"
// (hedge_quantile = 0.95 over a 2 ms floor) or "hedge_q965" (0.965), each
// with the shared retry
// schedule, max_hedges = 1, the default retry budget and jitter, and
// timeout_seconds when attemptTimeout is set.
func Settings(name string, attemptTimeout time.Duration) string {
	doc := fmt.Sprintf("[default.resilience.retry.policies.%s]\nattempts = %d\nwait_min_seconds = %g\nwait_max_seconds = %g\nmax_hedges = 1\n",
		name, attempts, waitMin.Seconds(), waitMax.Seconds())
	if attemptTimeout > 0 {
		doc += fmt.Sprintf("timeout_seconds = %g\n", attemptTimeout.Seconds())
		doc += "budget_min_retries_per_sec = 1\n" // the ratio governs the outage, not the floor
	}
	switch name {
	case "hedge_fixed":
		doc += fmt.Sprintf("hedge_delay_seconds = %g\n", FixedDelay.Seconds())
	case "hedge_q95":
		doc += fmt.Sprintf("hedge_delay_seconds = 0.002\nhedge_quantile = %g\n", quantile)
	case "hedge_q965":
		doc += "hedge_delay_seconds = 0.002\nhedge_quantile = 0.965\n"
	}
	return doc
}

func rtxClient(base http.RoundTripper, attemptTimeout time.Duration, name string) (*http.Client, error) {
	f := policy.NewFactory(nil)
	if _, err := f.Update([]byte(Settings(name, attemptTimeout)), "toml", name+".toml"); err != nil {
		return nil, err
	}
	if _, err := f.Policy(name); err != nil {
		return nil, err
	}
	return &http.Client{Transport: rtx.New(f, name, rtx.WithBase(base))}, nil
}

// Kinds lists every client kind, in table order.
func Kinds() []Kind {
	return []Kind{NoHedging, FailsafeFixed, FailsafeQuantile, RTXFixed, RTXQuantile, RTXQuantileLow}
}
