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
// be reading a request body after RoundTrip has returned. The chunks go back
// to the pool once every reader is closed and the RoundTrip is done.
type replay struct {
	mu       sync.Mutex
	pools    *bodyPools
	src      io.ReadCloser
	chunks   []*chunk
	n        int64 // bytes captured
	max      int64 // capture cap
	eof      bool  // src is exhausted: chunks hold the whole body
	err      error // src failed: nothing can be sent again
	overflow bool  // the body is larger than max: it streams once
	refs     int   // open readers, plus one for the RoundTrip
	gen      uint64
	srcDone  bool // src has been closed
}

func (p *bodyPools) newReplay(src io.ReadCloser, max int64) *replay {
	r, _ := p.replays.Get().(*replay)
	if r == nil {
		r = &replay{}
	}
	r.mu.Lock()
	r.pools, r.src, r.max, r.refs = p, src, max, 1
	r.n, r.eof, r.err, r.overflow, r.srcDone = 0, false, nil, false, false
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
	defer r.mu.Unlock()
	if r.eof || r.err != nil {
		r.closeSource()
	}
	r.unref()
}

// unref must be called with r.mu held.
func (r *replay) unref() {
	if r.refs--; r.refs > 0 {
		return
	}
	r.closeSource()
	for i, c := range r.chunks {
		r.pools.chunks.Put(c)
		r.chunks[i] = nil
	}
	r.chunks = r.chunks[:0]
	pools := r.pools
	r.pools = nil
	pools.replays.Put(r) // gen keeps counting: stale readers stay detached
}

func (r *replay) closeSource() {
	if !r.srcDone {
		r.srcDone = true
		r.src.Close()
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
	switch {
	case rr.closed:
		return 0, errBodyClosed
	case rr.gen != r.gen:
		return 0, errBodyDetached
	case len(p) == 0:
		return 0, nil
	}
	if rr.off < r.n { // replay what was captured
		n := 0
		for n < len(p) && rr.off < r.n {
			c := r.chunks[rr.off/chunkSize]
			start := rr.off % chunkSize
			end := min(int64(chunkSize), start+(r.n-rr.off))
			m := copy(p[n:], c[start:end])
			n += m
			rr.off += int64(m)
		}
		return n, nil
	}
	if r.overflow {
		if rr.off == r.n {
			// Only the reader that went past the cap can go on; any
			// other would end at the captured prefix: a truncated body.
			return 0, errBodyNotReplayed
		}
		return r.stream(rr, p)
	}
	switch {
	case r.eof:
		return 0, io.EOF
	case r.err != nil:
		return 0, r.err
	case r.n >= r.max:
		// The cap is reached: the body is too large to replay unless the
		// source ends exactly here.
		return r.stream(rr, p)
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
	buf := r.chunks[idx][start : start+room]
	n, err := r.src.Read(buf)
	copy(p, buf[:n])
	r.n += int64(n)
	rr.off += int64(n)
	return n, r.noteErr(err)
}

// stream reads the source past the cap, without capturing: from the first
// byte read, the body can no longer be replayed. Must be called with r.mu
// held.
func (r *replay) stream(rr *replayReader, p []byte) (int, error) {
	switch {
	case r.eof:
		return 0, io.EOF
	case r.err != nil:
		return 0, r.err
	case r.srcDone:
		return 0, errBodyClosed
	}
	n, err := r.src.Read(p)
	if n > 0 {
		r.overflow = true
	}
	rr.off += int64(n)
	return n, r.noteErr(err)
}

func (r *replay) noteErr(err error) error {
	switch {
	case err == nil:
	case err == io.EOF:
		r.eof = true
	default:
		r.err = err
	}
	return err
}

func (rr *replayReader) Close() error {
	r := rr.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if rr.closed {
		return nil
	}
	rr.closed = true
	r.unref()
	return nil
}
