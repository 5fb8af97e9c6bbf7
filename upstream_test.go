package rtx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/athomic-go/rtx/policy"
)

// withMaxUpstreams lowers the bound of the per-upstream state, so that a
// test reaches it with thousands of hosts rather than a hundred thousand.
func withMaxUpstreams(n int) Option {
	return optionFunc(func(c *config) { c.maxUpstreams = n })
}

// hostCounter is an in-memory base that answers by host name: hosts
// starting with "bad" get a 503, others a 200. It counts attempts per host.
type hostCounter struct {
	mu   sync.Mutex
	hits map[string]int
	all  atomic.Int64
}

func (h *hostCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	h.all.Add(1)
	h.mu.Lock()
	if h.hits == nil {
		h.hits = map[string]int{}
	}
	h.hits[req.URL.Host]++
	h.mu.Unlock()
	code := 200
	if strings.HasPrefix(req.URL.Host, "bad") {
		code = 503
	}
	return &http.Response{StatusCode: code, Body: http.NoBody, Header: http.Header{}}, nil
}

func (h *hostCounter) count(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[host]
}

// A total outage spread over more upstreams than the old budget map held
// keeps every upstream's budget: the ratio still governs.
func TestBudgetHoldsAcrossThousandsOfUpstreams(t *testing.T) {
	const hosts, perHost = 2000, 10
	base := &hostCounter{}
	doc := fmt.Sprintf(budgetPolicy, "budget_ratio = 0.2\nbudget_min_retries_per_sec = 0.01")
	tr := New(testFactory(t, doc), "p", WithBase(base))
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= hosts*perHost {
					return
				}
				resp, err := tr.RoundTrip(mustGet(t, fmt.Sprintf("http://bad%d.test/", i%hosts)))
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	amp := float64(base.all.Load()) / (hosts * perHost)
	t.Logf("amplification over %d hosts: %.3f", hosts, amp)
	if amp > 1.3 {
		t.Errorf("amplification %.3f > 1.3: budgets were lost", amp)
	}
	if n := tr.e.ups.len(); n != hosts {
		t.Errorf("%d upstream entries, want %d", n, hosts)
	}
}

// Twenty thousand failing hosts leave the state within its bound, and a
// failing host among a stream of new healthy ones still trips its circuit
// after fail_max failures.
func TestCircuitsBoundedAndStillTripping(t *testing.T) {
	const limit = 1024
	base := &hostCounter{}
	doc := circuits + `
[default.resilience.retry.policies.once]
attempts = 1
`
	tr := New(testFactory(t, doc), "once", WithBase(base), withMaxUpstreams(limit))
	send := func(host string) error {
		resp, err := tr.RoundTrip(mustGet(t, "http://"+host+"/"))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for i := range 20000 {
		for range 3 { // fail_max: every one of them opens
			send(fmt.Sprintf("bad%d.test", i))
		}
	}
	if n := tr.e.ups.len(); n > limit {
		t.Fatalf("%d upstream entries kept, bound %d", n, limit)
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("entries %d, heap in use %d KiB", tr.e.ups.len(), ms.HeapInuse>>10)

	refused := 0
	for i := range 150 {
		if err := send("bad-target.test"); errors.Is(err, ErrCircuitOpen) {
			refused++
		}
		if err := send(fmt.Sprintf("good%d.test", i)); err != nil {
			t.Fatalf("healthy host: %v", err)
		}
	}
	if hits := base.count("bad-target.test"); hits != 3 || refused != 147 {
		t.Errorf("failing host reached %d times (want fail_max = 3), %d refusals", hits, refused)
	}
}

// An upstream's budget survives eviction pressure as long as it is in use:
// only entries equal to fresh ones, or the least recently used, go.
func TestEvictionKeepsWhatIsInUse(t *testing.T) {
	tb := newTable(tableShards * 8) // 8 per shard
	now := time.Now().UnixNano()
	p := &policy.Policy{Name: "p", Attempts: 3, BudgetRatio: 0.2, BudgetMinRetriesPerSec: 10, BudgetWindow: 10 * time.Second}
	hot := tb.get([]byte("hot:80"), now)
	hot.lane(p).budget.add(now, 1, 0)
	for i := range 10000 {
		now += int64(time.Millisecond)
		tb.get([]byte("hot:80"), now).lane(p).budget.add(now, 1, 0)
		u := tb.get(fmt.Appendf(nil, "cold%d:80", i), now)
		u.lane(p).budget.add(now, 1, 0)
	}
	if got := tb.get([]byte("hot:80"), now); got != hot {
		t.Error("the upstream in use was evicted")
	}
	if n := tb.len(); n > tableShards*8 {
		t.Errorf("%d entries, bound %d", n, tableShards*8)
	}
}

// Every Transport on a meter provider reports its circuits, and a dropped
// Transport stops being reported.
func TestCircuitGaugeReportsEveryTransport(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	f := testFactory(t, circuits)
	series := func() int {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "retry.circuit_breaker.state" {
					n += len(g.DataPoints)
				}
			}
		}
		return n
	}
	keep := New(f, "p", WithBase(&hostCounter{}), WithMeterProvider(mp))
	keep.RoundTrip(mustGet(t, "http://bad-kept.test/"))
	for i := range 200 {
		tr := New(f, "p", WithBase(&hostCounter{}), WithMeterProvider(mp))
		tr.RoundTrip(mustGet(t, fmt.Sprintf("http://bad%d.test/", i)))
		if i == 0 {
			if n := series(); n != 2 {
				t.Fatalf("%d circuit series with two transports, want 2", n)
			}
			runtime.KeepAlive(tr) // until it has been counted: a collected one is not
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for series() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("dropped transports still reported: %d series", series())
		}
		runtime.GC() // cleanups run after a collection
		runtime.Gosched()
	}
	runtime.KeepAlive(keep)
}

// An entry is 256 bytes, so that its first 128 (what a first try reads)
// are a cache-line pair; see upstream.
func TestUpstreamLayout(t *testing.T) {
	var u upstream
	if size := unsafe.Sizeof(u); size != 256 {
		t.Errorf("an upstream is %d bytes, want 256: adjust upstreamPad", size)
	}
	if end := unsafe.Offsetof(u.budget) + unsafe.Sizeof(u.budget); end > 128 {
		t.Errorf("what a first try reads ends at byte %d, past 128", end)
	}
}

// A budget's buckets count within their slice and saturate instead of
// spilling into each other.
func TestBudgetBucketsSaturate(t *testing.T) {
	var b budget
	b.init(10 * time.Second)
	now := int64(time.Hour)
	b.add(now, countMax+5, countMax+5)
	if f, r := b.counts(now); f != countMax || r != countMax {
		t.Fatalf("counts = %d, %d; want both %d", f, r, countMax)
	}
	b.add(now, 0, -(countMax + 9))
	if f, r := b.counts(now); f != countMax || r != 0 {
		t.Fatalf("after a refund below zero: %d, %d", f, r)
	}
	if f, r := b.counts(now + int64(10*time.Second)); f != 0 || r != 0 {
		t.Fatalf("a window later: %d, %d", f, r)
	}
	if f, _ := b.counts(now + int64(8*time.Second)); f != countMax {
		t.Fatalf("8 s later the slice is still in the window: %d", f)
	}
}
