// Package livetest holds what the tests of liveconfig and its sources
// share: settings documents, a recorder of what a watcher reports, and
// loopback upstreams that count the attempts rtx makes.
package livetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

// Settings returns a TOML settings document whose fast_retry policy makes
// the given number of attempts, with waits short enough for tests.
func Settings(attempts int) string {
	return fmt.Sprintf(`[default.resilience.retry.default_policy]
attempts = 2
wait_min_seconds = 0.001
wait_max_seconds = 0.002

[default.resilience.retry.policies.fast_retry]
attempts = %d
wait_min_seconds = 0.001
wait_max_seconds = 0.002
backoff = 1.0
jitter = 0.0
exceptions = ["HTTPException"]
budget_ratio = -1.0 # no retry budget: the tests count every attempt
`, attempts)
}

// Invalid is a settings document that fails validation: its fast_retry
// policy has wait_min_seconds > wait_max_seconds.
const Invalid = `[default.resilience.retry.policies.fast_retry]
attempts = 7
wait_min_seconds = 2.0
wait_max_seconds = 1.0
`

// Eventually polls cond until it holds, failing the test when within has
// passed first.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Attempts returns the attempts of the factory's policy called name.
func Attempts(t testing.TB, f *policy.Factory, name string) int {
	t.Helper()
	p, err := f.Policy(name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Attempts
}

// Recorder collects what a watcher reports. The zero value is ready.
type Recorder struct {
	mu      sync.Mutex
	updates []liveconfig.Update
	errs    []error
}

// Options returns the OnUpdate and OnError options that feed r.
func (r *Recorder) Options() []liveconfig.Option {
	return []liveconfig.Option{
		liveconfig.OnUpdate(func(u liveconfig.Update) { r.mu.Lock(); r.updates = append(r.updates, u); r.mu.Unlock() }),
		liveconfig.OnError(func(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }),
	}
}

// Updates returns the updates reported so far.
func (r *Recorder) Updates() []liveconfig.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]liveconfig.Update(nil), r.updates...)
}

// Errors returns the errors reported so far.
func (r *Recorder) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// HasError reports whether an error matching target was reported.
func (r *Recorder) HasError(target error) bool {
	for _, err := range r.Errors() {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// Rejected reports whether an [*liveconfig.InvalidError] whose message
// contains substr was reported.
func (r *Recorder) Rejected(substr string) bool {
	for _, err := range r.Errors() {
		var ie *liveconfig.InvalidError
		if errors.As(err, &ie) && strings.Contains(err.Error(), substr) {
			return true
		}
	}
	return false
}

// Readers runs goroutines that read the factory's fast_retry policy in a
// loop and fail the test if one ever sees attempts outside allowed. The
// returned func stops them and waits for them.
func Readers(t testing.TB, f *policy.Factory, allowed ...int) (stop func()) {
	t.Helper()
	var wg sync.WaitGroup
	var done atomic.Bool
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !done.Load() {
				p, err := f.Policy("fast_retry")
				if err != nil || !contains(allowed, p.Attempts) {
					bad.Add(1)
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	return func() {
		done.Store(true)
		wg.Wait()
		if n := bad.Load(); n > 0 {
			t.Errorf("readers saw %d unexpected policies (allowed attempts %v)", n, allowed)
		}
	}
}

func contains(set []int, n int) bool {
	for _, x := range set {
		if x == n {
			return true
		}
	}
	return false
}

// Upstream is a loopback server that always answers 503, and a client that
// reaches it through rtx under the factory's fast_retry policy.
type Upstream struct {
	srv    *httptest.Server
	base   *http.Transport
	client *http.Client
}

// NewUpstream starts an upstream; the test's cleanup stops it.
func NewUpstream(t testing.TB, f *policy.Factory) *Upstream {
	t.Helper()
	u := &Upstream{base: &http.Transport{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	u.client = &http.Client{Transport: rtx.New(f, "fast_retry", rtx.WithBase(countingRT{u.base}))}
	t.Cleanup(func() {
		u.base.CloseIdleConnections()
		u.srv.Close()
	})
	return u
}

type counterKey struct{}

// countingRT counts the attempts of each logical request in the counter
// its context carries.
type countingRT struct{ rt http.RoundTripper }

func (c countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if n, ok := r.Context().Value(counterKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// Tries sends one GET through rtx and returns how many attempts it made.
func (u *Upstream) Tries() (int, error) {
	n := new(atomic.Int64)
	ctx := context.WithValue(context.Background(), counterKey{}, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.srv.URL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		return 0, fmt.Errorf("status %d, want 503", resp.StatusCode)
	}
	return int(n.Load()), nil
}

// MustTry fails the test unless one request makes want attempts.
func (u *Upstream) MustTry(t testing.TB, want int, when string) {
	t.Helper()
	if n, err := u.Tries(); err != nil || n != want {
		t.Fatalf("%s: %d attempts (err %v), want %d", when, n, err, want)
	}
}

// Requests runs requests through rtx in a loop until stopped, and fails
// the test if one makes a number of attempts outside allowed: a request
// keeps the policy it started with, whatever updates happen meanwhile.
func (u *Upstream) Requests(t testing.TB, allowed ...int) (stop func()) {
	t.Helper()
	var wg sync.WaitGroup
	var done atomic.Bool
	var mu sync.Mutex
	var bad []string
	for range 3 {
		wg.Go(func() {
			for !done.Load() {
				n, err := u.Tries()
				if err != nil || !contains(allowed, n) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("%d attempts, err %v", n, err))
					mu.Unlock()
				}
			}
		})
	}
	return func() {
		done.Store(true)
		wg.Wait()
		if len(bad) > 0 {
			t.Errorf("%d requests went wrong (allowed attempts %v), first: %s", len(bad), allowed, bad[0])
		}
	}
}
