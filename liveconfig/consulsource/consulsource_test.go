package consulsource_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/liveconfig/consulsource"
	"github.com/athomic-go/rtx/liveconfig/internal/livetest"
	"github.com/athomic-go/rtx/policy"
)

const key = "config/rtx/settings.toml"

// newClient returns a Consul client of addr ("" = the environment's
// CONSUL_HTTP_ADDR) whose connections the test's cleanup closes.
func newClient(t *testing.T, addr string) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	if addr != "" {
		cfg.Address = addr
	}
	tr := cfg.Transport
	cli, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return cli
}

func put(t *testing.T, cli *api.Client, key, value string) {
	t.Helper()
	if _, err := cli.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}

// watch starts a watcher of src and closes it at the end of the test.
func watch(t *testing.T, src liveconfig.Source, f *policy.Factory, rec *livetest.Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	w, err := liveconfig.Watch(ctx, src, f, rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

// fast makes the source retry quickly and long-poll briefly.
var fast = []consulsource.Option{
	consulsource.WithBackoff(10*time.Millisecond, 50*time.Millisecond),
	consulsource.WithWaitTime(2 * time.Second),
	consulsource.WithMinInterval(10 * time.Millisecond),
	nil,
}

// testSource runs the source through a life of updates against a server
// that implements Consul's KV API: the fake below, or a real agent.
func testSource(t *testing.T, cli *api.Client, key string) {
	put(t, cli, key, livetest.Settings(3))
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	watch(t, consulsource.New(cli, key, fast...), f, &rec)

	if got := livetest.Attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("initial value: attempts %d, want 3", got)
	}
	u := livetest.NewUpstream(t, f)
	stopReaders := livetest.Readers(t, f, 3, 5, 6)
	stopRequests := u.Requests(t, 3, 5, 6)
	defer stopReaders()
	defer stopRequests()

	put(t, cli, key, livetest.Settings(5))
	livetest.Eventually(t, time.Second, "attempts = 5", func() bool { return livetest.Attempts(t, f, "fast_retry") == 5 })
	u.MustTry(t, 5, "after the put")
	pair, _, err := cli.KV().Get(key, nil)
	if err != nil {
		t.Fatal(err)
	}
	ups := rec.Updates()
	last := ups[len(ups)-1]
	if last.Source != "consul:"+key || last.Version != strconv.FormatUint(pair.ModifyIndex, 10) || !slices.Equal(last.Changed, []string{"fast_retry"}) {
		t.Errorf("update = %+v, want fast_retry changed by consul:%s at index %d", last, key, pair.ModifyIndex)
	}

	put(t, cli, key, livetest.Invalid)
	livetest.Eventually(t, time.Second, "rejection reported", func() bool { return rec.Rejected("wait_min_seconds") })
	if got := livetest.Attempts(t, f, "fast_retry"); got != 5 {
		t.Fatalf("after an invalid put: attempts %d, want 5", got)
	}
	u.MustTry(t, 5, "after an invalid put")
	put(t, cli, key, livetest.Settings(6))
	livetest.Eventually(t, time.Second, "attempts = 6", func() bool { return livetest.Attempts(t, f, "fast_retry") == 6 })

	if _, err := cli.KV().Delete(key, nil); err != nil {
		t.Fatal(err)
	}
	livetest.Eventually(t, time.Second, "deletion reported", func() bool { return rec.HasError(liveconfig.ErrNotFound) })
	if got := livetest.Attempts(t, f, "fast_retry"); got != 6 {
		t.Fatalf("after a delete: attempts %d, want 6", got)
	}
	put(t, cli, key, livetest.Settings(5))
	livetest.Eventually(t, time.Second, "attempts = 5 again", func() bool { return livetest.Attempts(t, f, "fast_retry") == 5 })
}

func TestConsul(t *testing.T) {
	c := newFakeConsul(t)
	testSource(t, newClient(t, c.URL), key)
}

// TestConsulAgent runs the same life against a real Consul agent when
// CONSUL_HTTP_ADDR names one (its token from CONSUL_HTTP_TOKEN), under a
// key of its own that it deletes afterwards.
func TestConsulAgent(t *testing.T) {
	if os.Getenv("CONSUL_HTTP_ADDR") == "" {
		t.Skip("CONSUL_HTTP_ADDR is not set: no Consul agent to test against")
	}
	cli := newClient(t, "")
	k := fmt.Sprintf("rtx-test/%d/settings.toml", rand.Uint64())
	t.Cleanup(func() { cli.KV().DeleteTree("rtx-test/", nil) })
	testSource(t, cli, k)
}

func TestConsulMissingKey(t *testing.T) {
	c := newFakeConsul(t)
	cli := newClient(t, c.URL)
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	watch(t, consulsource.New(cli, key, fast...), f, &rec)
	if !rec.HasError(liveconfig.ErrNotFound) {
		t.Fatalf("errors = %v, want ErrNotFound before Watch returned", rec.Errors())
	}
	put(t, cli, key, livetest.Settings(4))
	livetest.Eventually(t, time.Second, "attempts = 4", func() bool {
		p, err := f.Policy("fast_retry")
		return err == nil && p.Attempts == 4
	})
}

func TestConsulErrors(t *testing.T) {
	c := newFakeConsul(t)
	cli := newClient(t, c.URL)
	put(t, cli, key, livetest.Settings(3))
	c.failNext(3)
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	watch(t, consulsource.New(cli, key, fast...), f, &rec)
	// Watch waited through three failed queries for the first answer.
	if got := livetest.Attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("attempts %d, want 3", got)
	}
	if n := len(rec.Errors()); n != 3 {
		t.Fatalf("errors = %v, want the three failed queries", rec.Errors())
	}
	// Failures in the middle of the watch are retried too.
	c.failNext(2)
	put(t, cli, key, livetest.Settings(5))
	livetest.Eventually(t, time.Second, "attempts = 5", func() bool { return livetest.Attempts(t, f, "fast_retry") == 5 })
}

