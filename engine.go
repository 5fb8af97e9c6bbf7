package rtx

import (
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/breaker"
	"github.com/athomic-go/rtx/internal/hostport"
	"github.com/athomic-go/rtx/policy"
)

// engine is what a Transport or a Retrier makes once and shares between
// its calls: the settings, the per-upstream state and the instruments.
type engine struct {
	factory *policy.Factory
	name    string
	cfg     config
	ups     *table // per upstream: budgets, and circuits under the default key
	named   *table // circuits under a custom key; nil under the default key
	obs     *observer
	pools   bodyPools
	giveUps giveUpLog                // the last give-ups, for the debug page
	timers  sync.Pool                // *attemptTimer, for per-attempt timeouts
	epoch   time.Time                // the origin of the engine's clock: see clock
	own     atomic.Pointer[resolved] // the engine's policy in the snapshot last seen

	_    [64]byte                 // last is written by calls to other upstreams: apart from what every call reads
	last atomic.Pointer[upstream] // an upstream found lately: see upstream
	_    [56]byte

	// anyError: every error the attempts return is at least an Exception
	// (a Retrier's functions, a custom base transport).
	anyError bool
}

func newEngine(f *policy.Factory, name, operation string, opts []Option) *engine {
	if f == nil {
		f = policy.NewFactory(nil)
	}
	e := &engine{factory: f, name: name, cfg: newConfig(opts), epoch: time.Now()}
	if e.cfg.operation == "" {
		e.cfg.operation = operation
	}
	limit := e.cfg.maxUpstreams
	if limit <= 0 {
		limit = maxUpstreams
	}
	e.ups = newTable(limit)
	if e.cfg.circuits.Key != nil {
		e.named = newTable(limit)
	}
	e.obs = newObserver(&e.cfg, e.epoch)
	return e
}

// clock returns the engine's time: nanoseconds since the engine was made,
// on the monotonic clock. Every time the engine keeps (budget slices, last
// uses, circuit changes, latency windows) is on this clock, which costs one
// clock reading where time.Now costs two. In a testing/synctest bubble it
// follows the bubble's clock.
func (e *engine) clock() int64 { return int64(time.Since(e.epoch)) }

// wall returns the wall-clock time of an engine time: now's, less the
// engine time since, so that a step of the wall clock (or a suspend) since
// the engine was made does not shift it.
func (e *engine) wall(t int64) time.Time {
	now := time.Now()
	return now.Add(time.Duration(t - e.at(now)))
}

// at returns the engine time of t.
func (e *engine) at(t time.Time) int64 { return int64(t.Sub(e.epoch)) }

// eachCircuit calls fn for every circuit the engine keeps.
func (e *engine) eachCircuit(fn func(*circuit)) {
	visit := func(u *upstream) {
		if c := u.circuit.Load(); c != nil {
			fn(c)
		}
	}
	e.ups.each(visit)
	if e.named != nil {
		e.named.each(visit)
	}
}

// policyFor returns the snapshot in force and the call's policy: the
// name set by WithPolicy on ctx, else the engine's.
func (e *engine) policyFor(ctx context.Context) (*policy.Snapshot, *policy.Policy, error) {
	snap := e.factory.Snapshot()
	name, other := PolicyFrom(ctx)
	if !other {
		if r := e.own.Load(); r != nil && r.snap == snap {
			return snap, r.pol, nil
		}
		name = e.name
	}
	pol, err := snap.Policy(name)
	if err == nil && !other {
		e.own.Store(&resolved{snap, pol}) // once per snapshot
	}
	return snap, pol, err
}

// resolved is a policy of a snapshot.
type resolved struct {
	snap *policy.Snapshot
	pol  *policy.Policy
}

