package rtx

// Real faults on loopback TCP: resets, hang-ups, refused dials, slow
// servers, untrusted certificates, and connection reuse across retries.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/athomic-go/rtx/policy"
)

// faultServer is a loopback server that counts the connections it accepts.
type faultServer struct {
	*httptest.Server
	conns atomic.Int32 // connections accepted (StateNew)
	calls atomic.Int32 // requests that reached the handler
}

func newFaultServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, call int)) *faultServer {
	t.Helper()
	fs := &faultServer{}
	fs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handler(w, r, int(fs.calls.Add(1)))
	}))
	fs.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected
	fs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			fs.conns.Add(1)
		}
	}
	t.Cleanup(fs.Close)
	return fs
}

// resetConn hijacks the request's connection and resets it (RST, not FIN).
func resetConn(t *testing.T, w http.ResponseWriter) {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Error(err)
		return
	}
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Error(err)
	}
	c.Close()
}

// pooledClient returns an rtx client over a cleanhttp pooled transport,
// whose idle connections are closed at the end of the test.
func pooledClient(t *testing.T, name string, base http.RoundTripper, opts ...Option) (*http.Client, *Transport) {
	t.Helper()
	if base == nil {
		base = cleanhttp.DefaultPooledTransport()
	}
	tr := New(testFactory(t, contractSettings+faultSettings), name, append([]Option{WithBase(base)}, opts...)...)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, tr
}

const faultSettings = `
[default.resilience.retry.policies.tight]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.002
timeout_seconds = 0.1
exceptions = ["HTTPException"]
budget_ratio = -1
`

// countingBase wraps a base transport, counting attempts and recording the
// last error it returned.
type countingBase struct {
	base  http.RoundTripper
	calls atomic.Int32
	mu    sync.Mutex
	errs  []error
}

func (c *countingBase) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	resp, err := c.base.RoundTrip(r)
	if err != nil {
		c.mu.Lock()
		c.errs = append(c.errs, err)
		c.mu.Unlock()
	}
	return resp, err
}

func (c *countingBase) CloseIdleConnections() {
	if ci, ok := c.base.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func TestFaultConnectionReset(t *testing.T) {
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call <= 2 {
			resetConn(t, w)
			return
		}
		io.WriteString(w, "ok")
	})
	srv.Start()
	var events []RetryEvent
	client, _ := pooledClient(t, "quick", nil, OnRetry(func(e RetryEvent) { events = append(events, e) }))
	resp, err := client.Get(srv.URL + "/reset?token=secret")
	if err != nil {
		t.Fatal(err)
	}
	if body := readClose(t, resp); body != "ok" || srv.calls.Load() != 3 {
		t.Fatalf("got %q after %d calls, want ok after 3", body, srv.calls.Load())
	}
	if len(events) != 2 {
		t.Fatalf("%d retry events, want 2", len(events))
	}
	for _, e := range events {
		if e.Class != policy.ConnectionError || !errors.Is(e.Err, syscall.ECONNRESET) {
			t.Errorf("retry event class %q, error %v; want ConnectionError for a reset", e.Class, e.Err)
		}
		if strings.Contains(e.URL, "secret") || e.Method != "GET" {
			t.Errorf("event URL %q, method %q: want the query value redacted", e.URL, e.Method)
		}
	}
}

func TestFaultServerHangsUp(t *testing.T) {
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call == 1 {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close() // FIN before any response
			}
			return
		}
		io.WriteString(w, "ok")
	})
	srv.Start()
	var events []RetryEvent
	client, _ := pooledClient(t, "quick", nil, OnRetry(func(e RetryEvent) { events = append(events, e) }))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if len(events) != 1 || events[0].Class != policy.ConnectionError {
		t.Fatalf("retry events %+v, want one ConnectionError for EOF before a response", events)
	}
}

func TestFaultConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			base := &countingBase{base: cleanhttp.DefaultPooledTransport()}
			_, tr := pooledClient(t, "quick", base)
			req, _ := http.NewRequest(method, "http://"+addr+"/", strings.NewReader("{}"))
			_, err := tr.RoundTrip(req)
			var re *RetryError
			if !errors.As(err, &re) || re.Attempts != 3 || re.Class != policy.ConnectionError || re.Reason != ReasonAttempts {
				t.Fatalf("got %#v, want a RetryError after 3 ConnectionError attempts", err)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || base.calls.Load() != 3 {
				t.Fatalf("%v after %d attempts, want connection refused after 3", err, base.calls.Load())
			}
		})
	}
}

func TestFaultSlowServerTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	srv.Start()
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	var events []RetryEvent
	_, tr := pooledClient(t, "tight", nil, OnRetry(func(e RetryEvent) { events = append(events, e) }))
	start := time.Now()
	_, err := tr.RoundTrip(mustGet(t, srv.URL))
	var re *RetryError
	if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError || re.Attempts != 2 {
		t.Fatalf("got %#v, want a RetryError of class HTTPTimeoutError after 2 attempts", err)
	}
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("took %v, want two attempts of 100ms", elapsed)
	}
	if len(events) != 1 || events[0].Class != policy.HTTPTimeoutError {
		t.Errorf("retry events %+v", events)
	}
}

func TestFaultResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		if call == 1 {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		io.WriteString(w, "ok")
	})
	srv.Start()
	t.Cleanup(func() { close(release) })
	base := cleanhttp.DefaultPooledTransport()
	base.ResponseHeaderTimeout = 50 * time.Millisecond
	var events []RetryEvent
	client, _ := pooledClient(t, "quick", base, OnRetry(func(e RetryEvent) { events = append(events, e) }))
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if len(events) != 1 || events[0].Class != policy.HTTPTimeoutError {
		t.Fatalf("retry events %+v, want one HTTPTimeoutError", events)
	}
}

func TestFaultUntrustedCertificateNotRetried(t *testing.T) {
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) { io.WriteString(w, "ok") })
	srv.StartTLS()
	base := &countingBase{base: cleanhttp.DefaultPooledTransport()} // does not trust srv's certificate
	var failed int
	client, _ := pooledClient(t, "quick", base, OnFail(func(FailEvent) { failed++ }))
	_, err := client.Get(srv.URL)
	if err == nil {
		t.Fatal("untrusted certificate accepted")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if srv.conns.Load() != 1 || base.calls.Load() != 1 || srv.calls.Load() != 0 || failed != 0 {
		t.Fatalf("%d connections, %d attempts, %d give-ups: want one of each but no give-up", srv.conns.Load(), base.calls.Load(), failed)
	}
	if len(base.errs) != 1 || err != base.errs[0] {
		t.Fatalf("got %v, want the base's error unchanged (%v)", err, base.errs)
	}
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &cv) || !errors.As(err, &ua) {
		t.Fatalf("%#v is not an unknown authority", err)
	}
	// The same server, trusted, works through the same code path.
	trusted := &http.Client{Transport: New(testFactory(t, contractSettings), "quick", WithBase(srv.Client().Transport))}
	resp, err := trusted.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
}

// TestFaultConnectionReuse: discarded responses are drained, so retries
// reuse the keep-alive connection instead of dialling anew.
func TestFaultConnectionReuse(t *testing.T) {
	junk := strings.Repeat("unavailable\n", 400) // ~4.7 KiB
	var mu sync.Mutex
	seen := map[string]int{}
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		mu.Lock()
		seen[r.URL.Path]++
		n := seen[r.URL.Path]
		mu.Unlock()
		if n <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, junk)
			return
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	srv.Start()
	client, _ := pooledClient(t, "quick", nil)
	const requests = 50
	for i := range requests {
		path := "/r" + strings.Repeat("x", i)
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		if body := readClose(t, resp); resp.StatusCode != 200 || body != "ok "+path {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if srv.calls.Load() != 3*requests {
		t.Fatalf("%d calls, want %d", srv.calls.Load(), 3*requests)
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("%d requests of 3 attempts opened %d connections, want 1", requests, n)
	}
}
