package rtx

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/breaker"
	"github.com/athomic-go/rtx/policy"
)

// Transport is an [http.RoundTripper] that retries requests under a named
// policy of a [policy.Factory].
//
// Each request reads the factory's snapshot once and keeps it to the end,
// so a live update applies from the next request on. Bodies with GetBody
// are replayed through it; other bodies up to a cap are captured into
// pooled buffers as they are first sent; larger ones are sent once.
// Discarded responses are drained (up to 64 KiB) and closed so their
// connections are reused.
//
// A Transport must be created with [New]; its zero value is not usable. It
// is safe for concurrent use.
type Transport struct {
	factory  *policy.Factory
	name     string
	cfg      config
	pools    bodyPools
	circuits *breaker.Set // used while the snapshot enables circuits
	budgets  budgets
	obs      *observer
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that retries under the factory's policy called
// name ("" for the default policy). The name is checked per request, since
// live updates may add or remove policies: requests under an unknown name
// fail before any I/O. A nil factory serves the built-in default policy.
func New(f *policy.Factory, name string, opts ...Option) *Transport {
	if f == nil {
		f = policy.NewFactory(nil)
	}
	t := &Transport{factory: f, name: name, cfg: newConfig(opts)}
	t.circuits = t.cfg.circuits
	if t.circuits == nil {
		t.circuits = breaker.New()
	}
	if t.cfg.base == nil {
		t.cfg.base = cleanhttp.DefaultPooledTransport()
	}
	if t.cfg.operation == "" {
		t.cfg.operation = "http"
	}
	t.obs = newObserver(&t.cfg)
	t.obs.watchCircuits(t.circuits)
	return t
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.cfg.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// RoundTrip sends req, retrying under the policy in force. It never
// modifies req, always closes its body, and returns a response or an error.
// See the package documentation for what is retried and what is returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil {
		closeBody(req)
		return nil, errors.New("rtx: nil Request.URL")
	}
	name := t.name
	if n, ok := PolicyFrom(req.Context()); ok {
		name = n
	}
	snap := t.factory.Snapshot()
	pol, err := snap.Policy(name)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	return t.roundTrip(req, snap, pol)
}

// last is the outcome of the latest attempt of a loop.
type last struct {
	resp    *http.Response
	err     error
	class   string
	attempt int
	span    attemptSpan // open until the loop moves on
}

func (t *Transport) roundTrip(req *http.Request, snap *policy.Snapshot, pol *policy.Policy) (*http.Response, error) {
	ctx := req.Context()
	hasBody := req.Body != nil && req.Body != http.NoBody
	first := req // passed through untouched when nothing needs to change
	var rp *replay
	if pol.Attempts > 1 {
		if pol.IdempotencyKey && !idempotent(req) {
			first = withIdempotencyKey(req)
		}
		if hasBody && req.GetBody == nil && t.cfg.maxReplay > 0 && req.ContentLength <= t.cfg.maxReplay {
			rp = t.pools.newReplay(req.Body, t.cfg.maxReplay)
			defer rp.done()
			first = withBody(first, rp.reader())
		}
	}
	report, err := t.admit(first, snap, pol)
	if err != nil {
		closeBody(first)
		t.obs.refused(ctx, pol)
		return nil, err
	}
	// A panic (in the base, a user class) must not leave the circuit
	// waiting for an outcome: a half-open circuit would stay stuck.
	defer reportOutcome(&report, breaker.Excluded)
	now := time.Now() // one clock read serves the budget and the first attempt
	var bud *budget
	if budgetEnabled(pol) {
		bud = t.budgets.get(pol, req.URL.Host)
		bud.first(now)
	}
	areq := first
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			now = time.Now()
		}
		sent, span := t.obs.startAttempt(areq, pol, attempt, now)
		resp, err := t.send(sent, pol.Timeout)
		out := last{resp: resp, err: err, attempt: attempt, span: span}
		if ctx.Err() != nil { // the caller's cancellation is never retried
			reportOutcome(&report, breaker.Excluded)
			t.obs.attemptDone(sent, pol, out)
			out.span.end()
			return resp, err
		}
		out.class = Classify(snap.Classes(), resp, err)
		reportOutcome(&report, outcome(out))
		t.obs.attemptDone(sent, pol, out)
		if !pol.Retries(out.class) {
			out.span.end()
			return resp, err
		}
		delay, reason, stop := t.schedule(ctx, first, snap, pol, out)
		if reason != "" {
			return t.giveUp(ctx, req, pol, out, reason, stop)
		}
		var next io.ReadCloser
		if hasBody {
			switch {
			case rp != nil && rp.replayable():
			case rp == nil && req.GetBody != nil:
				b, gerr := req.GetBody()
				if gerr != nil {
					return t.giveUp(ctx, req, pol, out, ReasonBody, gerr)
				}
				next = b
			default:
				return t.giveUp(ctx, req, pol, out, ReasonBody, errBodyNotReplayed)
			}
		}
		if bud != nil && !bud.withdraw(pol, time.Now()) {
			closeReader(next)
			return t.giveUp(ctx, req, pol, out, ReasonBudget, ErrBudgetExhausted)
		}
		t.obs.retry(ctx, req, pol, out, delay)
		out.span.end()
		out.span = attemptSpan{}
		if resp != nil {
			drain(resp.Body)
			out.resp, out.err = nil, statusError(resp.StatusCode)
		}
		if serr := sleep(ctx, delay); serr != nil {
			closeReader(next)
			return t.giveUp(ctx, req, pol, out, ReasonCanceled, serr)
		}
		if rp != nil {
			// The earlier attempt may have read on during the delay, past
			// the cap: ask again now that reader() has detached it.
			next = rp.reader()
			if !rp.replayable() {
				closeReader(next)
				return t.giveUp(ctx, req, pol, out, ReasonBody, errBodyNotReplayed)
			}
		}
		areq = first
		if next != nil {
			areq = withBody(first, next)
		}
		if report, err = t.admit(areq, snap, pol); err != nil {
			closeReader(next)
			return t.giveUp(ctx, req, pol, out, ReasonCircuitOpen, err)
		}
	}
}

