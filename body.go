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
// Every attempt gets its own reader; starting a new attempt detaches the
// readers of earlier ones, whose later reads fail, since net/http may still
// be reading a request body after RoundTrip has returned.
//
// The source is read without holding mu, so that a slow body (a pipe fed by
// the caller) never blocks Close, the next attempt or the end of RoundTrip;
// one read at a time, into the tail of the capture, which nobody else
// touches. Closing the reader whose read is in flight closes the source, as
// net/http expects Close to unblock a Read. The chunks go back to the pool
// once every reader is closed, no read is in flight and the RoundTrip is
// done.
type replay struct {
	mu       sync.Mutex
	cond     sync.Cond // on mu: a source read ended, or a reader closed
	pools    *bodyPools
	src      io.ReadCloser
	chunks   []*chunk
	n        int64 // bytes captured
	max      int64 // capture cap
	eof      bool  // src is exhausted: chunks hold the whole body
	err      error // src failed: nothing can be sent again
	overflow bool  // bytes past max were sent: the body streams once
	refs     int   // open readers, an in-flight read, and one for the RoundTrip
	gen      uint64
	reading  *replayReader // whose source read is in flight, if any
	srcDone  bool          // src has been (or is being) closed
}

func (p *bodyPools) newReplay(src io.ReadCloser, max int64) *replay {
	r, _ := p.replays.Get().(*replay)
	if r == nil {
		r = &replay{}
		r.cond.L = &r.mu
	}
	r.mu.Lock()
	r.pools, r.src, r.max, r.refs = p, src, max, 1
	r.n, r.eof, r.err, r.overflow, r.srcDone, r.reading = 0, false, nil, false, false, nil
	r.mu.Unlock()
	return r
}

// reader detaches the readers of earlier attempts and returns a reader over
// the whole body for the next one.
func (r *replay) reader() *replayReader {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.refs++
	r.cond.Broadcast() // readers waiting on a read in flight are detached now
	return &replayReader{r: r, gen: r.gen}
}

// replayable reports whether another attempt can send the whole body.
func (r *replay) replayable() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err == nil && !r.overflow
}

// done drops the RoundTrip's reference. When the source is exhausted or
// failed it is closed now; otherwise the last reader to close closes it.
func (r *replay) done() {
	r.mu.Lock()
	var src io.Closer
	if (r.eof || r.err != nil) && r.reading == nil {
		src = r.takeSource()
	}
	if s := r.unref(); s != nil {
		src = s
	}
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
	r.pools = nil
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
	if r.reading == rr {
		// Close must unblock a Read stuck in the source.
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
