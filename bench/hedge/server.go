package hedge

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"time"
)

// IDHeader names the logical request an attempt belongs to. Every client
// kind repeats the caller's headers on each attempt, hedges included, so the
// server can count attempts per logical request.
const IDHeader = "X-Request-Id"

// answer is the body of every attempt that runs to its end.
const answer = "ok"

// server is a loopback HTTP/1.1 server whose every attempt waits a latency
// decided by (logical request, attempt number), then answers 200 "ok". An
// attempt whose client goes away (a hedge that lost, a per-attempt timeout)
// returns as soon as the server notices: its handler selects on the
// request's context, so the cancellation is seen and counted.
type server struct {
	ts       *httptest.Server
	latency  func(id, attempt int) time.Duration
	attempts []atomic.Int32 // per logical request, attempts received
	// cancelled counts attempts whose client went away before the answer.
	cancelled atomic.Int64
	conns     atomic.Int64 // TCP connections accepted
}

// startServer serves logical requests 0..n-1 with the given latency.
func startServer(n int, latency func(id, attempt int) time.Duration) *server {
	s := &server{latency: latency, attempts: make([]atomic.Int32, n)}
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.ts.Start()
	return s
}

func (s *server) url() string { return s.ts.URL }

// close waits for every handler to return.
func (s *server) close() { s.ts.Close() }

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.Header.Get(IDHeader))
	if err != nil || id < 0 || id >= len(s.attempts) {
		http.Error(w, "bad "+IDHeader, http.StatusBadRequest)
		return
	}
	n := s.attempts[id].Add(1)
	t := time.NewTimer(s.latency(id, int(n)))
	defer t.Stop()
	select {
	case <-t.C:
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		_, _ = w.Write([]byte(answer))
	case <-r.Context().Done():
		s.cancelled.Add(1)
	}
}

// hits sums the attempts received for logical requests lo..hi-1.
func (s *server) hits(lo, hi int) int64 {
	var sum int64
	for i := lo; i < hi; i++ {
		sum += int64(s.attempts[i].Load())
	}
	return sum
}
