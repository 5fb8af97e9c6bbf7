package rtx

// A framer-level HTTP/2 server (h2c, prior knowledge) that misbehaves on
// the first arrival of each path: REFUSED_STREAM, RST_STREAM after reading
// the request, GOAWAY below the request's stream, GOAWAY at it then close.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/athomic-go/rtx/policy"
)

type framerServer struct {
	ln        net.Listener
	wg        sync.WaitGroup
	mu        sync.Mutex
	arrivals  map[string]int      // method+path -> HEADERS seen
	processed map[string][][]byte // method+path -> bodies read to END_STREAM and acted on
}

func newFramerServer(t *testing.T) *framerServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &framerServer{ln: ln, arrivals: map[string]int{}, processed: map[string][][]byte{}}
	s.wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

type h2stream struct {
	key  string // method+path
	path string
	body []byte
	dead bool // refused: its DATA is dropped
}

// fault is what the server does with a path's first arrival.
func fault(path string) string { return strings.Split(strings.TrimPrefix(path, "/"), "/")[0] }

func (s *framerServer) serve(c net.Conn) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil {
		return
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	fr.WriteSettings()
	streams := map[uint32]*h2stream{}
	respond := func(id uint32, st *h2stream) {
		hbuf.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		fr.WriteData(id, true, []byte("ok "+st.key))
	}
	// complete acts on a request read to its end; false closes the conn.
	complete := func(id uint32, st *h2stream) bool {
		s.mu.Lock()
		first := s.arrivals[st.key] == 1
		s.processed[st.key] = append(s.processed[st.key], st.body)
		s.mu.Unlock()
		delete(streams, id)
		if !first {
			respond(id, st)
			return true
		}
		switch fault(st.path) {
		case "reset":
			fr.WriteRSTStream(id, http2.ErrCodeInternal)
		case "goaway-at":
			fr.WriteGoAway(id, http2.ErrCodeNo, nil)
			return false
		default:
			respond(id, st)
		}
		return true
	}
	goingAway := false // a GOAWAY went out: read on until the client closes, as a graceful server does
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		if goingAway {
			continue // closing now would reset the connection under a body still being written
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			id := f.StreamID
			st := &h2stream{path: f.PseudoValue("path")}
			st.key = f.PseudoValue("method") + " " + st.path
			s.mu.Lock()
			s.arrivals[st.key]++
			first := s.arrivals[st.key] == 1
			s.mu.Unlock()
			streams[id] = st
			if first {
				switch fault(st.path) {
				case "refuse":
					st.dead = true
					fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
				case "goaway-below":
					fr.WriteGoAway(id-2*min(id/2, 1), http2.ErrCodeNo, nil) // the stream before, or 0
					goingAway = true
					continue
				}
			}
			if f.StreamEnded() && !st.dead && !complete(id, st) {
				return
			}
		case *http2.DataFrame:
			if n := len(f.Data()); n > 0 {
				fr.WriteWindowUpdate(0, uint32(n))
			}
			st := streams[f.StreamID]
			if st == nil || st.dead {
				continue
			}
			st.body = append(st.body, f.Data()...)
			if n := len(f.Data()); n > 0 && !f.StreamEnded() {
				fr.WriteWindowUpdate(f.StreamID, uint32(n))
			}
			if f.StreamEnded() && !complete(f.StreamID, st) {
				return
			}
		}
	}
}

