package rtx

// Body replay: bodies without GetBody are captured as they are first sent
// and sent again byte for byte; larger ones stream once; failures are never
// turned into an empty or truncated resend.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/jarcoal/httpmock"
)

// plainReader hides every method but Read, so that net/http cannot learn
// the body's length or set GetBody.
type plainReader struct{ r io.Reader }

func (p *plainReader) Read(b []byte) (int, error) { return p.r.Read(b) }

// payload returns n pseudo-random bytes, distinct per seed.
func payload(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := mrand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	r.Read(b)
	return b
}

// plainRequest returns a PUT of data through a plainReader: no GetBody,
// and an unknown length (chunked) unless knownLength.
func plainRequest(t testing.TB, url string, data []byte, knownLength bool) *http.Request {
	t.Helper()
	req, err := http.NewRequest("PUT", url, &plainReader{bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if req.GetBody != nil {
		t.Fatal("plain reader got a GetBody")
	}
	if knownLength {
		req.ContentLength = int64(len(data))
	}
	return req
}

// hashLog records what a server received on each attempt.
type hashLog struct {
	mu     sync.Mutex
	sums   [][32]byte
	errs   []error
	sizes  []int
	unread int // attempts answered without reading the body
}

func (h *hashLog) read(r *http.Request) (sum [32]byte, err error) {
	b, err := io.ReadAll(r.Body)
	sum = sha256.Sum256(b)
	h.mu.Lock()
	h.sums = append(h.sums, sum)
	h.errs = append(h.errs, err)
	h.sizes = append(h.sizes, len(b))
	h.mu.Unlock()
	return sum, err
}

func TestBodyReplayLoopback(t *testing.T) {
	for _, size := range []int{64 << 10, 1 << 20} {
		for _, known := range []bool{false, true} {
			t.Run(fmt.Sprintf("%dKiB/knownLength=%v", size>>10, known), func(t *testing.T) {
				data := payload(uint64(size), size)
				want := sha256.Sum256(data)
				var log hashLog
				srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
					log.read(r)
					if call < 3 {
						w.WriteHeader(503)
					}
				})
				srv.Start()
				client, _ := pooledClient(t, "quick", nil)
				resp, err := client.Do(plainRequest(t, srv.URL, data, known))
				if err != nil {
					t.Fatal(err)
				}
				readClose(t, resp)
				if resp.StatusCode != 200 || len(log.sums) != 3 {
					t.Fatalf("status %d after %d attempts, want 200 after 3", resp.StatusCode, len(log.sums))
				}
				for i := range log.sums {
					if log.errs[i] != nil || log.sums[i] != want {
						t.Errorf("attempt %d: server read %d bytes (err %v), hash mismatch=%v", i+1, log.sizes[i], log.errs[i], log.sums[i] != want)
					}
				}
			})
		}
	}
}

// TestBodyEarlyResponse: the server answers 503 before reading the body,
// then reads it on the next attempt; that attempt gets all of it.
func TestBodyEarlyResponse(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("knownLength=%v", known), func(t *testing.T) {
			data := payload(7, 1<<20)
			want := sha256.Sum256(data)
			var log hashLog
			srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
				if call == 1 {
					w.WriteHeader(503) // the body is left unread
					return
				}
				if sum, err := log.read(r); err != nil || sum != want {
					w.WriteHeader(400)
				}
			})
			srv.Start()
			client, _ := pooledClient(t, "quick", nil)
			resp, err := client.Do(plainRequest(t, srv.URL, data, known))
			if err != nil {
				t.Fatal(err)
			}
			readClose(t, resp)
			if resp.StatusCode != 200 || len(log.sums) != 1 || log.sizes[0] != len(data) {
				t.Fatalf("status %d, server read %v bytes; want 200 and the whole body once", resp.StatusCode, log.sizes)
			}
		})
	}
}

