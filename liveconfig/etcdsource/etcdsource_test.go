package etcdsource_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/liveconfig/etcdsource"
	"github.com/athomic-go/rtx/liveconfig/internal/livetest"
	"github.com/athomic-go/rtx/policy"
)

const key = "/config/rtx/settings.toml"

// watch starts a watcher of key through cli's endpoint and closes it at the
// end of the test.
func watch(t *testing.T, src liveconfig.Source, f *policy.Factory, rec *livetest.Recorder) *liveconfig.Watcher {
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
	return w
}

// fast makes the source retry quickly, so that tests stay short.
var fast = []etcdsource.Option{etcdsource.WithBackoff(20*time.Millisecond, 200*time.Millisecond), etcdsource.WithRequestTimeout(time.Second), nil}

func TestEtcd(t *testing.T) {
	srv := startEtcd(t)
	cli := srv.client(t, "")
	rev := put(t, cli, key, livetest.Settings(3))

	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	src := etcdsource.New(cli, key, fast...)
	watch(t, src, f, &rec)

	// The initial value was applied before Watch returned.
	if got := livetest.Attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("initial value: attempts %d, want 3", got)
	}
	ups := rec.Updates()
	if len(ups) != 1 || ups[0].Source != "etcd:"+key || ups[0].Version != strconv.FormatInt(rev, 10) {
		t.Fatalf("updates = %+v, want one from etcd:%s at revision %d", ups, key, rev)
	}

	u := livetest.NewUpstream(t, f)
	stopReaders := livetest.Readers(t, f, 3, 5, 6)
	stopRequests := u.Requests(t, 3, 5, 6)
	defer stopReaders()
	defer stopRequests()

	t.Run("put", func(t *testing.T) {
		rev := put(t, cli, key, livetest.Settings(5))
		livetest.Eventually(t, time.Second, "attempts = 5", func() bool { return livetest.Attempts(t, f, "fast_retry") == 5 })
		u.MustTry(t, 5, "after the put")
		ups := rec.Updates()
		last := ups[len(ups)-1]
		if last.Version != strconv.FormatInt(rev, 10) || !slices.Equal(last.Changed, []string{"fast_retry"}) {
			t.Errorf("update = %+v, want fast_retry changed at revision %d", last, rev)
		}
	})

	t.Run("invalid put keeps the old values", func(t *testing.T) {
		put(t, cli, key, livetest.Invalid)
		livetest.Eventually(t, time.Second, "rejection reported", func() bool { return rec.Rejected("wait_min_seconds") })
		if got := livetest.Attempts(t, f, "fast_retry"); got != 5 {
			t.Fatalf("after an invalid put: attempts %d, want 5", got)
		}
		u.MustTry(t, 5, "after an invalid put")
		put(t, cli, key, livetest.Settings(6))
		livetest.Eventually(t, time.Second, "attempts = 6", func() bool { return livetest.Attempts(t, f, "fast_retry") == 6 })
	})

	t.Run("delete keeps the old values", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cli.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		livetest.Eventually(t, time.Second, "deletion reported", func() bool { return rec.HasError(liveconfig.ErrNotFound) })
		if got := livetest.Attempts(t, f, "fast_retry"); got != 6 {
			t.Fatalf("after a delete: attempts %d, want 6", got)
		}
		put(t, cli, key, livetest.Settings(5))
		livetest.Eventually(t, time.Second, "attempts = 5", func() bool { return livetest.Attempts(t, f, "fast_retry") == 5 })
	})
}

func TestEtcdServerRestart(t *testing.T) {
	srv := startEtcd(t)
	cli := srv.client(t, "")
	put(t, cli, key, livetest.Settings(3))
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	watch(t, etcdsource.New(cli, key, fast...), f, &rec)

	srv.stop(t)
	srv.start(t) // same ports, same data directory

	put(t, cli, key, livetest.Settings(8))
	livetest.Eventually(t, 10*time.Second, "put after the restart applied", func() bool {
		return livetest.Attempts(t, f, "fast_retry") == 8
	})

	// The watch goes on after that: a later put and an invalid one.
	put(t, cli, key, livetest.Settings(4))
	livetest.Eventually(t, time.Second, "second put after the restart applied", func() bool {
		return livetest.Attempts(t, f, "fast_retry") == 4
	})
	put(t, cli, key, livetest.Invalid)
	livetest.Eventually(t, time.Second, "rejection reported", func() bool { return rec.Rejected("wait_min_seconds") })
	if got := livetest.Attempts(t, f, "fast_retry"); got != 4 {
		t.Fatalf("after an invalid put: attempts %d, want 4", got)
	}
}

func TestEtcdCompaction(t *testing.T) {
	// The watcher loses its connection; meanwhile the key changes several
	// times and the history is compacted past the watcher's revision. When
	// the connection comes back the resumed watch fails as compacted, and
	// the source reads the key afresh.
	srv := startEtcd(t)
	direct := srv.client(t, "")
	put(t, direct, key, livetest.Settings(3))

	px := newProxy(t, srv.clientURL[len("http://"):])
	viaProxy := srv.client(t, px.URL())
	f := policy.NewFactory(nil)
	var rec livetest.Recorder
	watch(t, etcdsource.New(viaProxy, key, fast...), f, &rec)

	px.Cut()
	put(t, direct, key, livetest.Settings(4))
	put(t, direct, key, "# unrelated write in between\n"+livetest.Settings(4))
	rev := put(t, direct, key, livetest.Settings(9))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := direct.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	px.Restore()

	livetest.Eventually(t, 15*time.Second, "the value written while away applied", func() bool {
		return livetest.Attempts(t, f, "fast_retry") == 9
	})
	if !rec.HasError(rpctypes.ErrCompacted) {
		t.Errorf("errors = %v, want the compacted watch reported", rec.Errors())
	}
}