// TestH2FramerFaults: which HTTP/2 faults are retried, by whom, for a GET
// and for POSTs, and that no POST is processed twice.
func TestH2FramerFaults(t *testing.T) {
	withProcs(t, 2)
	srv := newFramerServer(t)
	data := payload(9, 150<<10) // past the initial flow-control window
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	base := &countingBase{base: &http.Transport{Protocols: &protocols}}
	client, _ := pooledClient(t, "quick", base)

	type outcome int
	const (
		ok       outcome = iota // 200
		failsNot                // an error the policy does not retry
		failsCon                // a ConnectionError, not retried
	)
	cases := []struct {
		fault, method, body string // body: "" none, "getbody", "captured"
		want                outcome
		rtxAttempts         int32
	}{
		// REFUSED_STREAM and a GOAWAY below the stream: net/http resends
		// what it can rewind itself; rtx sees one attempt.
		{"refuse", "GET", "", ok, 1},
		{"refuse", "POST", "getbody", ok, 1},
		{"goaway-below", "GET", "", ok, 1},
		{"goaway-below", "POST", "getbody", ok, 1},
		// ... and so does a captured body: rtx gives the attempt a GetBody
		// over the capture (without one net/http gives up with "cannot
		// retry err [...] after Request.Body was written", no typed cause).
		{"refuse", "POST", "captured", ok, 1},
		{"goaway-below", "POST", "captured", ok, 1},
		// A reset after the request was read, and a GOAWAY that covers
		// the stream then a close: ConnectionError, retried by rtx when
		// idempotent, never for a POST the server may have processed.
		{"reset", "GET", "", ok, 2},
		{"reset", "PUT", "captured", ok, 2},
		{"reset", "PUT", "getbody", ok, 2},
		{"reset", "POST", "getbody", failsCon, 1},
		{"reset", "POST", "captured", failsCon, 1},
		{"goaway-at", "GET", "", ok, 2},
		{"goaway-at", "PUT", "captured", ok, 2},
		{"goaway-at", "POST", "getbody", failsCon, 1},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("%s/%s/%s", tc.fault, tc.method, tc.body)
		t.Run(name, func(t *testing.T) {
			path := fmt.Sprintf("/%s/%d", tc.fault, i)
			url := "http://" + srv.ln.Addr().String() + path
			var req *http.Request
			switch tc.body {
			case "":
				req, _ = http.NewRequest(tc.method, url, nil)
			case "getbody":
				req, _ = http.NewRequest(tc.method, url, bytes.NewReader(data))
			case "captured":
				req = plainRequest(t, url, data, false)
				req.Method = tc.method
			}
			before := base.calls.Load()
			resp, err := client.Do(req)
			attempts := base.calls.Load() - before
			switch tc.want {
			case ok:
				if err != nil {
					t.Fatalf("err %v, want 200", err)
				}
				if body := readClose(t, resp); resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "ok "+tc.method+" "+path {
					t.Fatalf("%s %d %q", resp.Proto, resp.StatusCode, body)
				}
			case failsNot, failsCon:
				if err == nil {
					readClose(t, resp)
					t.Fatal("succeeded; want the fault back")
				}
				c := Classify(nil, nil, err)
				if wantC := map[outcome]string{failsNot: "", failsCon: policy.ConnectionError}[tc.want]; c != wantC {
					t.Fatalf("%v: class %q, want %q", err, c, wantC)
				}
			}
			if attempts != tc.rtxAttempts {
				t.Errorf("%d attempts through rtx, want %d", attempts, tc.rtxAttempts)
			}
			srv.mu.Lock()
			bodies := srv.processed[tc.method+" "+path]
			arrivals := srv.arrivals[tc.method+" "+path]
			srv.mu.Unlock()
			if want := map[bool]int{true: 2, false: 1}[tc.want == ok]; arrivals != want {
				t.Errorf("the request arrived %d times, want %d", arrivals, want)
			}
			if tc.method == "POST" && len(bodies) > 1 {
				t.Errorf("POST processed %d times", len(bodies))
			}
			for j, b := range bodies {
				if tc.body != "" && !bytes.Equal(b, data) {
					t.Errorf("processed body %d: %d bytes, want the %d sent, byte for byte", j, len(b), len(data))
				}
			}
		})
	}
}

// TestH2FramerCapturedBodyWithGetBody: an attempt whose captured body is
// also its GetBody (as replay.getBody offers) lets net/http resend a POST
// the server never processed, as it does for bodies with a GetBody of
// their own. The shim below stands in for the engine doing so.
func TestH2FramerCapturedBodyWithGetBody(t *testing.T) {
	withProcs(t, 2)
	srv := newFramerServer(t)
	data := payload(10, 150<<10)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Transport{Protocols: &protocols}
	t.Cleanup(h2c.CloseIdleConnections)
	shim := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if rr, ok := req.Body.(*replayReader); ok && req.GetBody == nil {
			r2 := *req
			r2.GetBody = rr.r.getBody
			req = &r2
		}
		return h2c.RoundTrip(req)
	})
	base := &countingBase{base: shim}
	client, _ := pooledClient(t, "quick", base)
	for _, f := range []string{"refuse", "goaway-below"} {
		for i := range 20 {
			path := fmt.Sprintf("/%s/shim%d", f, i)
			req := plainRequest(t, "http://"+srv.ln.Addr().String()+path, data, i%2 == 0)
			req.Method = "POST"
			before := base.calls.Load()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			readClose(t, resp)
			srv.mu.Lock()
			bodies, arrivals := srv.processed["POST "+path], srv.arrivals["POST "+path]
			srv.mu.Unlock()
			if n := base.calls.Load() - before; n != 1 || arrivals != 2 || len(bodies) != 1 || !bytes.Equal(bodies[0], data) {
				t.Fatalf("%s: %d rtx attempts, %d arrivals, %d processed (whole: %v); want 1, 2, 1 whole", path, n, arrivals, len(bodies), len(bodies) == 1 && bytes.Equal(bodies[0], data))
			}
		}
	}
}