// TestBodyConcurrentReplay sends many bodies of random sizes at once
// through one Transport: pooled capture buffers must never mix bodies.
func TestBodyConcurrentReplay(t *testing.T) {
	const goroutines, perG = 32, 10
	var mismatches atomic.Int32
	var mu sync.Mutex
	attempts := map[string]int{}
	srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
		id := r.Header.Get("X-Id")
		mu.Lock()
		attempts[id]++
		n := attempts[id]
		mu.Unlock()
		if n == 1 && call%2 == 0 {
			w.WriteHeader(503) // early answer, body unread
			return
		}
		b, err := io.ReadAll(r.Body)
		if sum := fmt.Sprintf("%x", sha256.Sum256(b)); err != nil || sum != r.Header.Get("X-Sum") {
			mismatches.Add(1)
			w.WriteHeader(400)
			return
		}
		if n == 1 {
			w.WriteHeader(503)
		}
	})
	srv.Start()
	client, _ := pooledClient(t, "quick", nil)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(g), 1))
			for i := range perG {
				size := rng.IntN(96 << 10)
				if i == 0 {
					size = 0
				}
				data := payload(uint64(g*1000+i), size)
				req := plainRequest(t, srv.URL, data, i%2 == 0)
				req.Header.Set("X-Id", fmt.Sprintf("%d-%d", g, i))
				req.Header.Set("X-Sum", fmt.Sprintf("%x", sha256.Sum256(data)))
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				readClose(t, resp)
				if resp.StatusCode != 200 {
					t.Errorf("request %d-%d (%d bytes): status %d", g, i, size, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if n := mismatches.Load(); n != 0 {
		t.Fatalf("%d attempts carried a corrupted body", n)
	}
	if len(attempts) != goroutines*perG {
		t.Fatalf("%d distinct requests reached the server, want %d", len(attempts), goroutines*perG)
	}
}

// TestBodyLargerThanCap: a body above the capture cap is sent once,
// complete and streamed, and the 503 comes back as is.
func TestBodyLargerThanCap(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("knownLength=%v", known), func(t *testing.T) {
			data := payload(11, 64<<10)
			want := sha256.Sum256(data)
			var log hashLog
			srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
				log.read(r)
				w.WriteHeader(503)
				io.WriteString(w, "busy")
			})
			srv.Start()
			var failed []FailEvent
			client, _ := pooledClient(t, "quick", nil, WithMaxReplayBody(4096), OnFail(func(e FailEvent) { failed = append(failed, e) }))
			resp, err := client.Do(plainRequest(t, srv.URL, data, known))
			if err != nil {
				t.Fatal(err)
			}
			if body := readClose(t, resp); resp.StatusCode != 503 || body != "busy" {
				t.Fatalf("got %d %q, want the 503 as is", resp.StatusCode, body)
			}
			if len(log.sums) != 1 || log.errs[0] != nil || log.sums[0] != want {
				t.Fatalf("server saw %d attempts of %v bytes, want 1 attempt of %d intact bytes", len(log.sums), log.sizes, len(data))
			}
			if len(failed) != 1 || failed[0].Reason != ReasonBody {
				t.Errorf("fail events %+v, want one for the body", failed)
			}
		})
	}
}

// echoBase is an in-memory base that reads each attempt's body in full and
// answers the given statuses in turn, then 200.
type echoBase struct {
	mu     sync.Mutex
	bodies [][]byte
	codes  []int
}

func (e *echoBase) RoundTrip(req *http.Request) (*http.Response, error) {
	var b []byte
	if req.Body != nil {
		b, _ = io.ReadAll(req.Body)
		req.Body.Close()
	}
	e.mu.Lock()
	e.bodies = append(e.bodies, b)
	n := len(e.bodies)
	e.mu.Unlock()
	code := 200
	if n <= len(e.codes) {
		code = e.codes[n-1]
	}
	return httpmock.NewStringResponse(code, ""), nil
}

// TestBodyCapBoundary: a body of exactly the cap is captured whole and
// replayed ("up to a cap"); one byte more is sent once.
func TestBodyCapBoundary(t *testing.T) {
	const limit = 4096
	for _, tc := range []struct {
		size  int
		known bool
		want  int // attempts
	}{
		{limit - 1, false, 3},
		{limit - 1, true, 3},
		{limit, false, 3},
		{limit, true, 3},
		{limit + 1, false, 1},
		{limit + 1, true, 1},
	} {
		t.Run(fmt.Sprintf("%d/knownLength=%v", tc.size, tc.known), func(t *testing.T) {
			data := payload(uint64(tc.size), tc.size)
			base := &echoBase{codes: []int{503, 503, 503}}
			resp, err := New(testFactory(t, contractSettings), "quick", WithBase(base), WithMaxReplayBody(limit)).
				RoundTrip(plainRequest(t, testURL, data, tc.known))
			if err != nil {
				t.Fatal(err)
			}
			readClose(t, resp)
			if len(base.bodies) != tc.want {
				t.Fatalf("%d attempts, want %d", len(base.bodies), tc.want)
			}
			for i, b := range base.bodies {
				if !bytes.Equal(b, data) {
					t.Errorf("attempt %d sent %d bytes, want the %d given", i+1, len(b), len(data))
				}
			}
		})
	}
}