func TestConsulIndexGoesBackwards(t *testing.T) {
	c := newFakeConsul(t)
	cli := newClient(t, c.URL)
	for i := range 5 {
		put(t, cli, key, livetest.Settings(3+i%2))
	}
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	wait := 200 * time.Millisecond
	watch(t, consulsource.New(cli, key, consulsource.WithWaitTime(wait), consulsource.WithMinInterval(0)), f, &rec)
	// A snapshot restore: the key's index drops from 15 to 3. The blocked
	// query wakes when its wait ends, with the lower index; the source
	// starts over and reads the restored value.
	c.restore(key, []byte(livetest.Settings(7)), 3)
	livetest.Eventually(t, 10*wait, "restored value applied", func() bool { return livetest.Attempts(t, f, "fast_retry") == 7 })
	// And it blocks on the new index: a later write is seen.
	put(t, cli, key, livetest.Settings(8))
	livetest.Eventually(t, time.Second, "attempts = 8", func() bool { return livetest.Attempts(t, f, "fast_retry") == 8 })
}

func TestConsulBlocks(t *testing.T) {
	c := newFakeConsul(t)
	cli := newClient(t, c.URL)
	put(t, cli, key, livetest.Settings(3))
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	wait := 100 * time.Millisecond
	start := time.Now()
	watch(t, consulsource.New(cli, key, consulsource.WithWaitTime(wait), consulsource.WithMinInterval(0)), f, &rec)
	// The first query does not block; each later one is held for wait, so
	// the fifth arrives no sooner than 3 waits after the start.
	livetest.Eventually(t, 5*time.Second, "five queries", func() bool { n, _ := c.stats(); return n >= 5 })
	if elapsed := time.Since(start); elapsed < 3*wait {
		t.Errorf("five queries in %v: the second to fourth should each block for %v", elapsed, wait)
	}
	_, waits := c.stats()
	if waits[len(waits)-1] != "100ms" {
		t.Errorf("wait parameters %v, want 100ms", waits)
	}
	if n := len(rec.Updates()); n != 1 {
		t.Errorf("%d updates, want 1: queries that time out report nothing", n)
	}
}

func TestConsulZeroIndexIsRateLimited(t *testing.T) {
	// A server with the bug Consul's documentation warns about: it answers
	// every query at once with X-Consul-Index: 0. The source takes the
	// index as 1 and spaces its queries by the minimum interval.
	var queries atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		w.Header().Set("X-Consul-Index", "0")
		w.Header().Set("X-Consul-LastContact", "0")
		fmt.Fprintf(w, `[{"Key":%q,"Value":"%s","ModifyIndex":0}]`, key, "W2RlZmF1bHRdCg==") // "[default]\n"
	}))
	defer srv.Close()
	cli := newClient(t, srv.URL)
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	interval := 50 * time.Millisecond
	start := time.Now()
	watch(t, consulsource.New(cli, key, consulsource.WithMinInterval(interval)), f, &rec)
	livetest.Eventually(t, 5*time.Second, "five queries", func() bool { return queries.Load() >= 5 })
	if elapsed := time.Since(start); elapsed < 4*interval {
		t.Errorf("five queries in %v, want them spaced by %v", elapsed, interval)
	}
	if n := len(rec.Updates()); n != 1 {
		t.Errorf("%d updates, want 1", n)
	}
}
