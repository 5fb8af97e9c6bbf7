package rtx

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type opaqueReader struct{ io.Reader } // no GetBody from NewRequest

// Regression: net/http may call GetBody of a hedged loser after rtx's RoundTrip has
// returned (HTTP/2 resends a REFUSED_STREAM from inside its RoundTrip);
// by then the replay may be back in the pool, serving another request.
func TestHedgeLateGetBodyNeverReadsAnotherRequestsBody(t *testing.T) {
	leaked := ""
	for i := 0; i < 20 && leaked == ""; i++ {
		var aCalls atomic.Int32
		bRead, loserDone := make(chan struct{}), make(chan struct{})
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			io.ReadAll(r.Body)
			r.Body.Close()
			if r.Header.Get("X-Id") == "B" {
				close(bRead)
				<-loserDone
				return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
			}
			if aCalls.Add(1) == 1 { // A's primary: becomes the loser
				<-r.Context().Done()
				<-bRead
				b, err := r.GetBody() // as http2shouldRetryRequest does
				if err == nil {
					data, _ := io.ReadAll(b)
					leaked = string(data)
					b.Close()
				}
				close(loserDone)
				return nil, r.Context().Err()
			}
			return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
		})
		tr := New(testFactory(t, loserSettings), "h", WithBase(base))
		reqA, _ := http.NewRequest("PUT", "http://example.test/", opaqueReader{strings.NewReader("secret-A")})
		reqA.Header.Set("X-Id", "A")
		resp, err := tr.RoundTrip(reqA)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		reqB, _ := http.NewRequest("PUT", "http://example.test/", opaqueReader{strings.NewReader("secret-B")})
		reqB.Header.Set("X-Id", "B")
		resp, err = tr.RoundTrip(reqB)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if leaked == "secret-B" {
		t.Fatalf("request A's GetBody, called late, returned request B's body: %q", leaked)
	}
	t.Logf("leaked=%q", leaked)
}
