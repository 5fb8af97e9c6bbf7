package rtx

import (
	"errors"
	"io"
	"sync"
)

// chunkSize is the unit of pooled body capture.
const chunkSize = 32 << 10

type chunk [chunkSize]byte

var (
	errBodyDetached    = errors.New("rtx: request body belongs to an abandoned attempt")
	errBodyClosed      = errors.New("rtx: read on closed request body")
	errBodyNotReplayed = errors.New("rtx: request body cannot be replayed")
)

// bodyPools holds a Transport's pooled capture buffers.
type bodyPools struct {
	chunks  sync.Pool // *chunk
	replays sync.Pool // *replay
}

// replay captures a request body as it is first sent, so that later
// attempts can send it again: they read the captured prefix, then go on
// reading (and capturing) the source where the earlier attempt stopped.
//
// Every attempt gets its own reader. While the source is still being read,
// a new reader detaches the readers of earlier attempts, whose later reads
// fail, since net/http may still be reading a request body after RoundTrip
// has returned, and only one reader may go on into the source. Once the
// capture is complete (the source at EOF, the whole body in chunks), new
// readers detach nobody: every reader reads the immutable chunks on its
// own, so several attempts may be in flight at once.
//
// The source is read without holding mu, so that a slow body (a pipe fed by
// the caller) never blocks Close, the next attempt or the end of RoundTrip;
// one read at a time, into the tail of the capture, which nobody else
// touches.
//
// The source is closed once, when nothing more can read it: when it is
// exhausted or failed and the RoundTrip is done, or when the RoundTrip is
// done and the latest reader is closed, or when the last reference goes.
// Closing a reader never closes the source while the RoundTrip may still
// start an attempt that needs the rest of it: net/http's HTTP/2 client
// closes an aborted stream's body on a goroutine of its own, possibly while
// that stream's read of the source is in flight, and before RoundTrip
// returns the reset that the next attempt retries. So a read stuck in a
// stalled source is unblocked by Close only once the RoundTrip is done;
// until then the next attempt waits for its bytes, which it needs anyway.
//
// The chunks go back to the pool once every reader is closed, no read is in
// flight and the RoundTrip is done.
type replay struct {
	getBodyFn func() (io.ReadCloser, error) // r.getBody, for Request.GetBody
	mu        sync.Mutex
	cond      sync.Cond // on mu: a source read ended, or a reader closed
	pools     *bodyPools
	src       io.ReadCloser
	chunks    []*chunk
	n         int64 // bytes captured
	max       int64 // capture cap
	eof       bool  // src is exhausted: chunks hold the whole body
	err       error // src failed: nothing can be sent again
	overflow  bool  // bytes past max were sent: the body streams once
	refs      int   // open readers, an in-flight read, and one for the RoundTrip
	gen       uint64
	reading   *replayReader // whose source read is in flight, if any
	latest    *replayReader // the reader made last, if any
	srcDone   bool          // src has been (or is being) closed
	rtDone    bool          // the RoundTrip's reference is dropped: no new readers
}

func (p *bodyPools) newReplay(src io.ReadCloser, max int64) *replay {
	r, _ := p.replays.Get().(*replay)
	if r == nil {
		r = &replay{}
		r.cond.L = &r.mu
		r.getBodyFn = r.getBody // made once per pooled replay, not per request
	}
	r.mu.Lock()
	r.pools, r.src, r.max, r.refs = p, src, max, 1
	r.n, r.eof, r.err, r.overflow, r.srcDone, r.rtDone = 0, false, nil, false, false, false
	r.reading, r.latest = nil, nil
	r.mu.Unlock()
	return r
}

// reader returns a reader over the whole body for the next attempt. While
// the capture is incomplete it detaches the readers of earlier attempts;
// over a complete capture they read on undisturbed.
func (r *replay) reader() *replayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.completeLocked() {
		r.gen++
		r.cond.Broadcast() // readers waiting on a read in flight are detached now
	}
	r.refs++
	r.latest = &replayReader{r: r, gen: r.gen}
	return r.latest
}

// getBody returns a reader for another send of the body, as a request's
// GetBody does, or an error when the body cannot be sent whole again. An
// attempt carrying it as its GetBody lets net/http resend a request that
// its HTTP/2 client knows the server never processed (REFUSED_STREAM, a
// GOAWAY above the request's stream) as it does for bodies with a GetBody,
// instead of failing with an error that has no typed cause.
func (r *replay) getBody() (io.ReadCloser, error) {
	if !r.replayable() {
		return nil, errBodyNotReplayed
	}
	return r.reader(), nil
}

// replayable reports whether another attempt can send the whole body.
func (r *replay) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err == nil && !r.overflow
}

// complete reports whether the whole body is captured: the source is at
// EOF and nothing went past the cap. Readers made from now on detach no
// other reader, so attempts may run concurrently (a hedge may be sent).
func (r *replay) complete() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.completeLocked()
}

func (r *replay) completeLocked() bool { return r.eof && r.err == nil && !r.overflow }

// finished reports whether nothing more can read the source: the
// RoundTrip makes no more readers and the latest one is closed. Must be
// called with r.mu held.
func (r *replay) finished() bool {
	return r.rtDone && (r.latest == nil || r.latest.closed)
}

// done drops the RoundTrip's reference. When the source is exhausted or
// failed, or the latest reader is already closed, it is closed now (which
// unblocks a read stuck in it); otherwise the latest reader's Close, or
// the last reference, closes it.
func (r *replay) done() {
	r.mu.Lock()
	r.rtDone = true
	var src io.Closer
	if (r.eof || r.err != nil) && r.reading == nil || r.finished() {
		src = r.takeSource()
	}
	if s := r.unref(); s != nil {
		src = s
	}
	r.mu.Unlock()
	closeSource(src)
}