// call is one logical call: everything its attempts share, as grpc-go's
// clientStream holds one RPC's. The policy and snapshot are the ones in
// force when the call began.
type call struct {
	e      *engine
	ctx    context.Context
	snap   *policy.Snapshot
	pol    *policy.Policy
	up     *upstream // the upstream's state
	lane   *lane     // its state under the policy, when it hedges
	budget *budget   // its budget under the policy; nil when off
	now    int64     // when the call began (engine time: see engine.clock), once clocked: see time

	// An HTTP call: the caller's request, what the first attempt sends
	// (an idempotency key added, a captured body), and the capture.
	req      *http.Request
	first    *http.Request
	rp       *replay
	nextBody io.ReadCloser // from GetBody, for the next attempt

	// A function call.
	fn func(context.Context) error

	pinned   bool   // up is pinned: see begin
	clocked  bool   // now is set
	attempts int    // attempts started
	key      keyBuf // scratch for the upstream key
}

// outcome is what one attempt came to.
type outcome struct {
	resp    *http.Response
	err     error
	class   string
	attempt int
	span    attemptSpan // open until the loop moves on
	refused error       // a circuit refused the attempt: nothing was sent

	panicked any  // a hedged attempt's panic, to go on on the caller's goroutine
	landed   bool // a hedged attempt's outcome went to the call already
}

// begin finds the call's upstream state, if the call needs it from the
// start, and counts its first attempt in the budget.
//
// A call whose circuit or latency sketch is the entry's needs it for every
// attempt, and pins it until the call ends: a circuit split between an
// evicted entry and a new one would let a failing upstream through.
//
// A call under a budget alone needs its upstream's state only if an
// attempt fails (or is refused), and then it finds it (see resolve) and
// counts its first attempt exactly. A call that ends on its first attempt
// is counted by sampling (see settle) when its budget's floor is high
// enough for an estimate (see sampled): one in budgetSample, for
// budgetSample first attempts. So a budget counts the calls that fail
// exactly and estimates the others (a relative error of about
// sqrt((budgetSample-1)/n) for n calls a window: 5% at 6,000, 17% at 500,
// where the floor governs), and a first try that succeeds touches no
// per-upstream state 15 times in 16: its cost does not grow with the
// number of upstreams. Such a call does not pin its entry either: the
// worst an eviction under it does is let its retries draw on the old
// budget, as if the entry had gone a moment later.
func (c *call) begin() {
	c.pinned = c.pol.Hedges() || c.e.named == nil && c.snap.Breaker().Enabled
	switch {
	case c.pinned:
		c.up = c.e.upstream(c.req, &c.key, c.time(), true)
		if c.pol.Hedges() {
			c.lane = c.up.lane(c.pol)
		}
		c.count(1, c.now)
	case budgetEnabled(c.pol) && !sampled(c.pol):
		c.resolve()
	}
}

// sampled reports whether p's budget counts the calls that end on their
// first attempt by sampling (see begin): when one sampled call moves what
// the budget allows by at most a twentieth of its floor (the defaults: 3.2
// retries of 100). With a lower floor a window of few calls is decided by
// the ratio alone, and an estimate of them would decide it by luck: every
// call is counted.
func sampled(p *policy.Policy) bool {
	return p.BudgetRatio*budgetSample*20 <= p.BudgetMinRetriesPerSec*p.BudgetWindow.Seconds()
}

// budgetSample is one over the share of calls ended on their first attempt
// that a budget counts, each for budgetSample (see begin).
const budgetSample = 16

// time returns the engine time the call began at, read at its first need:
// a first try that succeeds may need none. Hedged calls read it in begin,
// before their attempts run concurrently.
func (c *call) time() int64 {
	if !c.clocked {
		c.now, c.clocked = c.e.clock(), true
	}
	return c.now
}

// count counts the call's first attempt in its upstream's budget, w times,
// at now.
func (c *call) count(w int64, now int64) {
	if budgetEnabled(c.pol) {
		c.budget = c.up.budgetFor(c.pol)
		c.budget.add(now, w, 0)
	}
}

// resolve finds the upstream state of a call that began without it, and
// counts its first attempt exactly: the call failed or was refused, or its
// budget is not sampled.
func (c *call) resolve() {
	if c.up == nil {
		c.late(1)
	}
}

// settle counts a call that ended on its first attempt without its
// upstream's state, by sampling (see begin).
func (c *call) settle() {
	if c.up == nil && budgetEnabled(c.pol) && mrand.Uint32()%budgetSample == 0 {
		c.late(budgetSample)
	}
}