// TestBodyBaseStillReadingDuringDelay: net/http may go on reading a request
// body after RoundTrip has returned (an early response). If the earlier
// attempt reads on during the delay, the next attempt must still send the
// whole body, or not be made at all.
func TestBodyBaseStillReadingDuringDelay(t *testing.T) {
	const limit = 4096
	for _, size := range []int{limit / 2, 4 * limit} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := payload(uint64(size), size)
			var sent [][]byte
			var status int
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				base := tripFunc(func(req *http.Request) (*http.Response, error) {
					mu.Lock()
					n := len(sent)
					sent = append(sent, nil)
					mu.Unlock()
					if n == 0 {
						// Answer at once; the write loop reads the body later.
						go func() {
							io.Copy(io.Discard, req.Body)
							req.Body.Close()
						}()
						return httpmock.NewStringResponse(503, ""), nil
					}
					b, _ := io.ReadAll(req.Body)
					req.Body.Close()
					mu.Lock()
					sent[n] = b
					mu.Unlock()
					return httpmock.NewStringResponse(200, ""), nil
				})
				resp, err := New(testFactory(t, contractSettings), "slow", WithBase(base), WithMaxReplayBody(limit)).
					RoundTrip(plainRequest(t, testURL, data, false))
				var re *RetryError
				switch {
				case errors.As(err, &re) && re.Reason == ReasonBody:
					// The body outgrew the cap during the delay, after the
					// 503 was drained: the loop ends on an error.
				case err != nil:
					t.Fatal(err)
				default:
					readClose(t, resp)
					status = resp.StatusCode
				}
				synctest.Wait()
			})
			switch {
			case len(sent) == 1 && status != 200:
				// Not replayable any more: the 503 came back, or a
				// RetryError saying so. Fine.
			case len(sent) == 2 && bytes.Equal(sent[1], data):
			case len(sent) == 2:
				t.Fatalf("retry sent %d of %d bytes: truncated", len(sent[1]), len(data))
			default:
				t.Fatalf("%d attempts, status %d", len(sent), status)
			}
		})
	}
}

// TestBodyGetBodyUsed: a request with GetBody is replayed through it, one
// call per retry, and its first body is sent as is.
func TestBodyGetBodyUsed(t *testing.T) {
	const text = "replay me through GetBody"
	base := &echoBase{codes: []int{503, 503}}
	first := newTrackedBody(text)
	var gets atomic.Int32
	var made []*trackedBody
	req := newReq(t, context.Background(), "PUT", first)
	req.GetBody = func() (io.ReadCloser, error) {
		gets.Add(1)
		b := newTrackedBody(text)
		made = append(made, b)
		return b, nil
	}
	resp, err := New(testFactory(t, contractSettings), "quick", WithBase(base)).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if len(base.bodies) != 3 || gets.Load() != 2 {
		t.Fatalf("%d attempts, %d GetBody calls; want 3 and 2", len(base.bodies), gets.Load())
	}
	for i, b := range base.bodies {
		if string(b) != text {
			t.Errorf("attempt %d sent %q", i+1, b)
		}
	}
	for i, b := range append(made, first) {
		if b.closes.Load() != 1 {
			t.Errorf("body %d closed %d times", i, b.closes.Load())
		}
	}
}

func TestBodyGetBodyFails(t *testing.T) {
	errGet := errors.New("cannot rewind")
	base := &echoBase{codes: []int{503, 503}}
	req := newReq(t, context.Background(), "PUT", newTrackedBody("x"))
	req.GetBody = func() (io.ReadCloser, error) { return nil, errGet }
	resp, err := New(testFactory(t, contractSettings), "quick", WithBase(base)).RoundTrip(req)
	if err != nil || resp.StatusCode != 503 || len(base.bodies) != 1 {
		t.Fatalf("got %v %v after %d attempts, want the 503 as is after 1", resp, err, len(base.bodies))
	}
	readClose(t, resp)
}

// failingReader returns n bytes of data, then err.
type failingReader struct {
	n   int
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, f.err
	}
	m := min(len(p), f.n)
	for i := range p[:m] {
		p[i] = 'a'
	}
	f.n -= m
	return m, nil
}

