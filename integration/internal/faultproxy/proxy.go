// Package faultproxy is a reverse proxy on loopback that injects the faults
// a client meets between itself and a server: connections reset mid-request,
// answers held past the client's per-attempt timeout, and 503 answers.
//
// Faults follow a script: each request that arrives takes the next fault of
// the script, and once the script is spent requests pass through to the
// upstream server untouched. Every request is counted by the fault it got, so
// a test can compare what reached the wire with what its client reports.
package faultproxy

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Fault is what the proxy does to one request.
type Fault int

const (
	// Pass forwards the request to the upstream server.
	Pass Fault = iota
	// Reset reads the request, then aborts the connection with a TCP RST
	// (SO_LINGER 0, then close): the client sees "connection reset by peer"
	// after its request reached the server.
	Reset
	// Delay holds the request without answering until the client gives up
	// (closes the connection) or Proxy.MaxDelay passes, then forwards it.
	Delay
	// Unavailable answers 503 with a Prometheus-style JSON error body and
	// closes the connection, as a front end shedding load does. Closing
	// keeps the count exact: a Reset that followed on the same keep-alive
	// connection would be resent once by net/http itself (a replayable
	// request on a reused connection that died before answering), below any
	// RoundTripper wrapped around the transport.
	Unavailable
)

// String names the fault, for test output.
func (f Fault) String() string {
	switch f {
	case Pass:
		return "pass"
	case Reset:
		return "reset"
	case Delay:
		return "delay"
	case Unavailable:
		return "503"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Record is one request the proxy received and the fault it got.
type Record struct {
	Method string
	Path   string
	Fault  Fault
}

// Proxy is a fault-injecting reverse proxy listening on 127.0.0.1.
// Its methods are safe for concurrent use.
type Proxy struct {
	// URL is the proxy's base URL, "http://127.0.0.1:<port>".
	URL string

	srv       *httptest.Server
	upstream  *httputil.ReverseProxy
	transport *http.Transport
	maxDelay  time.Duration
	closing   chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	script  []Fault
	records []Record
}

// New starts a proxy in front of upstream (a base URL such as
// "http://127.0.0.1:9090"). A Delay fault holds a request at most maxDelay.
// Close stops it.
func New(upstream string, maxDelay time.Duration) (*Proxy, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	// A transport of its own (no environment proxy, no shared pool), so
	// Close can release every connection it opened.
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	p := &Proxy{
		transport: tr,
		maxDelay:  maxDelay,
		closing:   make(chan struct{}),
		upstream: &httputil.ReverseProxy{
			Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
			Transport: tr,
		},
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.URL = p.srv.URL
	return p, nil
}

// Script replaces the faults still to come: the next requests get faults
// in order, and requests after them pass. It also clears the records.
func (p *Proxy) Script(faults ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.script = append([]Fault(nil), faults...)
	p.records = nil
}

// Records returns the requests received since the last Script call.
func (p *Proxy) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

// Count returns how many requests since the last Script call got fault f.
func (p *Proxy) Count(f Fault) int {
	n := 0
	for _, r := range p.Records() {
		if r.Fault == f {
			n++
		}
	}
	return n
}

// Close stops the proxy: held requests are released, open connections are
// closed and the upstream transport's idle connections are dropped.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		p.srv.Close()
		p.transport.CloseIdleConnections()
	})
}

func (p *Proxy) next(r *http.Request) Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := Pass
	if len(p.script) > 0 {
		f = p.script[0]
		p.script = p.script[1:]
	}
	p.records = append(p.records, Record{Method: r.Method, Path: r.URL.Path, Fault: f})
	return f
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	switch p.next(r) {
	case Reset:
		reset(w)
		return
	case Delay:
		t := time.NewTimer(p.maxDelay)
		defer t.Stop()
		select {
		case <-r.Context().Done(): // the client gave up: nothing to answer
			return
		case <-p.closing: // abort the connection: no answer at all
			panic(http.ErrAbortHandler)
		case <-t.C: // answer late
		}
	case Unavailable:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"unavailable","error":"injected fault: 503"}`))
		return
	}
	p.upstream.ServeHTTP(w, r)
}

// reset aborts the connection under w with a TCP RST.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil { // not on HTTP/1: say so loudly rather than pass
		http.Error(w, "faultproxy: cannot reset: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}
