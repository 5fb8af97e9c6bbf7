package rtx

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// closeCounter counts the Close calls a request body receives.
type closeCounter struct {
	io.Reader
	closes atomic.Int32
}

func (c *closeCounter) Close() error { c.closes.Add(1); return nil }

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

// TestReplayCompleteReadersConcurrent: over a complete capture, new readers
// detach nobody; many read the body at once, each whole, and the chunks go
// back only after every reader is closed and the RoundTrip is done.
func TestReplayCompleteReadersConcurrent(t *testing.T) {
	withProcs(t, 4)
	data := payload(7, 5*chunkSize+123)
	src := &closeCounter{Reader: &plainReader{bytes.NewReader(data)}}
	var pools bodyPools
	rp := pools.newReplay(src, 1<<20)

	first := rp.reader()
	if rp.complete() {
		t.Fatal("complete before anything was read")
	}
	half := make([]byte, chunkSize)
	if _, err := io.ReadFull(first, half); err != nil {
		t.Fatal(err)
	}
	// While the source is still being read, a new reader detaches the old.
	second := rp.reader()
	if _, err := first.Read(half); !errors.Is(err, errBodyDetached) {
		t.Fatalf("earlier reader of an incomplete capture read on: %v", err)
	}
	first.Close()
	if got, err := io.ReadAll(second); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second reader: %d bytes, %v", len(got), err)
	}
	if !rp.complete() {
		t.Fatal("not complete after the source's EOF")
	}

	const readers = 16
	rds := make([]*replayReader, readers)
	for i := range rds {
		rds[i] = rp.reader()
		// Start each reader before the next is made.
		if _, err := io.ReadFull(rds[i], make([]byte, 10)); err != nil {
			t.Fatalf("reader %d: %v", i, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for _, rd := range rds {
		wg.Go(func() {
			defer rd.Close()
			got, err := io.ReadAll(io.MultiReader(bytes.NewReader(data[:10]), rd))
			switch {
			case err != nil:
				errs <- err
			case !bytes.Equal(got, data):
				errs <- errors.New("body damaged")
			}
		})
	}
	// The second reader read to EOF; reading again is still EOF, not detached.
	if n, err := second.Read(half); n != 0 || err != io.EOF {
		t.Errorf("earlier reader after new ones: %d, %v; want EOF", n, err)
	}
	second.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rp.mu.Lock()
	held := len(rp.chunks)
	rp.mu.Unlock()
	if held == 0 {
		t.Fatal("chunks went back to the pool before the RoundTrip was done")
	}
	rp.done()
	rp.mu.Lock()
	held = len(rp.chunks)
	rp.mu.Unlock()
	if held != 0 {
		t.Errorf("%d chunks held after every reader closed and the RoundTrip ended", held)
	}
	if n := src.closes.Load(); n != 1 {
		t.Errorf("source closed %d times, want once", n)
	}
}

// TestReplayClosingAnAbortedReaderKeepsTheSource: net/http closes an
// aborted attempt's body, possibly while that attempt's read of the source
// is in flight and before RoundTrip returns. The source must stay open for
// the next attempt, which gets the in-flight bytes and the rest; it is
// closed once, when nothing can read it any more.
func TestReplayClosingAnAbortedReaderKeepsTheSource(t *testing.T) {
	pr, pw := io.Pipe()
	src := &closeCounter{Reader: pr}
	var pools bodyPools
	rp := pools.newReplay(src, 1<<20)
	first := rp.reader()
	readErr := make(chan error, 1)
	go func() {
		_, err := first.Read(make([]byte, 64))
		readErr <- err
	}()
	waitFor(t, "the read to reach the source", func() bool {
		rp.mu.Lock()
		defer rp.mu.Unlock()
		return rp.reading == first
	})
	first.Close() // as net/http's HTTP/2 client does on RST_STREAM
	if src.closes.Load() != 0 {
		t.Fatal("closing the aborted attempt's reader closed the source")
	}
	second := rp.reader() // the retry
	got := make(chan []byte, 1)
	go func() {
		b, err := io.ReadAll(second)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	pw.Write([]byte("in flight, "))
	if err := <-readErr; !errors.Is(err, errBodyClosed) && !errors.Is(err, errBodyDetached) {
		t.Errorf("aborted reader's read ended with %v", err)
	}
	pw.Write([]byte("and the rest"))
	pw.Close()
	if b := <-got; string(b) != "in flight, and the rest" {
		t.Fatalf("retry read %q", b)
	}
	second.Close()
	if n := src.closes.Load(); n != 0 {
		t.Fatalf("source closed %d times before the RoundTrip ended", n)
	}
	rp.done()
	if n := src.closes.Load(); n != 1 {
		t.Fatalf("source closed %d times, want once", n)
	}
}

// TestReplayGetBody: getBody hands out whole-body readers while the body is
// replayable, and refuses once bytes went past the cap.
func TestReplayGetBody(t *testing.T) {
	var pools bodyPools
	data := payload(1, 100)
	rp := pools.newReplay(io.NopCloser(&plainReader{bytes.NewReader(data)}), 1<<20)
	defer rp.done()
	rd := rp.reader()
	io.CopyN(io.Discard, rd, 40)
	rd.Close()
	body, err := rp.getBody()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(body); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("getBody's reader: %d bytes, %v", len(b), err)
	}
	body.Close()

	small := pools.newReplay(io.NopCloser(&plainReader{bytes.NewReader(data)}), 10)
	defer small.done()
	over := small.reader()
	io.ReadAll(over) // streams past the cap
	over.Close()
	if _, err := small.getBody(); !errors.Is(err, errBodyNotReplayed) {
		t.Fatalf("getBody past the cap: %v, want errBodyNotReplayed", err)
	}
}
