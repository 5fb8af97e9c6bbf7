package rtx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fixedTransport answers every request with the same 200, allocating nothing.
type fixedTransport struct{ resp http.Response }

func (f *fixedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	f.resp.Body = http.NoBody // shared: undo a wrapper the last caller put on it
	return &f.resp, nil
}

func newFixed() *fixedTransport {
	return &fixedTransport{resp: http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
}

func TestFirstTryGETAllocatesNothingMoreThanBare(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector; CI runs this test without -race too")
	}
	base := newFixed()
	tr := New(testFactory(t, quick), "quick", WithBase(base))
	req := mustGet(t, "http://api.test/x")
	bare := testing.AllocsPerRun(200, func() { base.RoundTrip(req) })
	withRTX := testing.AllocsPerRun(200, func() {
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	})
	if withRTX > bare {
		t.Errorf("rtx allocates %.1f per first-try GET, bare %.1f", withRTX, bare)
	}
}

func TestStreamedPOSTCaptureIsPooled(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector; CI runs this test without -race too")
	}
	base := newFixed()
	tr := New(testFactory(t, quick), "quick", WithBase(base))
	payload := strings.Repeat("x", 64<<10)
	var r strings.Reader
	req, _ := http.NewRequest("POST", "http://api.test/x", nil)
	run := func() {
		r.Reset(payload)
		req.Body = io.NopCloser(&r)
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	run()
	var m1, m2 runtimeMem
	m1.read()
	const n = 200
	for i := 0; i < n; i++ {
		run()
	}
	m2.read()
	perOp := float64(m2.bytes-m1.bytes) / n
	t.Logf("%.0f bytes per 64 KiB streamed POST", perOp)
	if perOp > 0.1*float64(len(payload)) {
		t.Errorf("%.0f bytes allocated per request, want under 10%% of %d", perOp, len(payload))
	}
}

// timedSettings is quick with a per-attempt timeout.
const timedSettings = quick + `
[default.resilience.retry.policies.timed]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
timeout_seconds = 5
exceptions = ["HTTPException"]
[default.resilience.retry.policies.tiny]
attempts = 1
timeout_seconds = 0.002
exceptions = ["HTTPException"]
`

// watchingTransport is fixedTransport that also watches its request's
// context, as net/http does, so the attempt's context must make its Done
// channel and follow the caller's.
type watchingTransport struct{ fixedTransport }

func (w *watchingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	select {
	case <-req.Context().Done():
		return nil, req.Context().Err()
	default:
	}
	return w.fixedTransport.RoundTrip(req)
}

// TestFirstTryWithTimeoutAllocatesAtMostTwo: a per-attempt timeout costs a
// first-try GET at most two allocations over the bare base, under the
// background context and under a cancellable one. The counts with a base
// that watches the context are logged, not checked.
func TestFirstTryWithTimeoutAllocatesAtMostTwo(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector; CI runs this test without -race too")
	}
	cancelled, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		watch bool
		limit float64 // -1: logged only
	}{
		{"background", context.Background(), false, 2},
		{"cancellable", cancelled, false, 2},
		{"background/watching", context.Background(), true, -1},
		{"cancellable/watching", cancelled, true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var base http.RoundTripper = newFixed()
			if tc.watch {
				base = &watchingTransport{*newFixed()}
			}
			tr := New(testFactory(t, timedSettings), "timed", WithBase(base))
			req := mustGet(t, "http://api.test/x").WithContext(tc.ctx)
			bare := testing.AllocsPerRun(200, func() { base.RoundTrip(req) })
			withRTX := testing.AllocsPerRun(200, func() {
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			})
			t.Logf("rtx %.1f allocations per first-try GET with a timeout, bare %.1f: +%.1f", withRTX, bare, withRTX-bare)
			if tc.limit >= 0 && withRTX > bare+tc.limit {
				t.Errorf("rtx allocates %.1f per first-try GET with a timeout, bare %.1f: more than +%.0f", withRTX, bare, tc.limit)
			}
		})
	}
}

// The tests below hold the cheap per-attempt context (attemptCtx) and its
// reused timer to what context.WithCancelCause and time.AfterFunc gave.

