// Package faultserver is a loopback HTTP server that injects faults attempt
// by attempt and counts what reaches it: handler hits, TCP connections
// opened and still open, and, per logical request, the request bodies it read
// in full, compared byte for byte with what the client meant to send.
//
// A logical request is named by the X-Request-Id header, which a retrying
// transport repeats on every attempt.
package faultserver

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// IDHeader names the logical request an attempt belongs to.
const IDHeader = "X-Request-Id"

// Fault is what the server does to one attempt.
type Fault int

const (
	None      Fault = iota // answer 200 with Body
	Status503              // answer 503 with a 512-byte body
	Status429              // answer 429 with Retry-After: RetryAfter
	Reset                  // abort the connection with a TCP RST (SetLinger(0), Close)
	Slow                   // answer 200 only after SlowDelay, or give up when the client does
)

// Body is what a healthy attempt answers, 1 KiB.
var Body = bytes.Repeat([]byte("healthy response"), 64)

var errorBody = bytes.Repeat([]byte("x"), 512)

// Record is what the server saw of one logical request.
type Record struct {
	Attempts  int // handler invocations
	Complete  int // request bodies read in full and equal to the expected bytes
	Mismatch  int // request bodies read in full but different from the expected bytes
	Truncated int // request bodies that ended in an error before their end
}

// Config says which faults to inject and what request bodies to expect.
// Every field may be left zero.
type Config struct {
	// Decide returns the fault for attempt n (from 1) of logical request id.
	// Nil injects no fault.
	Decide func(id string, n int) Fault
	// Expect returns the body the client sends for id. Nil: bodies are read
	// and discarded, not compared.
	Expect func(id string) []byte
	// SlowDelay is how long a Slow attempt waits; default 300 ms.
	SlowDelay time.Duration
	// RetryAfter is the Retry-After value of a 429; default "1".
	RetryAfter string
}

// Server is a running fault server. Close it when done.
type Server struct {
	URL string

	cfg     Config
	ts      *httptest.Server
	hits    atomic.Int64
	newConn atomic.Int64
	open    atomic.Int64

	mu      sync.Mutex
	records map[string]*Record
}

// Start starts a server on a loopback port.
func Start(cfg Config) *Server {
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = 300 * time.Millisecond
	}
	if cfg.RetryAfter == "" {
		cfg.RetryAfter = "1"
	}
	s := &Server{cfg: cfg, records: make(map[string]*Record)}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.newConn.Add(1)
			s.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.open.Add(-1)
		}
	}
	s.ts.Start()
	s.URL = s.ts.URL
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ts.Listener.Addr().String() }

// Close shuts the server down, closing every connection.
func (s *Server) Close() { s.ts.Close() }

// Hits is the number of attempts that reached the handler.
func (s *Server) Hits() int64 { return s.hits.Load() }

// Conns is the number of TCP connections accepted so far.
func (s *Server) Conns() int64 { return s.newConn.Load() }

// Open is the number of TCP connections accepted and not yet closed.
func (s *Server) Open() int64 { return s.open.Load() }

// Records returns a copy of every logical request's record, by id.
func (s *Server) Records() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.records))
	for id, r := range s.records {
		out[id] = *r
	}
	return out
}

// WaitOpen polls until no more than n connections are open or the deadline
// passes, and reports the last count.
func (s *Server) WaitOpen(n int64, deadline time.Duration) int64 {
	return Poll(deadline, func() int64 { return s.Open() }, func(v int64) bool { return v <= n })
}

// Poll calls get every millisecond until ok accepts its value or the
// deadline passes, and returns the last value.
func Poll[T any](deadline time.Duration, get func() T, ok func(T) bool) T {
	end := time.NewTimer(deadline)
	defer end.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		v := get()
		if ok(v) {
			return v
		}
		select {
		case <-end.C:
			return get()
		case <-tick.C:
		}
	}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	id := r.Header.Get(IDHeader)
	s.mu.Lock()
	rec := s.records[id]
	if rec == nil {
		rec = new(Record)
		s.records[id] = rec
	}
	rec.Attempts++
	n := rec.Attempts
	s.mu.Unlock()

	s.readBody(id, rec, r)

	fault := None
	if s.cfg.Decide != nil {
		fault = s.cfg.Decide(id, n)
	}
	switch fault {
	case Status503:
		w.Header().Set("Content-Length", strconv.Itoa(len(errorBody)))
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(errorBody)
		return
	case Status429:
		w.Header().Set("Retry-After", s.cfg.RetryAfter)
		w.Header().Set("Content-Length", strconv.Itoa(len(errorBody)))
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(errorBody)
		return
	case Reset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
		return
	case Slow:
		t := time.NewTimer(s.cfg.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(Body)))
	_, _ = w.Write(Body)
}

// readBody reads the whole request body and records whether it arrived
// complete and equal to what the client meant to send.
func (s *Server) readBody(id string, rec *Record, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	got, err := io.ReadAll(r.Body)
	if s.cfg.Expect == nil {
		return
	}
	want := s.cfg.Expect(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		rec.Truncated++
	case bytes.Equal(got, want):
		rec.Complete++
	default:
		rec.Mismatch++
	}
}

// ErrBody reports a response body that differs from [Body].
var ErrBody = errors.New("faultserver: response body differs from the healthy body")

// CheckBody reads resp's body to its end, closes it, and reports whether it
// is the healthy body in full.
func CheckBody(resp *http.Response) error {
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if !bytes.Equal(got, Body) {
		return ErrBody
	}
	return nil
}