// late finds the upstream state of a call that began without it, unpinned,
// and counts its first attempt w times, now.
func (c *call) late(w int64) {
	now := c.e.clock()
	c.up = c.e.upstream(c.req, &c.key, now, false)
	c.count(w, now)
}

// upstream returns the state of req's upstream (a Retrier's operation when
// req is nil), pinned if pin is set (see begin); buf is scratch for its key.
//
// A client often sends every request to one upstream (an SDK's client to
// its API): the engine remembers one entry it found lately, with the URL
// host and scheme its key was made from, and a request to the same is
// served without making its key or looking it up. Calls to other
// upstreams write that memory only now and then (one in eight), so that
// calls to many upstreams on many cores do not contend for it.
func (e *engine) upstream(req *http.Request, buf *keyBuf, now int64, pin bool) *upstream {
	if req == nil {
		return e.ups.lookup(append(buf[:0], e.cfg.operation...), origin{}, now, pin)
	}
	from := origin{host: req.URL.Host, tls: req.URL.Scheme == "https"}
	if u := e.last.Load(); u != nil && u.host == from.host && u.tls == from.tls && u.hold(pin) {
		u.touch(now)
		return u
	}
	u := e.ups.lookup(hostport.Append(buf[:0], req.URL), from, now, pin)
	if u.host == from.host && u.tls == from.tls && mrand.Uint32()%8 == 0 {
		e.last.Store(u)
	}
	return u
}

// end lets the call's upstream state go: it may be evicted again.
func (c *call) end() {
	if c.pinned {
		c.up.unpin()
	}
}

// run drives the call's attempts to an answer: one decide step after each
// failed attempt says retry (after a delay) or stop, and why.
func (c *call) run() (*http.Response, error) {
	if c.hedging() {
		// Hedged attempts run on goroutines that may outlive this frame:
		// only this path moves the call to the heap.
		h := *c
		return h.runHedged()
	}
	var last outcome // the last failed attempt's, once there is one
	for {
		var out outcome
		if err := c.attempt(&out); err != nil { // the body of the next attempt could not be made
			return c.giveUp(last, ReasonBody, err)
		}
		if out.refused != nil {
			return c.refused(last, out.refused)
		}
		if c.final(&out) {
			if out.attempt == 1 {
				c.settle()
			}
			out.span.end()
			return out.resp, out.err
		}
		var resp *http.Response
		var err error
		if last, resp, err = c.retry(out); last.attempt == 0 {
			return resp, err
		}
	}
}

// final reports whether an attempt's outcome ends the call as it is: the
// caller's cancellation is never retried; neither is an answer of no
// listed class.
func (c *call) final(out *outcome) bool {
	return c.ctx.Err() != nil || !c.pol.Retries(out.class)
}

// refused ends a call whose next attempt a circuit refused: at once with
// the refusal before any attempt, else giving up on the last outcome.
func (c *call) refused(out outcome, refusal error) (*http.Response, error) {
	if out.attempt == 0 {
		c.resolve() // counted as a first attempt, as a call whose circuit is its upstream's is in begin
		c.e.obs.refused(c.ctx, c.pol)
		return nil, refusal
	}
	return c.giveUp(out, ReasonCircuitOpen, refusal)
}

// retry follows a failure of a listed class through the decide step: it
// waits out the delay and returns the outcome discarded (its status kept
// as the error), or, when the call stops, a zero outcome with what the
// call returns.
func (c *call) retry(out outcome) (outcome, *http.Response, error) {
	delay, reason, stop := c.decide(out)
	if reason == "" {
		c.e.obs.retry(c.ctx, c.req, c.pol, out, delay)
		out = c.discard(out)
		if stop = sleep(c.ctx, delay); stop == nil {
			return out, nil, nil
		}
		reason = ReasonCanceled
	}
	resp, err := c.giveUp(out, reason, stop)
	return outcome{}, resp, err
}

// attempt makes the next attempt on the call's goroutine, through the
// circuit breaker hook and the attempt's circuit. Its error is one of the
// body of the next attempt.
func (c *call) attempt(out *outcome) error {
	req, err := c.nextRequest()
	if err != nil {
		return err
	}
	if c.hookOpen() {
		closeBody(req)
		out.refused = errHookOpen()
		return nil
	}
	c.attempts++
	c.attemptIn(c.ctx, req, c.attempts, nil, out)
	if out.refused != nil {
		c.attempts--
	}
	return nil
}

