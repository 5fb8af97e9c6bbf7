package bench

import (
	"fmt"
	"net/http"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// RTX is rtx's Transport under a policy named "bench" built from p: no
// jitter (the other libraries have none), every HTTPException retried, POST
// retried like the other libraries do, and no retry budget (they have none).
var RTX = Library{Name: "rtx", New: func(base http.RoundTripper, p Policy) (http.RoundTripper, error) {
	f, err := RTXFactory(p, false)
	if err != nil {
		return nil, err
	}
	return rtx.New(f, "bench", rtx.WithBase(base)), nil
}}

// RTXBudget is RTX with rtx's default retry budget (retries up to 20% of
// requests over 10 s, at least 10 a second): not equivalent to the other
// libraries, which have no budget, but what rtx does out of the box.
var RTXBudget = Library{Name: "rtx (budget)", New: func(base http.RoundTripper, p Policy) (http.RoundTripper, error) {
	f, err := RTXFactory(p, true)
	if err != nil {
		return nil, err
	}
	return rtx.New(f, "bench", rtx.WithBase(base)), nil
}}

// RTXFactory returns a factory whose policy "bench" is p in rtx's settings
// layout, with rtx's default retry budget or none.
func RTXFactory(p Policy, budget bool) (*policy.Factory, error) {
	ratio := "budget_ratio = -1"
	if budget {
		ratio = ""
	}
	doc := fmt.Sprintf(`
[default.resilience.retry.policies.bench]
attempts = %d
wait_min_seconds = %g
wait_max_seconds = %g
backoff = 2.0
jitter = 0.0
timeout_seconds = %g
exceptions = ["HTTPException"]
retry_non_idempotent = true
%s
`, p.Attempts, p.WaitMin.Seconds(), p.WaitMax.Seconds(), p.Timeout.Seconds(), ratio)
	f := policy.NewFactory(nil)
	if _, err := f.Update([]byte(doc), "toml", "bench.toml"); err != nil {
		return nil, err
	}
	return f, nil
}
