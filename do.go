package rtx

import (
	"context"
	"time"

	"github.com/athomic-go/rtx/breaker"
	"github.com/athomic-go/rtx/policy"
)

// Do calls fn under the factory's policy called name ("" for the default),
// as the seed's retry decorator does: an error of a class the policy lists
// is retried after the policy's delay, up to its attempts.
//
// Errors are classified as a transport's are: timeouts, refused or reset
// connections, user classes of the factory's snapshot. A per-attempt
// timeout gives each call its own context, cancelled when the call returns.
// Do returns nil on success, fn's error unchanged when it is of no listed
// class or ctx has ended, and a [*RetryError] when the loop gives up. An
// unknown policy name is returned before fn is called. The options that
// apply are the observability ones, [WithCircuitBreakerHook] (called with a
// nil request) and [WithCircuits] (circuits keyed with a nil request: by
// operation name under [breaker.ByHost]). Retry budgets belong to a
// [Transport] and do not apply to Do.
func Do(ctx context.Context, f *policy.Factory, name string, fn func(context.Context) error, opts ...Option) error {
	snap := f.Snapshot()
	pol, err := snap.Policy(name)
	if err != nil {
		return err
	}
	cfg := newConfig(opts)
	if cfg.operation == "" {
		cfg.operation = "do"
	}
	t := &Transport{factory: f, name: name, cfg: cfg, circuits: cfg.circuits}
	t.obs = newObserver(&cfg)
	var out last
	var report func(breaker.Outcome)
	defer reportOutcome(&report, breaker.Excluded) // fn may panic
	for attempt := 1; ; attempt++ {
		var aerr error
		report, aerr = t.admit(nil, snap, pol)
		if aerr != nil {
			if attempt == 1 {
				t.obs.refused(ctx, pol)
				return aerr
			}
			_, err = t.giveUp(ctx, nil, pol, out, ReasonCircuitOpen, aerr)
			return err
		}
		err := call(ctx, pol.Timeout, fn)
		if ctx.Err() != nil {
			reportOutcome(&report, breaker.Excluded)
			return err
		}
		out = last{err: err, class: Classify(snap.Classes(), nil, err), attempt: attempt}
		reportOutcome(&report, outcome(out))
		if err == nil {
			return nil
		}
		if !pol.Retries(out.class) {
			return err
		}
		delay, reason, stop := t.schedule(ctx, nil, snap, pol, out)
		if reason != "" {
			_, err = t.giveUp(ctx, nil, pol, out, reason, stop)
			return err
		}
		t.obs.retry(ctx, nil, pol, out, delay)
		if serr := sleep(ctx, delay); serr != nil {
			_, err = t.giveUp(ctx, nil, pol, out, ReasonCanceled, serr)
			return err
		}
	}
}

// call runs fn once, under a per-attempt timeout when there is one. A call
// that ends by the timeout returns an error that classifies as
// HTTPTimeoutError even if fn returned its context's plain error.
func call(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
	if timeout <= 0 {
		return fn(ctx)
	}
	actx, cancel := context.WithTimeoutCause(ctx, timeout, errAttemptTimeout)
	defer cancel()
	err := fn(actx)
	if err != nil && ctx.Err() == nil && context.Cause(actx) == errAttemptTimeout {
		return &attemptTimeoutError{timeout: timeout}
	}
	return err
}
