package rtx

// Uploads cut short by the server: over HTTP/2 by a stream reset, over
// HTTP/1.1 by a TCP reset, while the request body is still being sent.
// Every retried body must arrive whole.

import (
	"crypto/sha256"
	"io"
	"net/http"
	"runtime"
	"sync"
	"testing"
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
