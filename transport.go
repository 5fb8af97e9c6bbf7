package rtx

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"go.opentelemetry.io/otel/trace"

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
// connections are reused. Circuits and retry budgets are kept per
// upstream (host:port), bounded in number.
//
// A Transport must be created with [New]; its zero value is not usable. It
// is safe for concurrent use.
type Transport struct {
	e *engine
}

var _ http.RoundTripper = (*Transport)(nil)

// New returns a Transport that retries under the factory's policy called
// name ("" for the default policy). The name is checked per request, since
// live updates may add or remove policies: requests under an unknown name
// fail before any I/O. A nil factory serves the built-in default policy.
func New(f *policy.Factory, name string, opts ...Option) *Transport {
	e := newEngine(f, name, "http", opts)
	if e.cfg.base == nil {
		e.cfg.base = cleanhttp.DefaultPooledTransport()
	}
	_, stdlib := e.cfg.base.(*http.Transport)
	e.anyError = !stdlib
	t := &Transport{e: e}
	watch(t, e)
	return t
}

// CloseIdleConnections closes the idle connections of the base transport,
// if it has such a method.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.e.cfg.base.(interface{ CloseIdleConnections() }); ok {
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
	ctx := req.Context()
	snap, pol, err := t.e.policyFor(ctx)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	var c call // set field by field: a composite literal is built in a temporary and copied
	c.e, c.ctx, c.snap, c.pol, c.req, c.first = t.e, ctx, snap, pol, req, req
	if pol.Attempts > 1 {
		if pol.IdempotencyKey && !idempotent(req) {
			c.first = withIdempotencyKey(req)
		}
		if hasBody(req) && req.GetBody == nil && t.e.cfg.maxReplay > 0 && req.ContentLength <= t.e.cfg.maxReplay {
			c.rp = t.e.pools.newReplay(req.Body, t.e.cfg.maxReplay)
			defer c.rp.done()
			c.first = withBody(c.first, c.rp.reader())
			// net/http resends a request itself when it can rewind the
			// body (HTTP/2 REFUSED_STREAM, a GOAWAY that excluded it, a
			// dead reused connection); without GetBody it gives up with
			// an error that keeps no typed cause.
			c.first.GetBody = c.rp.getBodyFn
		}
	}
	c.begin()
	defer c.end()
	var span trace.Span
	c.ctx, span = t.e.obs.startCall(ctx, req)
	resp, err := c.run()
	endCall(span, resp)
	return resp, unwrapPermanent(err)
}

func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// rewind makes the body of the next attempt ready, or says why it cannot
// be: a capture that went past its cap, no GetBody, GetBody failing. A
// capture is read anew only when the attempt starts (nextRequest), since
// the earlier attempt may read on meanwhile.
func (c *call) rewind() error {
	switch {
	case c.req == nil || !hasBody(c.req):
		return nil
	case c.rp != nil:
		if !c.rp.replayable() {
			return errBodyNotReplayed
		}
		return nil
	case c.req.GetBody == nil:
		return errBodyNotReplayed
	}
	b, err := c.req.GetBody()
	if err != nil {
		return err
	}
	c.nextBody = b
	return nil
}

// nextRequest returns the request the next attempt sends: the first one,
// then the same with the body rewind made ready.
func (c *call) nextRequest() (*http.Request, error) {
	if c.fn != nil {
		return nil, nil
	}
	if c.attempts == 0 || !hasBody(c.req) {
		return c.first, nil
	}
	if c.rp != nil {
		// The earlier attempt may have read on during the delay, past the
		// cap: ask again now that reader() has detached it.
		next := c.rp.reader()
		if !c.rp.replayable() {
			closeReader(next)
			return nil, errBodyNotReplayed
		}
		return withBody(c.first, next), nil
	}
	next := c.nextBody
	c.nextBody = nil
	return withBody(c.first, next), nil
}

