package liveconfig_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

// settings returns a settings document whose fast_retry policy makes the
// given number of attempts, with waits short enough for tests.
func settings(attempts int) string {
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
`, attempts)
}

// invalidSettings fails validation: wait_min_seconds > wait_max_seconds.
const invalidSettings = `[default.resilience.retry.policies.fast_retry]
attempts = 7
wait_min_seconds = 2.0
wait_max_seconds = 1.0
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver writes content to a temporary file beside path and renames it
// over path, as editors and config agents do.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func attempts(t *testing.T, f *policy.Factory, name string) int {
	t.Helper()
	p, err := f.Policy(name)
	if err != nil {
		t.Fatal(err)
	}
	return p.Attempts
}

// recorder collects what a watcher reports.
type recorder struct {
	mu      sync.Mutex
	updates []liveconfig.Update
	errs    []error
}

func (r *recorder) options() []liveconfig.Option {
	return []liveconfig.Option{
		liveconfig.OnUpdate(func(u liveconfig.Update) { r.mu.Lock(); r.updates = append(r.updates, u); r.mu.Unlock() }),
		liveconfig.OnError(func(err error) { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }),
	}
}

func (r *recorder) Updates() []liveconfig.Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]liveconfig.Update(nil), r.updates...)
}

func (r *recorder) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

// hasError reports whether an error matching target was reported.
func (r *recorder) hasError(target error) bool {
	for _, err := range r.Errors() {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// load writes settings(n) to path and loads a factory from it.
func load(t *testing.T, path string, n int) *policy.Factory {
	t.Helper()
	writeFile(t, path, settings(n))
	f, err := policy.LoadFile(path, policy.WithEnviron(func() []string { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// readers runs goroutines that read the factory's fast_retry policy in a
// loop and fail the test if they ever see a value outside allowed. The
// returned func stops them and waits.
func readers(t *testing.T, f *policy.Factory, allowed ...int) (stop func()) {
	t.Helper()
	ok := map[int]bool{}
	for _, n := range allowed {
		ok[n] = true
	}
	var wg sync.WaitGroup
	var done atomic.Bool
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !done.Load() {
				p, err := f.Policy("fast_retry")
				if err != nil || !ok[p.Attempts] {
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
			t.Errorf("readers saw %d unexpected policies", n)
		}
	}
}

// upstream is a loopback server that always answers 503, and a client
// that reaches it through rtx under the fast_retry policy.
type upstream struct {
	srv    *httptest.Server
	base   *http.Transport
	client *http.Client
}

func newUpstream(t *testing.T, f *policy.Factory) *upstream {
	t.Helper()
	u := &upstream{base: &http.Transport{}}
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

// tries sends one GET through rtx and returns how many attempts it made.
func (u *upstream) tries() (int, error) {
	n := new(atomic.Int64)
	req, err := http.NewRequestWithContext(context.WithValue(context.Background(), counterKey{}, n), http.MethodGet, u.srv.URL, nil)
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

// requests runs requests through rtx in a loop until stopped, and fails the
// test if one makes a number of attempts outside allowed: a request keeps
// the policy it started with, whatever the updates do meanwhile.
func (u *upstream) requests(t *testing.T, allowed ...int) (stop func()) {
	t.Helper()
	ok := map[int]bool{}
	for _, n := range allowed {
		ok[n] = true
	}
	var wg sync.WaitGroup
	var done atomic.Bool
	var mu sync.Mutex
	var bad []string
	for range 3 {
		wg.Go(func() {
			for !done.Load() {
				n, err := u.tries()
				if err != nil || !ok[n] {
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