// TestBodyReadFails: a body whose Read fails is not retried, and no
// attempt carries an empty or shortened body as if it were whole.
func TestBodyReadFails(t *testing.T) {
	errRead := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unlisted error", errRead},
		{"listed class", io.ErrUnexpectedEOF}, // ConnectionError when it comes back from the base
	} {
		t.Run("loopback/"+tc.name, func(t *testing.T) {
			var complete, reached atomic.Int32
			srv := newFaultServer(t, func(w http.ResponseWriter, r *http.Request, call int) {
				reached.Add(1)
				if _, err := io.ReadAll(r.Body); err == nil {
					complete.Add(1)
				}
				w.WriteHeader(503)
			})
			srv.Start()
			client, tr := pooledClient(t, "quick", nil)
			req, _ := http.NewRequest("PUT", srv.URL, &plainReader{&failingReader{n: 10 << 10, err: tc.err}})
			resp, err := client.Do(req)
			if err == nil {
				readClose(t, resp)
				t.Fatalf("got %d, want the read error", resp.StatusCode)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("%v does not match the body's error", err)
			}
			tr.CloseIdleConnections()
			if complete.Load() != 0 || reached.Load() > 1 {
				t.Fatalf("server got %d attempts, %d with a complete body; want at most 1, none complete", reached.Load(), complete.Load())
			}
		})
		t.Run("memory/"+tc.name, func(t *testing.T) {
			var calls atomic.Int32
			base := tripFunc(func(req *http.Request) (*http.Response, error) {
				calls.Add(1)
				_, err := io.ReadAll(req.Body)
				req.Body.Close()
				if err == nil {
					t.Error("an attempt read a complete body")
					return httpmock.NewStringResponse(200, ""), nil
				}
				return nil, err
			})
			req := plainRequest(t, testURL, nil, false)
			req.Body = io.NopCloser(&failingReader{n: 100, err: tc.err})
			_, err := New(testFactory(t, contractSettings), "quick", WithBase(base)).RoundTrip(req)
			if !errors.Is(err, tc.err) || calls.Load() != 1 {
				t.Fatalf("got %v after %d attempts, want the read error after 1", err, calls.Load())
			}
			var re *RetryError
			if tc.err == errRead && errors.As(err, &re) {
				t.Errorf("unlisted error wrapped: %v", err)
			}
			if tc.err == io.ErrUnexpectedEOF && (!errors.As(err, &re) || re.Reason != ReasonBody) {
				t.Errorf("got %#v, want a RetryError for the body", err)
			}
		})
	}
}

// TestBodyPoolReuseSequential: one Transport sends many bodies in turn;
// pooled buffers coming back from earlier requests never leak old bytes.
func TestBodyPoolReuseSequential(t *testing.T) {
	base := &echoBase{}
	for range 40 {
		base.codes = append(base.codes, 503, 200) // one retry per request
	}
	tr := New(testFactory(t, contractSettings), "quick", WithBase(base))
	for i := range 40 {
		size := (40 - i) * 3001 // shrinking bodies over reused chunks
		data := payload(uint64(i), size)
		resp, err := tr.RoundTrip(plainRequest(t, testURL, data, false))
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
		for j, b := range base.bodies[len(base.bodies)-2:] {
			if !bytes.Equal(b, data) {
				t.Fatalf("request %d attempt %d: sent %d bytes, want %d intact", i, j+1, len(b), len(data))
			}
		}
	}
}

// TestBodyPoolHeldUntilReadersClose: a base may keep reading a request body
// after RoundTrip has returned. The captured chunks must stay with that
// body until it is closed, whatever other requests do meanwhile.
func TestBodyPoolHeldUntilReadersClose(t *testing.T) {
	const size = 100 << 10
	data := payload(99, size)
	var held io.ReadCloser
	calls := 0
	other := &echoBase{} // serves the other requests
	for range 20 {
		other.codes = append(other.codes, 503, 200)
	}
	base := tripFunc(func(req *http.Request) (*http.Response, error) {
		calls++
		switch calls {
		case 1: // read it all (captured), then fail
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
			return httpmock.NewStringResponse(503, ""), nil
		case 2: // answer now, read later
			held = req.Body
			return httpmock.NewStringResponse(200, ""), nil
		}
		return other.RoundTrip(req)
	})
	tr := New(testFactory(t, contractSettings), "quick", WithBase(base))
	resp, err := tr.RoundTrip(plainRequest(t, testURL, data, false))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	readClose(t, resp)
	// Other requests through the same Transport churn the pools.
	for i := range 20 {
		resp, err := tr.RoundTrip(plainRequest(t, testURL, bytes.Repeat([]byte{byte('A' + i)}, size), false))
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
	}
	got, err := io.ReadAll(held)
	held.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("held body read %d bytes (err %v), intact=%v; want the original %d bytes", len(got), err, bytes.Equal(got, data), size)
	}
}