// send makes one attempt. With a per-attempt timeout, the attempt runs under
// its own context (see attemptCtx), which ends when the timeout fires before
// the response headers arrive, when the caller's context ends, or when the
// response body is closed: it lives until then, with no deadline of its own.
func (e *engine) send(req *http.Request, timeout time.Duration) (*http.Response, error) {
	if timeout <= 0 {
		return checked(e.cfg.base.RoundTrip(req))
	}
	parent := req.Context()
	a := &timedAttempt{ctx: attemptCtx{parent: parent}}
	// WithContext inlines, so its copy stays on the stack: the request
	// sent is a.req, whose context is a.ctx. a is never reused, since the
	// response's Request may point at a.req for as long as it is kept.
	a.req = *req.WithContext(&a.ctx)
	t := e.armTimer(&a.ctx, timeout)
	resp, err := checked(e.cfg.base.RoundTrip(&a.req))
	if fired := !e.disarm(t); fired || err != nil {
		if resp != nil {
			resp.Body.Close()
			resp = nil
		}
		a.ctx.cancel(context.Canceled, true)
		switch {
		case fired && parent.Err() == nil:
			err = &attemptTimeoutError{timeout: timeout}
		case err == nil: // fired as the caller's context ended
			err = parent.Err()
		}
		return nil, err
	}
	resp.Body = a.wrap(resp.Body)
	return resp, nil
}

// timedAttempt is one attempt under a per-attempt timeout, in one
// allocation: the request it sends, that request's context, and the
// response body wrapper that ends the context on Close.
type timedAttempt struct {
	req  http.Request
	ctx  attemptCtx
	body attemptBody
}

// wrap returns the response body that ends the attempt's context when
// closed. The body of a 101 Switching Protocols response is an
// io.ReadWriteCloser: the wrapper keeps io.Writer visible.
func (a *timedAttempt) wrap(body io.ReadCloser) io.ReadCloser {
	a.body = attemptBody{ReadCloser: body, ctx: &a.ctx}
	if w, ok := body.(io.Writer); ok {
		return &attemptWriterBody{&a.body, w}
	}
	return &a.body
}

type attemptBody struct {
	io.ReadCloser
	ctx *attemptCtx
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.ctx.cancel(context.Canceled, true)
	return err
}

type attemptWriterBody struct {
	*attemptBody
	io.Writer
}

// attemptCtx is the context of one attempt under a per-attempt timeout:
// the caller's context (its parent), ended early by the timeout or by the
// closing of the response body. It reports the parent's deadline and
// values, and no deadline of its own: the timeout stops once the response
// headers arrive, and the body may take as long as the parent allows.
//
// It costs less than context.WithCancelCause and time.AfterFunc:
//   - its Done channel is made only when asked for, and it follows the
//     parent (context.AfterFunc) only from then on; until then no one can
//     wait for it, and Err looks at the parent itself;
//   - contexts made from it (net/http makes one per request) register
//     through its AfterFunc method instead of a goroutine each.
//
// It is safe for concurrent use.
type attemptCtx struct {
	parent context.Context

	mu       sync.Mutex
	done     chan struct{} // made by Done; closed by cancel
	err      error         // set once, by cancel
	own      bool          // err is the attempt's own (timeout, Close, failure), not the parent's
	unfollow func() bool   // stops following the parent; set by Done
	after    []afterFunc   // registered through AfterFunc; may use afterBuf
	afterBuf [1]afterFunc
	afterSeq uint64
}

type afterFunc struct {
	id uint64
	f  func()
}

func (c *attemptCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }

func (c *attemptCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		switch {
		case c.err != nil:
			close(c.done)
		case c.parent.Done() != nil:
			// f runs on a goroutine of its own (context.AfterFunc's
			// promise), never under this lock.
			c.unfollow = context.AfterFunc(c.parent, c.parentDone)
		}
	}
	return c.done
}

func (c *attemptCtx) Err() error {
	c.mu.Lock()
	err := c.err
	c.mu.Unlock()
	if err == nil {
		// The parent may have ended unseen: it is followed only once
		// Done is asked for, and then through a goroutine.
		if perr := c.parent.Err(); perr != nil {
			err = c.cancel(perr, false)
		}
	}
	return err
}

func (c *attemptCtx) Value(key any) any {
	if key == causeKey {
		c.mu.Lock()
		own := c.own
		c.mu.Unlock()
		if own {
			return nil // context.Cause falls back to Err
		}
	}
	return c.parent.Value(key)
}

