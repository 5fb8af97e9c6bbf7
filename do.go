package rtx

import (
	"context"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// Retrier calls functions under a named policy, as the seed's RetryHandler
// does: an error of a class the policy lists is retried after the policy's
// delay, up to its attempts.
//
// Any error fn returns is of class Exception at least, so a policy listing
// Exception retries every error but those wrapped with [Permanent] and the
// context's own; the built-in rules refine it (a timeout is an
// HTTPTimeoutError, a reset connection a ConnectionError), and the
// factory's user classes are tried first. A per-attempt timeout gives each
// call its own context, cancelled when the call returns.
//
// A Retrier has its own circuit and retry budget, keyed by its operation
// name ([WithOperationName], default "do"), made once and shared by its
// calls. The options that apply are the observability ones,
// [WithCircuitBreakerHook] (called with a nil request) and [WithCircuits].
//
// Create one with [NewRetrier]; the zero value is not usable. A Retrier is
// safe for concurrent use.
type Retrier struct {
	e *engine
}

// NewRetrier returns a Retrier under the factory's policy called name (""
// for the default). As for [New], the name is checked per call, and a nil
// factory serves the built-in default policy.
func NewRetrier(f *policy.Factory, name string, opts ...Option) *Retrier {
	r := &Retrier{e: newRetrierEngine(f, name, opts)}
	watch(r, r.e)
	return r
}

// Do calls fn until it succeeds, fails with an error the policy does not
// retry, or the policy gives up. [WithPolicy] on ctx overrides the policy
// name for this call.
//
// Do returns nil on success; fn's error when it is of no listed class, or
// ctx has ended, or it was wrapped with [Permanent] (returned without the
// wrapper); and a [*RetryError] when the loop gives up. An unknown policy
// name, or a circuit open before the first call, is returned before fn is
// called.
func (r *Retrier) Do(ctx context.Context, fn func(context.Context) error) error {
	snap, pol, err := r.e.policyFor(ctx)
	if err != nil {
		return err
	}
	c := call{e: r.e, ctx: ctx, snap: snap, pol: pol, fn: fn}
	c.begin()
	defer c.end()
	_, err = c.run()
	return unwrapPermanent(err)
}

// Do calls fn under the factory's policy called name, as a [Retrier] made
// for this one call would. A loop calling Do often should keep a Retrier
// instead: it makes its instruments, circuit and budget once.
func Do(ctx context.Context, f *policy.Factory, name string, fn func(context.Context) error, opts ...Option) error {
	r := Retrier{e: newRetrierEngine(f, name, opts)} // not watched: it lives for one call
	return r.Do(ctx, fn)
}

func newRetrierEngine(f *policy.Factory, name string, opts []Option) *engine {
	e := newEngine(f, name, "do", opts)
	e.anyError = true
	return e
}

// callFn runs fn once, under a per-attempt timeout when there is one. A
// call that ends by the timeout returns an error that classifies as
// HTTPTimeoutError even if fn returned its context's plain error.
func callFn(ctx context.Context, timeout time.Duration, fn func(context.Context) error) error {
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