// attemptIn makes attempt n under ctx (the call's, or a hedged attempt's
// own, f), through its circuit. It touches nothing of the call but reads,
// so attempts may run concurrently. A hedged attempt hands its outcome to
// the call from inside the circuit's step and counts for what the call
// says: a loser's outcome is excluded.
func (c *call) attemptIn(ctx context.Context, req *http.Request, n int, f *flight, out *outcome) {
	cir, u := c.circuit()
	if cir == nil {
		c.send(ctx, req, n, f, out)
		return
	}
	if u != c.up {
		defer u.unpin() // a circuit under a custom key: kept while the attempt uses it
	}
	if gen, clean := cir.clean(); clean && f == nil {
		// A clean circuit lets everything through and changes only if an
		// attempt fails: gobreaker is asked after the attempt, and only
		// when its outcome may change the count (see report).
		c.send(ctx, req, n, nil, out)
		cir.report(gen, c.counts(out), c.e.cfg.circuits.OnStateChange)
		return
	}
	var panicked any
	var counts error
	sent := false
	_, err := cir.cb.Execute(func() (_ struct{}, err error) {
		defer func() {
			// A panic (in the base, a user class) counts neither way, and
			// goes on once the circuit has its outcome: a half-open circuit
			// must not wait for it forever, nor reopen for a bug.
			if p := recover(); p != nil {
				panicked, err = p, errExcluded
			}
		}()
		sent = true
		c.send(ctx, req, n, f, out)
		counts = c.counts(out)
		if f != nil {
			counts = f.land(out)
		}
		return struct{}{}, counts
	})
	cir.flush(c.e.cfg.circuits.OnStateChange)
	if panicked != nil {
		panic(panicked)
	}
	if !sent {
		closeBody(req)
		out.refused = &CircuitOpenError{Circuit: cir.name, Err: err}
	}
}

// counts is what an attempt counts for in its circuit: classified failures
// count against it, answers for it, the caller's cancellation and other
// errors neither way.
func (c *call) counts(out *outcome) error {
	switch {
	case c.ctx.Err() != nil:
		return errExcluded
	case out.class != "":
		return errFailure
	case out.err != nil:
		return errExcluded
	}
	return nil
}

// send makes attempt n under ctx and classifies what it came to, in out.
func (c *call) send(ctx context.Context, req *http.Request, n int, f *flight, out *outcome) {
	*out = outcome{attempt: n}
	if c.fn != nil {
		out.err = callFn(ctx, c.pol.Timeout, c.fn)
		out.class = c.classify(out)
		return
	}
	var start int64 // for the duration metric, when an SDK listens
	timed := c.e.obs.timed(ctx)
	switch {
	case timed && n == 1:
		start = c.time()
	case timed:
		start = c.e.clock()
	}
	sent, span := c.e.obs.startAttempt(ctx, req, c.pol, n, f != nil && f.hedge, start, timed)
	out.span = span
	out.resp, out.err = c.e.send(sent, c.pol.Timeout)
	if f != nil {
		f.baseReturned()
		if out.resp != nil { // the attempt's context lives until its body is closed
			out.resp.Body = cancelOnClose(out.resp.Body, func(error) { f.cancel() })
		}
	}
	out.class = c.classify(out)
	c.e.obs.attemptDone(sent, c.pol, out)
}

// classify returns the class of an attempt's outcome; the caller's
// cancellation has none.
func (c *call) classify(out *outcome) string {
	switch {
	case c.ctx.Err() != nil:
		return ""
	case c.e.anyError:
		return classifyAny(c.snap.Classes(), out.resp, out.err)
	}
	return Classify(c.snap.Classes(), out.resp, out.err)
}