// schedule decides what follows a failed attempt of a class the policy
// lists: the delay before the next attempt, or the reason the loop stops
// and the error that stopped it, if any. req is nil for Do.
func (t *Transport) schedule(ctx context.Context, req *http.Request, snap *policy.Snapshot, pol *policy.Policy, out last) (delay time.Duration, reason string, stop error) {
	switch {
	case out.attempt >= pol.Attempts:
		return 0, ReasonAttempts, nil
	case req != nil && !pol.RetryNonIdempotent && !idempotent(req) && !(out.err != nil && neverSent(out.err)):
		return 0, ReasonNotIdempotent, nil
	}
	delay = pol.Delay(out.attempt, mrand.Float64())
	if hint, ok := retryAfter(out.resp, time.Now()); ok {
		if hint > pol.WaitMax {
			return 0, ReasonRetryAfter, nil
		}
		delay = max(delay, hint)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
		return 0, ReasonDeadline, context.DeadlineExceeded
	}
	if t.circuitOpen(req, snap, pol) {
		return 0, ReasonCircuitOpen, ErrCircuitOpen
	}
	return delay, "", nil
}

// admit consults the circuit breaker hook and the attempt's circuit. It
// returns the function that reports the attempt's outcome to the circuit
// (nil when circuits are off), or an error matching ErrCircuitOpen.
func (t *Transport) admit(req *http.Request, snap *policy.Snapshot, pol *policy.Policy) (func(breaker.Outcome), error) {
	if t.cfg.breakerHook != nil && t.cfg.breakerHook(req) {
		return nil, &CircuitOpenError{Circuit: "circuit breaker hook", Err: gobreaker.ErrOpenState}
	}
	name, b, ok := t.circuit(req, snap, pol)
	if !ok {
		return nil, nil
	}
	report, err := t.circuits.Allow(name, b)
	if err != nil {
		return nil, &CircuitOpenError{Circuit: name, Err: err}
	}
	return report, nil
}

// circuitOpen reports whether the next attempt would be refused, so that a
// retry never sleeps toward an open circuit.
func (t *Transport) circuitOpen(req *http.Request, snap *policy.Snapshot, pol *policy.Policy) bool {
	if t.cfg.breakerHook != nil && t.cfg.breakerHook(req) {
		return true
	}
	name, b, ok := t.circuit(req, snap, pol)
	return ok && t.circuits.State(name, b) == gobreaker.StateOpen
}

// circuit names the attempt's circuit and its settings; ok is false when
// the snapshot has circuits off or the transport has none.
func (t *Transport) circuit(req *http.Request, snap *policy.Snapshot, pol *policy.Policy) (name string, b policy.Breaker, ok bool) {
	b = snap.Breaker()
	if !b.Enabled || t.circuits == nil {
		return "", b, false
	}
	return t.circuits.Key(breaker.Target{Request: req, Policy: policyName(pol), Operation: t.cfg.operation}), b, true
}

// outcome is what an attempt counts for in its circuit: classified failures
// count against it, answers for it, other errors neither way.
func outcome(out last) breaker.Outcome {
	switch {
	case out.class != "":
		return breaker.Failure
	case out.err != nil:
		return breaker.Excluded
	}
	return breaker.Success
}

