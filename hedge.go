package rtx

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
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
	start  time.Time
	cancel context.CancelFunc

	// state guards the cancellation of a loser against net/http's idle
	// pool: running, answered (its first response byte arrived), or
	// cancelled. See answered.
	state    atomic.Int32
	returned chan struct{} // closed when the attempt's RoundTrip returned
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
// connection, which then never reaches the pool.
func (f *flight) answered() {
	if !f.state.CompareAndSwap(flightRunning, flightAnswered) {
		<-f.returned
	}
}

// abandon cancels a loser unless its answer is arriving; either way its
// outcome is drained and closed by whoever collects it.
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
// the others are cancelled, drained and closed, their circuit outcome
// excluded. Failures of a listed class let the attempts in flight go on;
// when none is left, the decide step schedules a retry as usual.
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
		for len(inflight) > 0 {
			select {
			case l := <-results:
				inflight = remove(inflight, l.f)
				c.observeLatency(l.f, l.out)
				if l.out.refused != nil { // a half-open circuit had its probe already
					c.attempts--
					if len(inflight) > 0 {
						continue
					}
					return c.refused(out, l.out.refused)
				}
				if c.final(l.out) {
					c.abandon(inflight, results)
					wonHedge = l.f.hedge
					l.out.span.end()
					return l.out.resp, l.out.err
				}
				if out.attempt != 0 {
					c.discard(out)
				}
				out = l.out
			case <-timer.C:
				if c.ctx.Err() != nil || c.attempts >= c.pol.Attempts || len(inflight) > c.pol.MaxHedges || !c.hedgeReady() {
					continue
				}
				if c.budget != nil && !c.budget.withdraw(c.pol, time.Now()) {
					continue // an exhausted budget sends no hedge, and cancels none
				}
				f, h, err := c.launch(results, true)
				if err != nil || h.refused != nil {
					continue
				}
				hedges++
				inflight = append(inflight, f)
				if len(inflight) <= c.pol.MaxHedges {
					timer.Reset(c.hedgeDelay())
				}
			}
		}
		var resp *http.Response
		if out, resp, err = c.retry(out); out.attempt == 0 {
			return resp, err
		}
	}
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
// collect their outcomes, so that their responses are drained and closed.
func (c *call) abandon(inflight []*flight, results <-chan landed) {
	if len(inflight) == 0 {
		return
	}
	for _, f := range inflight {
		f.abandon()
	}
	go func(n int) {
		for range n {
			l := <-results
			c.observeLatency(l.f, l.out)
			c.discard(l.out)
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
// refusal by the circuit or the hook comes back at once.
func (c *call) launch(results chan<- landed, hedge bool) (*flight, outcome, error) {
	if hedge && c.req != nil && c.rp == nil && hasBody(c.req) && c.nextBody == nil {
		if err := c.rewind(); err != nil {
			return nil, outcome{}, err
		}
	}
	req, err := c.nextRequest()
	if err != nil {
		return nil, outcome{}, err
	}
	if hook := c.e.cfg.breakerHook; hook != nil && hook(c.req) {
		closeBody(req)
		return nil, outcome{refused: &CircuitOpenError{Circuit: "circuit breaker hook", Err: gobreaker.ErrOpenState}}, nil
	}
	actx, cancel := context.WithCancel(c.ctx)
	f := &flight{hedge: hedge, start: time.Now(), cancel: cancel, returned: make(chan struct{})}
	if req != nil {
		actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{GotFirstResponseByte: f.answered})
		req = req.WithContext(actx)
	}
	c.attempts++
	f.n = c.attempts
	go func() {
		var out outcome
		c.attemptIn(actx, req, f.n, hedge, &out)
		close(f.returned)
		if out.resp != nil {
			out.resp.Body = cancelOnClose(out.resp.Body, func(error) { cancel() })
		} else {
			cancel()
		}
		results <- landed{out: out, f: f}
	}()
	return f, outcome{}, nil
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
	now := time.Now()
	c.lane.sketch(c.pol.HedgeQuantile).add(now.Sub(f.start), !f.hedge, cancelled, now.UnixNano())
}
