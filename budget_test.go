package rtx

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athomic-go/rtx/policy"
)

const budgetPolicy = `
[default.resilience.retry.policies.p]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.001
exceptions = ["HTTPException"]
%s
`

// load sends n logical requests from 32 goroutines and returns the server's
// hits and the requests that ended in a 200.
func load(t *testing.T, tr http.RoundTripper, url string, n int) (ok int) {
	t.Helper()
	var wg sync.WaitGroup
	var next, good atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				req := mustGet(t, url)
				req.Header.Set("X-Request-Id", strconv.FormatInt(i, 10))
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("request %d: %v", i, err)
					return
				}
				drain(resp.Body)
				if resp.StatusCode == 200 {
					good.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(good.Load())
}

func TestBudgetCapsAmplificationInAnOutage(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	const n = 3000
	for _, tc := range []struct {
		name     string
		settings string
		lo, hi   float64
	}{
		{"default budget", "", 1.0, 1.3},
		{"budget off", "budget_ratio = -1", 2.99, 3.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits.Store(0)
			var fails atomic.Int64
			tr := New(testFactory(t, fmt.Sprintf(budgetPolicy, tc.settings)), "p",
				OnFail(func(ev FailEvent) {
					if ev.Reason == ReasonBudget {
						fails.Add(1)
					}
				}))
			defer tr.CloseIdleConnections()
			load(t, tr, srv.URL, n)
			amp := float64(hits.Load()) / n
			t.Logf("%s: %d hits for %d requests: amplification %.3f, %d stopped by the budget", tc.name, hits.Load(), n, amp, fails.Load())
			if amp < tc.lo || amp > tc.hi {
				t.Errorf("amplification %.3f, want %.2f..%.2f", amp, tc.lo, tc.hi)
			}
			if tc.settings == "" && fails.Load() == 0 {
				t.Error("the budget never stopped a retry")
			}
		})
	}
}

func TestBudgetAbsorbsABrownout(t *testing.T) {
	// Every attempt fails with probability 10%, decided by a hash of the
	// request id and attempt number, so the run is the same every time.
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		mu.Lock()
		seen[id]++
		attempt := seen[id]
		mu.Unlock()
		h := fnv.New32a()
		fmt.Fprintf(h, "%s/%d", id, attempt)
		if h.Sum32()%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	const n = 5000
	tr := New(testFactory(t, fmt.Sprintf(budgetPolicy, "")), "p")
	defer tr.CloseIdleConnections()
	ok := load(t, tr, srv.URL, n)
	rate := float64(ok) / n
	t.Logf("success rate %.4f (%d/%d)", rate, ok, n)
	if rate < 0.999 {
		t.Errorf("success rate %.4f under a 10%% brownout, want >= 0.999", rate)
	}
}

func TestBudgetStopIsVisible(t *testing.T) {
	// A floor of zero and a tiny ratio: the first retry is refused.
	doc := fmt.Sprintf(budgetPolicy, "budget_ratio = 0.0\nbudget_min_retries_per_sec = 0")
	tr := New(testFactory(t, doc), "p", WithBase(roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, (netOpError{}).err()
	})))
	_, err := tr.RoundTrip(mustGet(t, "http://upstream.test/"))
	var re *RetryError
	if !errors.As(err, &re) || re.Reason != ReasonBudget || !errors.Is(err, ErrBudgetExhausted) || re.Attempts != 1 {
		t.Fatalf("err = %v", err)
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	p := &policy.Policy{Name: "p", Attempts: 3, BudgetRatio: 0, BudgetMinRetriesPerSec: 1, BudgetWindow: 2 * time.Second}
	u := newUpstream("h:1", 2, 0)
	b := u.lane(p).budget
	now := int64(1000 * time.Second)
	if !b.withdraw(p, now) || !b.withdraw(p, now) || b.withdraw(p, now) {
		t.Fatal("floor of 1/s over 2 s must allow exactly 2 retries")
	}
	if b.withdraw(p, now+int64(1900*time.Millisecond)) {
		t.Fatal("still inside the window")
	}
	if !b.withdraw(p, now+int64(2100*time.Millisecond)) {
		t.Fatal("the window must slide")
	}
	p2 := *p
	p2.BudgetWindow = 4 * time.Second
	if u.lane(&p2).budget == b {
		t.Error("a new window needs a new budget")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// An add whose clock was read before the latest slice began, and whose
// bucket has moved on to a newer slice, is dropped rather than written
// over the newer slice's counts.
func TestBudgetLateAddKeepsNewerCounts(t *testing.T) {
	var b budget
	b.init(5 * time.Second) // 1 s slices
	now := int64(time.Hour)
	b.add(now, 3, 0)
	late := now - 5*int64(time.Second) // the same bucket, five slices earlier
	b.add(late, 1, 1)
	if f, r := b.counts(now); f != 3 || r != 0 {
		t.Errorf("counts %d, %d after a late add; want 3, 0", f, r)
	}
	b.add(now-int64(time.Second), 2, 0) // late, but its own bucket is free: counted
	if f, _ := b.counts(now); f != 5 {
		t.Errorf("firsts %d; want 5", f)
	}
}

// A first try that succeeds is counted in its upstream's budget by
// sampling: the budget's count of first attempts estimates the calls, and
// most calls touch no per-upstream state. A call whose attempt fails is
// counted exactly.
func TestBudgetCountsFirstTriesBySampling(t *testing.T) {
	ok := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})
	tr := New(testFactory(t, fmt.Sprintf(budgetPolicy, "")), "p", WithBase(ok))
	const n = 16000
	for range n {
		resp, err := tr.RoundTrip(mustGet(t, "http://one.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	u := tr.e.ups.get([]byte("one.test:80"), tr.e.clock())
	pol, _ := tr.e.factory.Snapshot().Policy("p")
	firsts, retries := u.budgetFor(pol).counts(tr.e.clock())
	// budgetSample times a binomial(n, 1/budgetSample): mean n, standard
	// deviation under 500 (for 16): 15% is 4.9 of them.
	if firsts < n*85/100 || firsts > n*115/100 || firsts%budgetSample != 0 || retries != 0 {
		t.Errorf("budget counts %d first attempts, %d retries after %d first tries; want about %d, 0", firsts, retries, n, n)
	}

	// Calls to as many upstreams: about one in budgetSample of them made
	// an entry.
	for i := range n {
		resp, err := tr.RoundTrip(mustGet(t, fmt.Sprintf("http://h%d.test/", i)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := tr.e.ups.len() - 1; got < n/budgetSample/2 || got > 2*n/budgetSample {
		t.Errorf("%d calls to as many upstreams made %d entries; want about %d", n, got, n/budgetSample)
	}

	// Calls whose attempts fail are counted one by one.
	fail := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: http.NoBody, Request: r}, nil
	})
	tr = New(testFactory(t, fmt.Sprintf(budgetPolicy, "budget_ratio = 0\nbudget_min_retries_per_sec = 0.01")), "p", WithBase(fail))
	for range 37 {
		resp, err := tr.RoundTrip(mustGet(t, "http://down.test/"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	u = tr.e.ups.get([]byte("down.test:80"), tr.e.clock())
	pol, _ = tr.e.factory.Snapshot().Policy("p")
	if firsts, _ := u.budgetFor(pol).counts(tr.e.clock()); firsts != 37 {
		t.Errorf("37 failing calls counted as %d first attempts", firsts)
	}
}
