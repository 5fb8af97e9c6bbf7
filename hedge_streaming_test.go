package rtx

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
)

// Regression: a loser whose first byte (here a 103 Early Hints) arrived before the
// winner landed is never cancelled; its streaming body then holds the
// collector goroutine and the connection until 64 KiB arrive.
func TestHedgeAnsweredLoserIsCancelled(t *testing.T) {
	var hits atomic.Int32
	var loserGone atomic.Bool
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 { // primary
			time.Sleep(25 * time.Millisecond) // the hedge left at 20ms
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			time.Sleep(25 * time.Millisecond) // the hedge won at ~30ms
			w.WriteHeader(200)
			for {
				if _, err := w.Write([]byte("x")); err != nil {
					loserGone.Store(true)
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					loserGone.Store(true)
					return
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
		w.Write([]byte("hedge"))
	}))
	defer srv.Close()
	defer close(stop)
	base := cleanhttp.DefaultPooledTransport()
	defer base.CloseIdleConnections()
	tr := New(testFactory(t, loserSettings), "h", WithBase(base))
	resp, err := tr.RoundTrip(mustGet(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if b := readClose(t, resp); b != "hedge" {
		t.Fatalf("body %q", b)
	}
	time.Sleep(time.Second)
	if !loserGone.Load() {
		t.Fatal("one second after the hedge won, the loser's stream is still open")
	}
}
