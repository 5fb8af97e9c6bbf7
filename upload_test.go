package rtx

// Uploads cut short by the server: over HTTP/2 by a stream reset, over
// HTTP/1.1 by a TCP reset, while the request body is still being sent.
// Every retried body must arrive whole.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/athomic-go/rtx/policy"
)

// withProcs runs the test with at least n procs, so that net/http's
// goroutines and the retry loop really run side by side.
func withProcs(t *testing.T, n int) {
	t.Helper()
	if prev := runtime.GOMAXPROCS(0); prev < n {
		runtime.GOMAXPROCS(n)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

// TestH2ResetDuringUploadReplaysWholeBody: the server reads part of a
// body, then resets the stream (INTERNAL_ERROR). net/http's HTTP/2 client
// closes the abandoned stream's body on a goroutine of its own, possibly
// while that stream's read of the caller's body is in flight; the retry
// must still send the whole body.
func TestH2ResetDuringUploadReplaysWholeBody(t *testing.T) {
	withProcs(t, 4)
	const size = 300 << 10
	data := payload(3, size)
	want := sha256.Sum256(data)
	var mu sync.Mutex
	seen := map[string]int{}
	srv, _ := newH2Server(t, func(w http.ResponseWriter, r *http.Request, call int) {
		mu.Lock()
		seen[r.URL.Path]++
		n := seen[r.URL.Path]
		mu.Unlock()
		if n == 1 {
			io.CopyN(io.Discard, r.Body, int64(call%7)<<10) // a little, then reset
			panic(http.ErrAbortHandler)
		}
		b, err := io.ReadAll(r.Body)
		if err != nil || sha256.Sum256(b) != want {
			http.Error(w, "body damaged", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "whole")
	})
	client, _ := pooledClient(t, "quick", srv.Client().Transport)
	const runs = 200
	var failed int
	for i := range runs {
		req := plainRequest(t, srv.URL+"/"+string(rune('a'+i%26))+string(rune('a'+i/26)), data, i%2 == 0)
		resp, err := client.Do(req)
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("run %d: %v", i, err)
			}
			continue
		}
		if body := readClose(t, resp); resp.StatusCode != 200 || body != "whole" {
			t.Errorf("run %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d uploads failed", failed, runs)
	}
}

// TestUploadResetReplaysWholeBody: a 1 MiB PUT; the server reads about
// 100 KiB, then resets the connection (RST). net/http reports it as
// ECONNRESET, or as a write on the connection its reader already closed
// (net.ErrClosed in a write *net.OpError), depending on which of its
// goroutines notices first. Both are ConnectionError: every upload, with a
// captured body or a GetBody, succeeds on a later attempt with the server
// receiving the body byte for byte.
func TestUploadResetReplaysWholeBody(t *testing.T) {
	withProcs(t, 4)
	const size = 1 << 20
	data := payload(4, size)
	want := sha256.Sum256(data)
	var mu sync.Mutex
	seen := map[string]int{}
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		mu.Lock()
		seen[r.URL.Path]++
		n := seen[r.URL.Path]
		mu.Unlock()
		if n == 1 {
			io.CopyN(io.Discard, r.Body, 100<<10)
			resetConn(t, w)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil || sha256.Sum256(b) != want {
			http.Error(w, "body damaged", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "whole")
	})
	srv.Start()
	base := &countingBase{base: cleanhttp.DefaultPooledTransport()}
	client, _ := pooledClient(t, "quick", base)
	const uploads = 100
	for i := range uploads {
		url := fmt.Sprintf("%s/u%d", srv.URL, i)
		var req *http.Request
		if i%2 == 0 {
			req = plainRequest(t, url, data, i%4 == 0) // captured
		} else {
			req, _ = http.NewRequest("PUT", url, bytes.NewReader(data)) // GetBody
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		if body := readClose(t, resp); resp.StatusCode != 200 || body != "whole" {
			t.Fatalf("upload %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := srv.calls.Load(); n < 2*uploads {
		t.Fatalf("%d calls for %d uploads: some were never reset", n, uploads)
	}
	forms := map[string]int{}
	base.mu.Lock()
	defer base.mu.Unlock()
	for _, err := range base.errs {
		if c := Classify(nil, nil, err); c != policy.ConnectionError {
			t.Errorf("%v: class %q, want ConnectionError", err, c)
		}
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			forms["ECONNRESET"]++
		case errors.Is(err, syscall.EPIPE):
			forms["EPIPE"]++
		case closedWrite(err) && errors.Is(err, net.ErrClosed):
			forms["write on closed connection"]++
		default:
			forms[fmt.Sprintf("other (%T)", err)]++
		}
	}
	t.Logf("reset forms over %d failed attempts: %v", len(base.errs), forms)
}