func (c *attemptCtx) String() string { return "rtx.attemptContext" }

// AfterFunc arranges to call f once the context ends, unless stop is called
// first; f runs at once, on a goroutine of its own, if the context has
// ended already. Package context looks for this method: a context made
// from this one (by WithCancel, AfterFunc, net/http's per-request one)
// registers through it instead of starting a goroutine to wait on Done.
// Its f functions are quick and take no lock of ours: they run on the
// goroutine that ends the context, as a cancelCtx cancels its children.
func (c *attemptCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	if c.after == nil {
		c.after = c.afterBuf[:0]
	}
	c.afterSeq++
	id := c.afterSeq
	c.after = append(c.after, afterFunc{id: id, f: f})
	c.mu.Unlock()
	return func() bool { return c.stopAfter(id) }
}

func (c *attemptCtx) stopAfter(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, a := range c.after {
		if a.id == id {
			c.after = slices.Delete(c.after, i, i+1)
			return true
		}
	}
	return false
}

func (c *attemptCtx) parentDone() { c.cancel(c.parent.Err(), false) }

// cancel ends the context with err, unless it has ended already, and
// returns the error it ended with. own says the attempt ended for its own
// reasons, not the parent's.
func (c *attemptCtx) cancel(err error, own bool) error {
	c.mu.Lock()
	if c.err != nil {
		err = c.err
		c.mu.Unlock()
		return err
	}
	c.err, c.own = err, own
	if c.done != nil {
		close(c.done)
	}
	after, unfollow := c.after, c.unfollow
	c.after, c.unfollow = nil, nil
	c.mu.Unlock()
	if unfollow != nil {
		unfollow()
	}
	for _, a := range after {
		a.f()
	}
	return err
}

// causeKey is the key context.Cause asks a context's Value for, to find
// the nearest context made by WithCancelCause and its kin. An attemptCtx
// that ended for its own reasons answers nil for it, so that Cause falls
// back to its Err rather than report the parent's cause (nil while the
// parent lives). It is learnt once, from the one Value call Cause makes on
// a probe; if Cause ever stops asking, it is nil, which matches no key.
var causeKey = func() any {
	p := keyProbe{Context: context.Background()}
	context.Cause(&p)
	return p.key
}()

type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any {
	if p.key == nil {
		p.key = key
	}
	return nil
}

// attemptTimer ends an attempt when its timeout fires. Its engine reuses it,
// timer included, for later attempts, but only after a Stop that kept it
// from firing: a timer whose function has started is never armed again, so
// a late fire cannot reach a later attempt.
type attemptTimer struct {
	t      *time.Timer
	cur    atomic.Pointer[attemptCtx] // the attempt it is armed for
	pooled bool                       // made outside a synctest bubble
}

func (h *attemptTimer) fire() {
	if c := h.cur.Load(); c != nil {
		c.cancel(context.DeadlineExceeded, true)
	}
}

// armTimer starts a timer that ends c after d.
func (e *engine) armTimer(c *attemptCtx, d time.Duration) *attemptTimer {
	real := !syntheticClock(time.Now())
	if real {
		if h, _ := e.timers.Get().(*attemptTimer); h != nil {
			h.cur.Store(c)
			h.t.Reset(d)
			return h
		}
	}
	h := &attemptTimer{pooled: real}
	h.cur.Store(c)
	h.t = time.AfterFunc(d, h.fire)
	return h
}

// disarm stops h's timer and reports whether that kept it from firing.
func (e *engine) disarm(h *attemptTimer) bool {
	if !h.t.Stop() {
		return false // fired or firing: h ends here
	}
	h.cur.Store(nil)
	if h.pooled {
		e.timers.Put(h)
	}
	return true
}

// syntheticClock reports whether now, read by the calling goroutine, was
// read in a testing/synctest bubble, where time.Now has no monotonic
// reading. A
// timer made in a bubble must not be touched outside it, nor a timer made
// outside be used by one (its fire would come from outside, in real time):
// timers are reused only outside bubbles.
func syntheticClock(now time.Time) bool {
	return now == now.Round(0)
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

func closeBody(r *http.Request) {
	if r != nil {
		closeReader(r.Body)
	}
}

func closeReader(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}