// reportOutcome reports o to the circuit once: later calls do nothing.
func reportOutcome(report *func(breaker.Outcome), o breaker.Outcome) {
	if r := *report; r != nil {
		*report = nil
		r(o)
	}
}

// giveUp ends a loop whose last failure is of a listed class: a response is
// handed back as is; an error becomes a *RetryError.
func (t *Transport) giveUp(ctx context.Context, req *http.Request, pol *policy.Policy, out last, reason string, stop error) (*http.Response, error) {
	t.obs.fail(ctx, req, pol, out, reason)
	out.span.end()
	if out.resp != nil {
		return out.resp, nil
	}
	return nil, &RetryError{Policy: policyName(pol), Attempts: out.attempt, Class: out.class, Reason: reason, Err: joinStop(out.err, stop)}
}

// send makes one attempt. With a per-attempt timeout, the attempt runs under
// its own context, which is cancelled when the timeout fires before the
// response headers arrive, and otherwise lives until the body is closed.
func (t *Transport) send(req *http.Request, timeout time.Duration) (*http.Response, error) {
	if timeout <= 0 {
		return checked(t.cfg.base.RoundTrip(req))
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(timeout, func() { cancel(errAttemptTimeout) })
	resp, err := checked(t.cfg.base.RoundTrip(req.WithContext(ctx)))
	if fired := !timer.Stop(); fired || err != nil {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		cancel(nil)
		switch {
		case fired && req.Context().Err() == nil:
			err = &attemptTimeoutError{timeout: timeout}
		case err == nil: // fired as the caller's context ended
			err = req.Context().Err()
		}
		return nil, err
	}
	resp.Body = cancelOnClose(resp.Body, cancel)
	return resp, nil
}

// checked enforces "a response xor an error" on the base transport's result.
func checked(resp *http.Response, err error) (*http.Response, error) {
	switch {
	case err != nil && resp != nil:
		if resp.Body != nil {
			resp.Body.Close()
		}
		return nil, err
	case err == nil && resp == nil:
		return nil, errors.New("rtx: base transport returned neither a response nor an error")
	case err == nil && resp.Body == nil:
		resp.Body = http.NoBody // as http.Client does
	}
	return resp, err
}

var errAttemptTimeout = errors.New("rtx: per-attempt timeout")

// attemptTimeoutError reports a per-attempt timeout. It is a net.Error
// whose Timeout is true and it matches context.DeadlineExceeded, as
// http.Client's own timeouts do.
type attemptTimeoutError struct {
	timeout time.Duration
}

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("rtx: attempt timed out after %v", e.timeout)
}
func (e *attemptTimeoutError) Timeout() bool   { return true }
func (e *attemptTimeoutError) Temporary() bool { return true }
func (e *attemptTimeoutError) Unwrap() error   { return context.DeadlineExceeded }

// statusError stands for a response that was drained before the loop
// ended on an error (a cancellation or open circuit during a delay).
type statusError int

func (s statusError) Error() string {
	return fmt.Sprintf("last response: %d %s", int(s), http.StatusText(int(s)))
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelCauseFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel(nil)
	return err
}

// cancelWriterBody keeps io.Writer visible for 101 Switching Protocols.
type cancelWriterBody struct {
	cancelBody
	io.Writer
}

func cancelOnClose(rc io.ReadCloser, cancel context.CancelCauseFunc) io.ReadCloser {
	if w, ok := rc.(io.ReadWriteCloser); ok {
		return &cancelWriterBody{cancelBody{w, cancel}, w}
	}
	return &cancelBody{rc, cancel}
}

// withBody returns a shallow copy of r with another body. Headers stay
// shared: neither rtx nor a base transport may modify them.
func withBody(r *http.Request, body io.ReadCloser) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	r2.Body = body
	return r2
}

// withIdempotencyKey returns a copy of r carrying a new Idempotency-Key.
func withIdempotencyKey(r *http.Request) *http.Request {
	r2 := r.Clone(r.Context())
	r2.Body = r.Body // Clone shares it; say so
	if r2.Header == nil {
		r2.Header = http.Header{}
	}
	r2.Header.Set("Idempotency-Key", rand.Text())
	return r2
}

func drain(body io.ReadCloser) {
	if body == nil {
		return
	}
	io.CopyN(io.Discard, body, maxDrain)
	body.Close()
}

func closeBody(r *http.Request) { closeReader(r.Body) }

func closeReader(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}

// sleep waits for d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func policyName(p *policy.Policy) string {
	if p.Name == "" {
		return "default"
	}
	return p.Name
}
