package rtx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/athomic-go/rtx/policy"
)

const hedgeSettings = `
[default.resilience.retry.policies.hedge]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.02
max_hedges = 1

[default.resilience.retry.policies.hedge2]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.01
max_hedges = 2
budget_ratio = 0.0
budget_min_retries_per_sec = 0.1

[default.resilience.retry.policies.hedge_timeout]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.005
timeout_seconds = 0.1

[default.resilience.retry.policies.plain]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
`

// hedgeServer answers by the order in which requests arrive: the first
// slow ones hang until their request is cancelled (counted), the rest
// answer at once. It keeps every body it read.
type hedgeServer struct {
	*httptest.Server
	slow      int32 // how many of the first requests hang
	hits      atomic.Int32
	cancelled atomic.Int32
	mu        sync.Mutex
	bodies    [][]byte
}

func newHedgeServer(t *testing.T, slow int32) *hedgeServer {
	t.Helper()
	h := &hedgeServer{slow: slow}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := h.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, body)
		h.mu.Unlock()
		if n <= h.slow {
			<-r.Context().Done()
			h.cancelled.Add(1)
			return
		}
		fmt.Fprintf(w, "answer %d", n)
	}))
	t.Cleanup(h.Close)
	return h
}

func hedgeTransport(t *testing.T, name string, opts ...Option) *Transport {
	t.Helper()
	base := cleanhttp.DefaultPooledTransport()
	tr := New(testFactory(t, hedgeSettings), name, append([]Option{WithBase(base)}, opts...)...)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func TestHedgeWinsAndTheLoserIsCancelled(t *testing.T) {
	srv := newHedgeServer(t, 1)
	tr := hedgeTransport(t, "hedge")
	resp, err := tr.RoundTrip(mustGet(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if body := readClose(t, resp); body != "answer 2" {
		t.Fatalf("body %q: want the hedge's answer", body)
	}
	waitFor(t, "the server to see the loser's cancellation", func() bool { return srv.cancelled.Load() == 1 })
	if srv.hits.Load() != 2 {
		t.Errorf("%d hits, want 2", srv.hits.Load())
	}
}

func TestHedgeNeverForAPostWithoutKey(t *testing.T) {
	srv := newHedgeServer(t, 0)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.hits.Add(1)
		time.Sleep(60 * time.Millisecond) // a slow answer, three hedge delays long
	}))
	defer slow.Close()
	tr := hedgeTransport(t, "hedge")
	req, _ := http.NewRequest("POST", slow.URL, bytes.NewReader([]byte("order")))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if srv.hits.Load() != 1 {
		t.Errorf("a POST without an idempotency key was sent %d times", srv.hits.Load())
	}
	req, _ = http.NewRequest("POST", slow.URL, bytes.NewReader([]byte("order")))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if srv.hits.Load() != 3 {
		t.Errorf("a POST with an idempotency key: %d hits in all, want 3 (hedged once)", srv.hits.Load())
	}
}

func TestHedgeSendsTheWholeBodyInEveryCopy(t *testing.T) {
	data := payload(7, 200<<10)
	for _, getBody := range []bool{false, true} {
		t.Run(fmt.Sprintf("GetBody=%v", getBody), func(t *testing.T) {
			srv := newHedgeServer(t, 1)
			tr := hedgeTransport(t, "hedge")
			req := plainRequest(t, srv.URL, data, true)
			if getBody {
				req, _ = http.NewRequest("PUT", srv.URL, bytes.NewReader(data))
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			if body := readClose(t, resp); body != "answer 2" {
				t.Fatalf("body %q: want the hedge's answer", body)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.bodies) != 2 {
				t.Fatalf("%d copies", len(srv.bodies))
			}
			for i, b := range srv.bodies {
				if !bytes.Equal(b, data) {
					t.Errorf("copy %d: %d bytes, not the body sent", i, len(b))
				}
			}
		})
	}
}

// A hedge already sent survives the budget running out, and an exhausted
// budget sends no further hedge.
func TestHedgeInFlightSurvivesAnExhaustedBudget(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1: // the first attempt hangs
			<-r.Context().Done()
		default: // the hedge answers once released
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "hedge")
		}
	}))
	defer srv.Close()
	tr := hedgeTransport(t, "hedge2") // floor 0.1/s over 10 s: one hedge token
	done := make(chan string)
	go func() {
		resp, err := tr.RoundTrip(mustGet(t, srv.URL))
		if err != nil {
			done <- err.Error()
			return
		}
		done <- readClose(t, resp)
	}()
	waitFor(t, "the hedge to reach the server", func() bool { return hits.Load() == 2 })
	// Several hedge delays pass with the budget spent: no third copy.
	time.Sleep(50 * time.Millisecond) // let hedge timers fire; asserting that nothing happens needs time to pass
	close(release)
	if got := <-done; got != "hedge" {
		t.Fatalf("got %q, want the hedge's answer", got)
	}
	if hits.Load() != 2 {
		t.Errorf("%d copies sent on an exhausted budget, want 2", hits.Load())
	}
}

