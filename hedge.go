package rtx

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// AllowHedging lets a [Retrier] hedge: under a policy that sets
// hedge_delay_seconds, a call still running after the delay gets a second
// one, concurrently, each with its own context; the first success wins and
// the others' contexts are cancelled. Only give it when fn is safe to run
// twice at once. Transports hedge whatever their policy says (idempotent
// requests only), so this option changes nothing for them.
func AllowHedging() Option {
	return optionFunc(func(c *config) { c.hedgeCalls = true })
}

// hedging reports whether the call may send hedges: its policy hedges,
// and it is a request that may be resent (the idempotency gate) or a
// function the caller allowed to run twice.
func (c *call) hedging() bool {
	if !c.pol.Hedges() || c.pol.Attempts < 2 {
		return false
	}
	if c.fn != nil {
		return c.e.cfg.hedgeCalls
	}
	return c.pol.RetryNonIdempotent || idempotent(c.first)
}

// flight is one attempt in flight in a hedged call.
type flight struct {
	n      int
	hedge  bool
	start  int64 // engine time (see engine.clock)
	cancel context.CancelFunc

	// state guards the cancellation of a loser against net/http's idle
	// pool: running, answered (its first response byte arrived), or
	// cancelled. See answered.
	state    atomic.Int32
	sent     atomic.Bool   // returned is closed
	returned chan struct{} // closed when the attempt's base RoundTrip returned

	// verdict is what the attempt counts for in its circuit, decided by
	// the call once it has seen the outcome: its own count for an outcome
	// the call took, excluded for a loser's. Buffered: never blocks.
	verdict chan error
	results chan<- landed
}

const (
	flightRunning int32 = iota
	flightAnswered
	flightCancelled
)

// answered is the attempt's httptrace.GotFirstResponseByte. net/http puts
// a connection whose answer has no body back in its idle pool before it
// hands the answer over; cancelling the request's context in that window
// closes the connection under whichever request took it next. So a loser
// is cancelled only while no byte of its answer has arrived, and if the
// cancellation wins the race, this hook holds the connection's read loop
// until the cancelled RoundTrip has returned, having closed the
// connection, which then never reaches the pool. The wait ends when the
// base RoundTrip returns, before anything else of the attempt runs.
func (f *flight) answered() {
	// A second call (net/http's HTTP/2 client may resend a stream inside
	// one RoundTrip, after a 1xx) finds the attempt answered: it goes on.
	if !f.state.CompareAndSwap(flightRunning, flightAnswered) && f.state.Load() == flightCancelled {
		<-f.returned
	}
}

// baseReturned marks the attempt's base RoundTrip as returned (once).
func (f *flight) baseReturned() {
	if f != nil && f.sent.CompareAndSwap(false, true) {
		close(f.returned)
	}
}

// abandon cancels a loser unless its answer is arriving; either way its
// outcome is closed by whoever collects it.
func (f *flight) abandon() {
	if f.state.CompareAndSwap(flightRunning, flightCancelled) {
		f.cancel()
	}
}

type landed struct {
	out outcome
	f   *flight
}

