package rtx

// HTTP/2 faults as net/http really returns them: stream resets, GOAWAY,
// and the shapes classification recognises them by.

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/net/http2"

	"github.com/athomic-go/rtx/policy"
)

func TestH2ErrorShapes(t *testing.T) {
	wrap := func(err error) error { return &url.Error{Op: "Post", URL: "https://api.test/", Err: err} }
	type lookalike struct { // the stream error's field names, other kinds
		StreamID string
		Code     uint32
		Cause    error
	}
	closedConnWrite := &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}
	cases := []struct {
		name      string
		err       error
		class     string
		neverSent bool
	}{
		{"refused stream", wrap(http2.StreamError{StreamID: 3, Code: http2.ErrCodeRefusedStream}), policy.ConnectionError, true},
		{"internal error reset", wrap(http2.StreamError{StreamID: 3, Code: http2.ErrCodeInternal}), policy.ConnectionError, false},
		{"cancel reset", wrap(http2.StreamError{StreamID: 1, Code: http2.ErrCodeCancel}), policy.ConnectionError, false},
		{"reset behind %w", wrap(fmt.Errorf("attempt: %w", http2.StreamError{Code: http2.ErrCodeStreamClosed})), policy.ConnectionError, false},
		{"reset in a join", errors.Join(errors.New("x"), http2.StreamError{Code: http2.ErrCodeRefusedStream}), policy.ConnectionError, true},
		{"goaway then close", wrap(http2.GoAwayError{LastStreamID: 5, ErrCode: http2.ErrCodeNo}), policy.ConnectionError, false},
		{"goaway excluding every stream", wrap(http2.GoAwayError{LastStreamID: 0, ErrCode: http2.ErrCodeNo}), policy.ConnectionError, true},
		{"pointer to a reset", wrap(&http2.StreamError{Code: http2.ErrCodeRefusedStream}), policy.ConnectionError, true},
		{"write on a closed connection", wrap(closedConnWrite), policy.ConnectionError, false},
		{"body copy on a closed connection", wrap(&net.OpError{Op: "readfrom", Net: "tcp", Err: closedConnWrite}), policy.ConnectionError, false},
		{"read on a closed connection", wrap(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), "", false},
		{"write reset by peer", wrap(&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.ECONNRESET)}), policy.ConnectionError, false},
		{"lookalike", wrap(errWith{lookalike{StreamID: "3", Code: 7}}), "", false},
		{"nil pointer of the shape", wrap((*http2.StreamError)(nil)), "", false},
		// net/http formats the cause of this one with %v: no type is left.
		{"cannot retry after body written", wrap(fmt.Errorf("http2: Transport: cannot retry err [%v] after Request.Body was written", http2.StreamError{Code: http2.ErrCodeRefusedStream})), "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(nil, nil, tc.err); got != tc.class {
				t.Errorf("class %q, want %q", got, tc.class)
			}
			if got := neverSent(tc.err); got != tc.neverSent {
				t.Errorf("never sent %v, want %v", got, tc.neverSent)
			}
		})
	}
}

// errWith is an error holding an arbitrary value, to try shapes on.
type errWith struct{ v any }

func (e errWith) Error() string { return "errWith" }
func (e errWith) Unwrap() error { err, _ := e.v.(error); return err }

// newH2Server starts an HTTP/2 TLS server on loopback; handler gets the
// 1-based call number.
func newH2Server(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, call int)) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(w, r, int(calls.Add(1)))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // aborted handlers are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestH2StreamResetRetried: a handler that aborts sends RST_STREAM
// (INTERNAL_ERROR); a GET is retried to its 200, a POST with a body the
// server may have read is not.
func TestH2StreamResetRetried(t *testing.T) {
	srv, calls := newH2Server(t, func(w http.ResponseWriter, r *http.Request, call int) {
		io.Copy(io.Discard, r.Body)
		if call == 1 {
			panic(http.ErrAbortHandler)
		}
		fmt.Fprintf(w, "ok %d %s", call, r.Proto)
	})
	var events []RetryEvent
	client, _ := pooledClient(t, "quick", srv.Client().Transport, OnRetry(func(e RetryEvent) { events = append(events, e) }))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if body := readClose(t, resp); body != "ok 2 HTTP/2.0" {
		t.Fatalf("got %q, want the second call's answer over HTTP/2", body)
	}
	if len(events) != 1 || events[0].Class != policy.ConnectionError {
		t.Fatalf("retry events %+v, want one ConnectionError", events)
	}
	if se, _ := h2Fault(events[0].Err); se == nil || se.Code != uint32(http2.ErrCodeInternal) {
		t.Fatalf("retried on %v, want an INTERNAL_ERROR stream reset", events[0].Err)
	}

	calls.Store(0)
	events = nil
	_, err = client.Post(srv.URL, "text/plain", strings.NewReader("once"))
	if err == nil || calls.Load() != 1 || len(events) != 0 {
		t.Fatalf("POST: err %v after %d calls, %d retries; want the reset back after one call", err, calls.Load(), len(events))
	}
	if c := Classify(nil, nil, err); c != policy.ConnectionError || neverSent(err) {
		t.Errorf("POST's reset: class %q, never sent %v", c, neverSent(err))
	}
}