func TestHedgePerAttemptTimeoutAppliesToEachCopy(t *testing.T) {
	srv := newHedgeServer(t, 100) // every request hangs
	tr := hedgeTransport(t, "hedge_timeout")
	start := time.Now()
	_, err := tr.RoundTrip(mustGet(t, srv.URL))
	var re *RetryError
	if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError || re.Attempts != 2 {
		t.Fatalf("err = %v, want two timed-out copies", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v: the copies were not cut by their timeouts", elapsed)
	}
	waitFor(t, "both copies cancelled at the server", func() bool { return srv.cancelled.Load() == 2 })
}

// Cancelling losers under load never fails another request, with empty and
// non-empty answers: net/http may pool a connection whose answer had no
// body before the answer reaches its caller.
func TestHedgeCancellationNeverBreaksAnotherRequest(t *testing.T) {
	withProcs(t, 2)
	for _, empty := range []bool{true, false} {
		t.Run(fmt.Sprintf("empty=%v", empty), func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := n.Add(1)
				if i%3 == 0 { // a third of the attempts are slow enough to be hedged
					select {
					case <-time.After(2 * time.Millisecond):
					case <-r.Context().Done():
						return
					}
				}
				if !empty {
					io.WriteString(w, strconv.FormatInt(i, 10))
				}
			}))
			defer srv.Close()
			f := testFactory(t, `
[default.resilience.retry.policies.h]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.001
exceptions = ["HTTPException"]
hedge_delay_seconds = 0.001
budget_ratio = -1
`)
			tr := New(f, "h", WithBase(cleanhttp.DefaultPooledTransport()))
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			var wg sync.WaitGroup
			var failed atomic.Int32
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 200 {
						resp, err := client.Get(srv.URL)
						if err != nil {
							if failed.Add(1) == 1 {
								t.Errorf("a request failed: %v", err)
							}
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				}()
			}
			wg.Wait()
			if failed.Load() != 0 {
				t.Errorf("%d of 3200 requests failed", failed.Load())
			}
			t.Logf("%d attempts for 3200 requests", n.Load())
		})
	}
}

func TestRetrierHedgesOnlyWhenAllowed(t *testing.T) {
	f := testFactory(t, hedgeSettings+"\n[default.resilience.retry.policies.hedge_any]\nattempts = 3\nhedge_delay_seconds = 0.01\nwait_min_seconds = 0.001\nwait_max_seconds = 0.001\n")
	run := func(r *Retrier) (calls int32, cancelled bool) {
		var n atomic.Int32
		var gotCancel atomic.Bool
		err := r.Do(context.Background(), func(ctx context.Context) error {
			if n.Add(1) == 1 {
				select {
				case <-ctx.Done():
					gotCancel.Store(true)
					return ctx.Err()
				case <-time.After(200 * time.Millisecond): // slow: twenty hedge delays
					return nil
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n.Load(), gotCancel.Load()
	}
	if calls, _ := run(NewRetrier(f, "hedge_any")); calls != 1 {
		t.Errorf("without AllowHedging: %d calls, want 1", calls)
	}
	calls, _ := run(NewRetrier(f, "hedge_any", AllowHedging()))
	if calls != 2 {
		t.Errorf("with AllowHedging: %d calls, want 2", calls)
	}
}

func TestHedgeSpansAndMetrics(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	srv := newHedgeServer(t, 1)
	tr := hedgeTransport(t, "hedge", WithTracerProvider(tp), WithMeterProvider(mp))
	resp, err := tr.RoundTrip(mustGet(t, srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	waitFor(t, "the loser's span to end", func() bool { return len(rec.Ended()) == 3 })
	hedgeSpans := 0
	for _, s := range rec.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "rtx.hedge" && kv.Value.AsBool() {
				hedgeSpans++
			}
		}
	}
	if hedgeSpans != 1 {
		t.Errorf("%d spans marked rtx.hedge, want 1", hedgeSpans)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	won := int64(-1)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "retry.hedges" {
				for _, p := range sum.DataPoints {
					if v, _ := p.Attributes.Value("won"); v.AsBool() {
						won = p.Value
					}
				}
			}
		}
	}
	if won != 1 {
		t.Errorf("retry.hedges{won=true} = %d, want 1", won)
	}
}

// A live update turns hedging on for the next request, and off again.
func TestHedgingFollowsLiveUpdates(t *testing.T) {
	srv := newHedgeServer(t, 0)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		srv.hits.Add(1)
		select {
		case <-time.After(40 * time.Millisecond): // slower than the hedge delay
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	f := testFactory(t, hedgeSettings)
	tr := New(f, "plain", WithBase(cleanhttp.DefaultPooledTransport()))
	defer tr.CloseIdleConnections()
	send := func() int32 {
		before := srv.hits.Load()
		resp, err := tr.RoundTrip(mustGet(t, slow.URL))
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
		return srv.hits.Load() - before
	}
	if n := send(); n != 1 {
		t.Fatalf("no hedging configured: %d copies", n)
	}
	if _, err := f.Update([]byte(hedgeSettings+"hedge_delay_seconds = 0.005\n"), "toml", "live"); err != nil {
		t.Fatal(err)
	}
	if n := send(); n != 2 {
		t.Errorf("after turning hedging on: %d copies, want 2", n)
	}
	if _, err := f.Update([]byte(hedgeSettings), "toml", "live"); err != nil {
		t.Fatal(err)
	}
	if n := send(); n != 1 {
		t.Errorf("after turning hedging off: %d copies, want 1", n)
	}
}