// runHedged drives a call whose policy hedges: after each attempt starts,
// a hedge follows every hedge delay while the attempt has no answer, up to
// max_hedges in flight beyond the first and attempts in all, each drawn
// from the retry budget. The first answer the policy would not retry wins;
// the others are cancelled and closed, their circuit outcome excluded.
// Failures of a listed class let the attempts in flight go on; when none
// is left, the decide step schedules a retry as usual.
func (c *call) runHedged() (*http.Response, error) {
	results := make(chan landed, c.pol.Attempts) // nobody blocks on sending
	var inflight []*flight
	var out outcome // the latest failure of a listed class
	hedges, wonHedge := 0, false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	defer func() {
		c.e.obs.hedged(c.ctx, c.pol, hedges, wonHedge)
	}()
	defer func() {
		// A panic of the call's own (the breaker hook, GetBody) must not
		// leave its attempts waiting for a verdict, holding a circuit's
		// probe, a connection and the upstream.
		if p := recover(); p != nil {
			c.abandon(inflight, results)
			panic(p)
		}
	}()

	for {
		f, next, err := c.launch(results, false)
		if err != nil {
			return c.giveUp(out, ReasonBody, err)
		}
		if next.refused != nil {
			return c.refused(out, next.refused)
		}
		inflight = append(inflight, f)
		timer.Reset(c.hedgeDelay())
		armed := true
		for len(inflight) > 0 {
			select {
			case l := <-results:
				inflight = remove(inflight, l.f)
				c.observeLatency(l.f, l.out)
				if l.out.panicked != nil { // on the caller's goroutine, as an unhedged attempt's
					l.f.verdict <- errExcluded
					c.abandon(inflight, results)
					inflight = nil
					c.discard(out)
					panic(l.out.panicked)
				}
				if l.out.refused != nil { // a half-open circuit had its probe already
					c.attempts--
					if l.f.hedge && c.budget != nil {
						c.budget.refund(c.e.clock())
					}
					if len(inflight) == 0 {
						return c.refused(out, l.out.refused)
					}
					break
				}
				l.f.verdict <- c.counts(&l.out)
				if c.final(&l.out) {
					c.abandon(inflight, results)
					inflight = nil
					if out.attempt != 0 {
						c.discard(out)
					}
					wonHedge = l.f.hedge
					l.out.span.end()
					return l.out.resp, l.out.err
				}
				if out.attempt != 0 {
					c.discard(out)
				}
				out = l.out
			case <-timer.C:
				armed = false
				if !c.mayHedge(len(inflight)) {
					break
				}
				if c.budget != nil && !c.budget.withdraw(c.pol, c.e.clock()) {
					break // an exhausted budget sends no hedge, and cancels none
				}
				f, h, err := c.launch(results, true)
				if err != nil || h.refused != nil {
					if c.budget != nil {
						c.budget.refund(c.e.clock())
					}
					break
				}
				hedges++
				inflight = append(inflight, f)
			}
			// While hedges may still go, the timer runs: a tick that found
			// the body not yet captured, the budget spent or every slot
			// taken looks again one delay later.
			if !armed && len(inflight) > 0 && c.attempts < c.pol.Attempts && c.ctx.Err() == nil {
				timer.Reset(c.hedgeDelay())
				armed = true
			}
		}
		if armed && !timer.Stop() {
			<-timer.C
		}
		var resp *http.Response
		if out, resp, err = c.retry(out); out.attempt == 0 {
			return resp, err
		}
	}
}

// mayHedge reports whether a hedge may go now, with n attempts in flight.
func (c *call) mayHedge(n int) bool {
	return c.ctx.Err() == nil && c.attempts < c.pol.Attempts && n <= c.pol.MaxHedges && c.hedgeReady()
}

// discard ends an outcome that will not be handed back: its span ends and
// its response is drained and closed, leaving its status as the error.
func (c *call) discard(out outcome) outcome {
	out.span.end()
	out.span = attemptSpan{}
	if out.resp != nil {
		drain(out.resp.Body)
		out.resp, out.err = nil, statusError(out.resp.StatusCode)
	}
	return out
}

// abandon cancels the attempts still in flight and leaves a goroutine to
// collect their outcomes: each counts neither way in its circuit, and its
// response is closed after its context is cancelled, so that a streaming
// body cannot hold the goroutine (the connection then closes; a body-less
// answer's connection went back to the pool before its RoundTrip
// returned). The upstream stays pinned until the last one lands.
func (c *call) abandon(inflight []*flight, results <-chan landed) {
	if len(inflight) == 0 {
		return
	}
	for _, f := range inflight {
		f.abandon()
	}
	c.up.pin() // pinned by the call already: cannot fail
	go func(n int) {
		defer c.up.unpin()
		for range n {
			l := <-results
			l.f.verdict <- errExcluded
			c.observeLatency(l.f, l.out)
			l.out.span.end()
			if l.out.resp != nil {
				l.f.cancel()
				l.out.resp.Body.Close()
			}
		}
	}(len(inflight))
}