// hold keeps the replay, chunks and all, out of its pool until release:
// a hedged attempt's base RoundTrip may outlive the call's RoundTrip, and
// net/http may ask it for the body again (GetBody) until it returns.
func (r *replay) hold() {
	r.mu.Lock()
	r.refs++
	r.mu.Unlock()
}

// release drops a hold.
func (r *replay) release() {
	r.mu.Lock()
	src := r.unref()
	r.mu.Unlock()
	closeSource(src)
}

// unref drops a reference; at zero it returns the chunks to the pool, the
// replay to its pool, and the source for the caller to close once mu is
// released. Must be called with r.mu held.
func (r *replay) unref() io.Closer {
	if r.refs--; r.refs > 0 {
		return nil
	}
	src := r.takeSource()
	for i, c := range r.chunks {
		r.pools.chunks.Put(c)
		r.chunks[i] = nil
	}
	r.chunks = r.chunks[:0]
	pools := r.pools
	r.pools, r.latest, r.reading = nil, nil, nil
	pools.replays.Put(r) // gen keeps counting: stale readers stay detached
	return src
}

// takeSource returns the source if nobody has closed it yet. Must be called
// with r.mu held.
func (r *replay) takeSource() io.Closer {
	if r.srcDone {
		return nil
	}
	r.srcDone = true
	return r.src
}

func closeSource(c io.Closer) {
	if c != nil {
		c.Close()
	}
}

type replayReader struct {
	r      *replay
	gen    uint64
	off    int64
	closed bool // guarded by r.mu
}

func (rr *replayReader) Read(p []byte) (int, error) {
	r := rr.r
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		switch {
		case rr.closed:
			return 0, errBodyClosed
		case rr.gen != r.gen:
			return 0, errBodyDetached
		case len(p) == 0:
			return 0, nil
		case rr.off < r.n: // replay what was captured
			return rr.copyOut(p), nil
		case r.reading == nil:
		default: // an earlier attempt's read is in flight: its bytes are ours
			r.cond.Wait()
			continue
		}
		break
	}
	if r.overflow {
		if rr.off == r.n {
			// Only the reader that went past the cap can go on; any
			// other would end at the captured prefix: a truncated body.
			return 0, errBodyNotReplayed
		}
		return rr.readSource(p, nil)
	}
	switch {
	case r.eof:
		return 0, io.EOF
	case r.err != nil:
		return 0, r.err
	case r.srcDone:
		return 0, errBodyClosed
	case r.n >= r.max:
		// The cap is reached: the body cannot be replayed unless the
		// source ends exactly here.
		return rr.readSource(p, nil)
	}
	// Capture straight into the tail chunk, then copy out.
	idx := int(r.n / chunkSize)
	if idx == len(r.chunks) {
		c, _ := r.pools.chunks.Get().(*chunk)
		if c == nil {
			c = new(chunk)
		}
		r.chunks = append(r.chunks, c)
	}
	start := r.n % chunkSize
	room := min(int64(chunkSize)-start, r.max-r.n, int64(len(p)))
	return rr.readSource(r.chunks[idx][start:start+room], p)
}

// copyOut copies captured bytes from rr's offset. Must be called with r.mu
// held.
func (rr *replayReader) copyOut(p []byte) int {
	r := rr.r
	n := 0
	for n < len(p) && rr.off < r.n {
		c := r.chunks[rr.off/chunkSize]
		start := rr.off % chunkSize
		end := min(int64(chunkSize), start+(r.n-rr.off))
		m := copy(p[n:], c[start:end])
		n += m
		rr.off += int64(m)
	}
	return n
}

// readSource reads the source into buf without holding r.mu. With a dst,
// buf is the tail of the capture, and the bytes read are published and
// copied to dst; without one, buf is the caller's own, past the cap. Must be
// called with r.mu held; returns with it held.
func (rr *replayReader) readSource(buf, dst []byte) (int, error) {
	r := rr.r
	if r.srcDone {
		return 0, errBodyClosed
	}
	capture := dst != nil
	r.reading = rr
	r.refs++ // the chunks must outlive this read
	r.mu.Unlock()
	n, err := r.src.Read(buf)
	r.mu.Lock()
	r.reading = nil
	switch {
	case err == nil:
	case err == io.EOF:
		r.eof = true
	default:
		r.err = err
	}
	if capture {
		r.n += int64(n)
	} else if n > 0 {
		r.overflow = true
	}
	r.cond.Broadcast()
	switch {
	case capture && rr.closed:
		if err == nil || err == io.EOF {
			err = errBodyClosed
		}
		n = 0
	case capture && rr.gen != r.gen:
		// The bytes stay captured for the attempt that replaced this one.
		n, err = 0, errBodyDetached
	case capture:
		copy(dst, buf[:n])
		rr.off += int64(n)
	default:
		rr.off += int64(n) // past the cap: rr.off runs ahead of r.n
	}
	if src := r.unref(); src != nil {
		r.mu.Unlock()
		closeSource(src)
		r.mu.Lock()
	}
	return n, err
}

func (rr *replayReader) Close() error {
	r := rr.r
	r.mu.Lock()
	if rr.closed {
		r.mu.Unlock()
		return nil
	}
	rr.closed = true
	var src io.Closer
	if r.finished() {
		// Nothing can read the source any more: close it, which also
		// unblocks a read stuck in it.
		src = r.takeSource()
	}
	r.cond.Broadcast()
	if s := r.unref(); s != nil {
		src = s
	}
	r.mu.Unlock()
	closeSource(src)
	return nil
}