// timedAttemptCtx makes a first-try GET under the "timed" policy with a
// base that answers 200 with body and hands back the attempt's context.
func timedAttemptCtx(t *testing.T, parent context.Context, watch bool, body io.ReadCloser) (*http.Response, context.Context) {
	t.Helper()
	var actx context.Context
	base := tripFunc(func(req *http.Request) (*http.Response, error) {
		actx = req.Context()
		if watch {
			select {
			case <-actx.Done():
				return nil, actx.Err()
			default:
			}
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: body, Request: req}, nil
	})
	resp, err := New(testFactory(t, timedSettings), "timed", WithBase(base)).RoundTrip(mustGet(t, "http://api.test/x").WithContext(parent))
	if err != nil {
		t.Fatal(err)
	}
	if actx.Err() != nil {
		t.Fatalf("attempt context ended before the body was closed: %v", actx.Err())
	}
	return resp, actx
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

type ctxKey struct{}

func TestTimedAttemptContext(t *testing.T) {
	t.Run("ends on Close, parent lives", func(t *testing.T) {
		dl := time.Now().Add(time.Hour)
		parent, cancel := context.WithDeadline(context.WithValue(context.Background(), ctxKey{}, "v"), dl)
		defer cancel()
		resp, actx := timedAttemptCtx(t, parent, true, http.NoBody)
		if d, ok := actx.Deadline(); !ok || !d.Equal(dl) {
			t.Errorf("Deadline() = %v, %v; want the caller's, %v", d, ok, dl)
		}
		if v := actx.Value(ctxKey{}); v != "v" {
			t.Errorf("Value = %v, want the caller's", v)
		}
		child, stop := context.WithCancel(actx)
		defer stop()
		var ran sync.WaitGroup
		ran.Add(1)
		context.AfterFunc(actx, ran.Done)
		resp.Body.Close()
		if !isClosed(actx.Done()) || actx.Err() != context.Canceled || context.Cause(actx) != context.Canceled {
			t.Errorf("after Close: Done closed %v, Err %v, Cause %v; want closed, Canceled, Canceled", isClosed(actx.Done()), actx.Err(), context.Cause(actx))
		}
		if child.Err() != context.Canceled {
			t.Errorf("derived context: %v, want Canceled at once", child.Err())
		}
		ran.Wait()
		if parent.Err() != nil {
			t.Errorf("caller's context ended: %v", parent.Err())
		}
	})
	t.Run("follows the parent when watched", func(t *testing.T) {
		errGone := errors.New("caller gone")
		parent, cancel := context.WithCancelCause(context.Background())
		resp, actx := timedAttemptCtx(t, parent, true, http.NoBody)
		defer resp.Body.Close()
		child, stop := context.WithCancel(actx)
		defer stop()
		done := actx.Done()
		cancel(errGone)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("attempt context not ended by the caller's")
		}
		<-child.Done()
		if actx.Err() != context.Canceled || context.Cause(actx) != errGone || context.Cause(child) != errGone {
			t.Errorf("Err %v, Cause %v, derived Cause %v; want Canceled, %v, %v", actx.Err(), context.Cause(actx), context.Cause(child), errGone, errGone)
		}
	})
	t.Run("parent ended unwatched", func(t *testing.T) {
		parent, cancel := context.WithCancel(context.Background())
		resp, actx := timedAttemptCtx(t, parent, false, http.NoBody)
		defer resp.Body.Close()
		cancel()
		if actx.Err() != context.Canceled || !isClosed(actx.Done()) {
			t.Errorf("Err %v, Done closed %v; want Canceled, closed", actx.Err(), isClosed(actx.Done()))
		}
	})
	t.Run("101 keeps io.Writer", func(t *testing.T) {
		type rwc struct {
			io.Reader
			io.Writer
			io.Closer
		}
		var sink strings.Builder
		resp, actx := timedAttemptCtx(t, context.Background(), false, rwc{strings.NewReader(""), &sink, io.NopCloser(nil)})
		w, ok := resp.Body.(io.Writer)
		if !ok {
			t.Fatal("response body lost io.Writer")
		}
		io.WriteString(w, "hi")
		resp.Body.Close()
		if sink.String() != "hi" || actx.Err() == nil {
			t.Errorf("wrote %q, context %v; want hi, ended", sink.String(), actx.Err())
		}
	})
	t.Run("timeout ends derived contexts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			base := tripFunc(func(req *http.Request) (*http.Response, error) {
				// As net/http does: a context of its own, under the attempt's.
				ctx, cancel := context.WithCancelCause(req.Context())
				defer cancel(nil)
				<-ctx.Done()
				return nil, context.Cause(ctx)
			})
			start := time.Now()
			_, err := New(testFactory(t, timedSettings), "tiny", WithBase(base)).RoundTrip(mustGet(t, "http://api.test/x"))
			var ne net.Error
			if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("got %v, want a per-attempt timeout", err)
			}
			if d := time.Since(start); d != 2*time.Millisecond {
				t.Errorf("took %v, want the 2 ms timeout", d)
			}
		})
	})
}

// TestAttemptTimerReuse: reused timers never end a later attempt, whether
// the attempts before them timed out or not, and a Transport may serve both
// synctest bubbles and the real clock.
func TestAttemptTimerReuse(t *testing.T) {
	t.Run("no stale fire", func(t *testing.T) {
		var n sync.Mutex
		slow := 0
		base := tripFunc(func(req *http.Request) (*http.Response, error) {
			n.Lock()
			slow++
			i := slow
			n.Unlock()
			switch i % 3 {
			case 1:
				<-req.Context().Done() // times out
				return nil, req.Context().Err()
			case 2:
				// Answers as the timer fires: either may win, and a
				// fire may still be on its way when RoundTrip returns.
				time.Sleep(2 * time.Millisecond)
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		})
		tr := New(testFactory(t, timedSettings), "tiny", WithBase(base))
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for range 100 {
					resp, err := tr.RoundTrip(mustGet(t, "http://api.test/x"))
					if err != nil {
						var ne net.Error
						if !errors.As(err, &ne) || !ne.Timeout() {
							t.Errorf("got %v, want a response or a timeout", err)
						}
						continue
					}
					time.Sleep(3 * time.Millisecond) // past the 2 ms timeout
					if err := resp.Request.Context().Err(); err != nil {
						t.Errorf("attempt context ended before Close: %v", err)
					}
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
	})
	t.Run("bubbles and real clock", func(t *testing.T) {
		base := tripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Path == "/slow" {
				<-req.Context().Done()
				return nil, req.Context().Err()
			}
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		})
		tr := New(testFactory(t, timedSettings), "tiny", WithBase(base))
		get := func(t *testing.T, path string) {
			t.Helper()
			resp, err := tr.RoundTrip(mustGet(t, "http://api.test"+path))
			if path == "/slow" {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Errorf("got %v, want a timeout", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		for range 2 {
			get(t, "/fast") // leaves timers for reuse
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				get(t, "/fast")
				get(t, "/slow")
				if d := time.Since(start); d != 2*time.Millisecond {
					t.Errorf("bubble took %v, want its own 2 ms timeout", d)
				}
			})
			get(t, "/slow")
		}
	})
}