func remove(fs []*flight, f *flight) []*flight {
	for i, g := range fs {
		if g == f {
			return append(fs[:i], fs[i+1:]...)
		}
	}
	return fs
}

// hedgeReady reports whether a hedge could send the whole body now:
// without waiting for the first attempt to finish reading it.
func (c *call) hedgeReady() bool {
	switch {
	case c.req == nil || !hasBody(c.req):
		return true
	case c.rp != nil:
		return c.rp.complete()
	}
	return c.req.GetBody != nil
}

// launch starts the next attempt on its own goroutine, under a context of
// its own, and returns its flight; its outcome arrives on results. A
// refusal by the hook comes back at once. A captured body stays out of
// its pool until the attempt's base RoundTrip has returned, since
// net/http may still ask for it (GetBody) until then.
func (c *call) launch(results chan<- landed, hedge bool) (*flight, outcome, error) {
	if hedge && c.nextBody == nil { // a hedge's body: the retry path has its own from decide
		if err := c.rewind(); err != nil {
			return nil, outcome{}, err
		}
	}
	req, err := c.nextRequest()
	if err != nil {
		return nil, outcome{}, err
	}
	if c.hookOpen() {
		closeBody(req)
		return nil, outcome{refused: errHookOpen()}, nil
	}
	actx, cancel := context.WithCancel(c.ctx)
	f := &flight{hedge: hedge, start: c.e.clock(), cancel: cancel, returned: make(chan struct{}), verdict: make(chan error, 1), results: results}
	if req != nil {
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{GotFirstResponseByte: f.answered})
		req = req.WithContext(actx)
	}
	c.attempts++
	f.n = c.attempts
	if c.rp != nil {
		c.rp.hold()
	}
	c.up.pin() // the attempt's circuit outcome may land after the call has ended (pinned by the call already: cannot fail)
	go func() {
		var out outcome
		defer c.up.unpin()
		defer func() {
			if p := recover(); p != nil {
				if out.landed {
					// The outcome went to the call already: the panic is a
					// state-change callback's, as unrecovered as it is
					// anywhere else.
					panic(p)
				}
				out = outcome{attempt: f.n, panicked: p}
			}
			f.baseReturned()
			if c.rp != nil {
				c.rp.release()
			}
			if out.resp == nil {
				cancel()
			}
			if !out.landed {
				results <- landed{out: out, f: f}
			}
		}()
		c.attemptIn(actx, req, f.n, f, &out)
	}()
	return f, outcome{}, nil
}

// land hands an attempt's outcome to the call and waits for what it counts
// for in its circuit: only the call knows whether it is a loser's.
func (f *flight) land(out *outcome) error {
	out.landed = true
	f.results <- landed{out: *out, f: f}
	return <-f.verdict
}

// hedgeDelay returns how long an attempt may run before a hedge follows:
// the policy's hedge delay, or, under hedge_quantile, that quantile of the
// upstream's recent latencies with the hedge delay as its floor (and value
// until enough samples).
func (c *call) hedgeDelay() time.Duration {
	d := c.pol.HedgeDelay
	if c.pol.HedgeQuantile > 0 && c.lane != nil {
		d = max(d, time.Duration(c.lane.sketch(c.pol.HedgeQuantile).delay.Load()))
	}
	return d
}

// observeLatency records a landed attempt for the quantile delay: an
// answer's latency, or a primary cancelled as a loser, which straggled.
func (c *call) observeLatency(f *flight, out outcome) {
	if c.pol.HedgeQuantile <= 0 || c.lane == nil || out.refused != nil {
		return
	}
	cancelled := f.state.Load() == flightCancelled
	if !cancelled && out.err != nil && out.class == "" {
		return // the caller's cancellation, or an error that says nothing of latency
	}
	now := c.e.clock()
	c.lane.sketch(c.pol.HedgeQuantile).add(time.Duration(now-f.start), !f.hedge, cancelled, now)
}