// circuit returns the circuit the next attempt goes through and the entry
// that holds it, or nil when the snapshot has circuits off.
func (c *call) circuit() (*circuit, *upstream) {
	b := c.snap.Breaker()
	if !b.Enabled {
		return nil, nil
	}
	u := c.up
	name := "" // read only when the settings name circuits: it lies outside the entry's first lines
	if c.e.named != nil {
		name := c.e.cfg.circuits.Key(breaker.Target{Request: c.req, Policy: policyName(c.pol), Operation: c.e.cfg.operation})
		u = c.e.named.acquire([]byte(name), c.time()) // the call's start: coarse is enough to order last uses; unpinned by attemptIn, or at once by circuitOpen
	}
	if len(b.Circuits) > 0 {
		name = u.key
	}
	return u.circuitFor(b.Circuit(name), c.snap != c.e.factory.Snapshot(), c.e.epoch), u
}

// hookOpen asks the circuit breaker hook, if any, whether the circuit is
// open (a Retrier's call asks with a nil request).
func (c *call) hookOpen() bool {
	hook := c.e.cfg.breakerHook
	return hook != nil && hook(c.req)
}

// errHookOpen is the refusal of an attempt by the circuit breaker hook.
func errHookOpen() error {
	return &CircuitOpenError{Circuit: "circuit breaker hook", Err: gobreaker.ErrOpenState}
}

// circuitOpen reports whether the next attempt would be refused, so that a
// retry never sleeps toward an open circuit.
func (c *call) circuitOpen() bool {
	if c.hookOpen() {
		return true
	}
	cir, u := c.circuit()
	if u != nil && u != c.up {
		defer u.unpin()
	}
	return cir != nil && cir.peek(c.e.cfg.circuits.OnStateChange) == gobreaker.StateOpen
}

// decide says what follows a failed attempt of a class the policy lists:
// the delay before the next attempt, or the reason the call stops and the
// error that stopped it, if any. A retry it allows is withdrawn from the
// budget.
func (c *call) decide(out outcome) (delay time.Duration, reason Reason, stop error) {
	c.resolve()
	switch {
	case c.attempts >= c.pol.Attempts:
		return 0, ReasonAttempts, nil
	case c.first != nil && !c.pol.RetryNonIdempotent && !idempotent(c.first) && !(out.err != nil && neverSent(out.err)):
		return 0, ReasonNotIdempotent, nil
	}
	delay = c.pol.Delay(c.attempts, mrand.Float64())
	now := time.Now()
	if hint, ok := retryAfter(out.resp, now); ok {
		if hint > c.pol.WaitMax {
			return 0, ReasonRetryAfter, nil
		}
		delay = max(delay, hint)
	}
	if dl, ok := c.ctx.Deadline(); ok && dl.Sub(now) < delay {
		return 0, ReasonDeadline, context.DeadlineExceeded
	}
	if c.circuitOpen() {
		return 0, ReasonCircuitOpen, ErrCircuitOpen
	}
	if err := c.rewind(); err != nil {
		return 0, ReasonBody, err
	}
	if c.budget != nil && !c.budget.withdraw(c.pol, c.e.at(now)) {
		return 0, ReasonBudget, ErrBudgetExhausted
	}
	return delay, "", nil
}

// giveUp ends a call whose last failure is of a listed class: a response
// is handed back as is; an error becomes a *RetryError.
func (c *call) giveUp(out outcome, reason Reason, stop error) (*http.Response, error) {
	closeReader(c.nextBody)
	c.nextBody = nil
	out.attempt = c.attempts // attempts made, hedges included; not the number of the last to land
	c.e.obs.fail(c.ctx, c.req, c.pol, out, reason)
	c.e.giveUps.record(c, out, reason)
	out.span.end()
	if out.resp != nil {
		return out.resp, nil
	}
	return nil, &RetryError{Policy: policyName(c.pol), Attempts: out.attempt, Class: out.class, Reason: reason, Err: joinStop(out.err, stop)}
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

// permanentError marks an error that is never retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that no policy retries it, whatever its class:
// a Retrier's function returns it for an error it knows to be final, as
// may a Transport's base. The call ends at once with err itself (the
// wrapper is removed when it is the error returned; errors.Is and
// errors.As see err through it anyway). Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// unwrapPermanent removes the Permanent wrapper err is, if it is one: the
// caller gets the error itself.
func unwrapPermanent(err error) error {
	if p, ok := err.(*permanentError); ok {
		return p.err
	}
	return err
}

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
