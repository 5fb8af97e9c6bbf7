package rtx

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"
)

// A caller's body fed through a pipe that only completes after the
// response has come back (full duplex): RoundTrip must return without
// waiting for the producer, and the body must still arrive whole.
func TestReplayDoesNotWaitForASlowSource(t *testing.T) {
	pr, pw := io.Pipe()
	got := make(chan []byte, 1)
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		go func() { // net/http's write loop, still sending after the answer
			b, _ := io.ReadAll(req.Body)
			req.Body.Close()
			got <- b
		}()
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
	})
	req, _ := http.NewRequest("PUT", "http://api.test/x", pr)
	returned := make(chan error, 1)
	go func() {
		_, err := New(testFactory(t, quick), "quick", WithBase(base)).RoundTrip(req)
		returned <- err
	}()
	select {
	case err := <-returned:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RoundTrip waited for the request body's producer")
	}
	pw.Write([]byte("hello, "))
	pw.Write([]byte("world"))
	pw.Close()
	if b := <-got; string(b) != "hello, world" {
		t.Errorf("server got %q", b)
	}
}

// Closing the body must unblock a Read stuck in the source, as net/http
// does to abort a request whose body it is still sending.
func TestReplayCloseUnblocksRead(t *testing.T) {
	pr, _ := io.Pipe()
	var pools bodyPools
	rp := pools.newReplay(pr, 1<<20)
	rd := rp.reader()
	readErr := make(chan error, 1)
	go func() {
		_, err := rd.Read(make([]byte, 10))
		readErr <- err
	}()
	rp.done()
	// Wait until the read is in the source, then close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rp.mu.Lock()
		in := rp.reading == rd
		rp.mu.Unlock()
		if in {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read never reached the source")
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
	rd.Close()
	select {
	case err := <-readErr:
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("read ended with %v, want the closed source's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not unblock the read")
	}
}
