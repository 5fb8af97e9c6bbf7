package rtx

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/athomic-go/rtx/internal/hostport"
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
	c := call{e: t.e, ctx: ctx, snap: snap, pol: pol, req: req, first: req}
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
	c.begin(upstreamKey(&c.key, req))
	var span trace.Span
	c.ctx, span = t.e.obs.startCall(ctx, req, c.now)
	resp, err := c.run()
	endCall(span, resp)
	return resp, err
}

func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// upstreamKey writes the upstream of req into buf.
func upstreamKey(buf *keyBuf, req *http.Request) []byte {
	return hostport.Append(buf[:0], req.URL)
}

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
// its own context, which is cancelled when the timeout fires before the
// response headers arrive, and otherwise lives until the body is closed.
func (e *engine) send(req *http.Request, timeout time.Duration) (*http.Response, error) {
	if timeout <= 0 {
		return checked(e.cfg.base.RoundTrip(req))
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(timeout, func() { cancel(errAttemptTimeout) })
	resp, err := checked(e.cfg.base.RoundTrip(req.WithContext(ctx)))
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
