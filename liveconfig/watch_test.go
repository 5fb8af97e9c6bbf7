package liveconfig_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

// chanSource reports the changes sent on its channel.
func chanSource(ch <-chan liveconfig.Change) liveconfig.Source {
	return liveconfig.SourceFunc(func(ctx context.Context, report func(liveconfig.Change)) error {
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case c := <-ch:
				report(c)
			}
		}
	})
}

func doc(n int) liveconfig.Change {
	return liveconfig.Change{Name: "test-key", Data: []byte(settings(n)), Version: "v" + string(rune('0'+n))}
}

func TestWatchSource(t *testing.T) {
	ch := make(chan liveconfig.Change, 1)
	ch <- doc(3)
	f := policy.NewFactory(nil)
	var rec recorder
	w, err := liveconfig.Watch(context.Background(), chanSource(ch), f, rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("after Watch returned: attempts %d, want 3 (the first document applied)", got)
	}

	ch <- doc(3) // identical: skipped
	ch <- liveconfig.Change{Name: "test-key", Data: []byte(invalidSettings), Version: "bad"}
	ch <- liveconfig.Change{Name: "test-key", Data: []byte(invalidSettings), Version: "bad"} // reported once
	ch <- liveconfig.Change{Name: "test-key", Data: []byte("  \n"), Version: "empty"}
	ch <- liveconfig.Change{Name: "test-key", Err: errors.New("connection refused")}
	if got := attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("after invalid documents: attempts %d, want 3", got)
	}
	ch <- doc(5)
	eventually(t, time.Second, "the good document applied", func() bool { return attempts(t, f, "fast_retry") == 5 })

	ups := rec.Updates()
	if len(ups) != 2 {
		t.Fatalf("%d updates, want 2 (first document, then 5): %+v", len(ups), ups)
	}
	if !ups[0].Initial || ups[1].Initial {
		t.Errorf("Initial = %v, %v; want true for the first document only", ups[0].Initial, ups[1].Initial)
	}
	if ups[1].Source != "test-key" || ups[1].Version != "v5" || !slices.Equal(ups[1].Changed, []string{"fast_retry"}) {
		t.Errorf("update = %+v", ups[1])
	}
	errs := rec.Errors()
	if len(errs) != 3 {
		t.Fatalf("errors = %v, want the invalid one, the empty one, the source failure", errs)
	}
	var ie *liveconfig.InvalidError
	if !errors.As(errs[0], &ie) || ie.Version != "bad" || ie.Source != "test-key" || !strings.Contains(ie.Error(), "wait_min_seconds") {
		t.Errorf("errs[0] = %v, want an *InvalidError naming wait_min_seconds", errs[0])
	}
	if !errors.Is(errs[1], liveconfig.ErrEmpty) || !errors.As(errs[1], &ie) {
		t.Errorf("errs[1] = %v, want ErrEmpty", errs[1])
	}
	if !strings.Contains(errs[2].Error(), "connection refused") || errors.As(errs[2], &ie) {
		t.Errorf("errs[2] = %v, want the source failure as is", errs[2])
	}
}

func TestWatchWaitsForFirstAnswer(t *testing.T) {
	t.Run("passing failures first", func(t *testing.T) {
		ch := make(chan liveconfig.Change, 3)
		ch <- liveconfig.Change{Err: errors.New("dial: connection refused")}
		ch <- liveconfig.Change{Err: errors.New("dial: connection refused")}
		ch <- doc(6)
		f := policy.NewFactory(nil)
		var rec recorder
		w, err := liveconfig.Watch(context.Background(), chanSource(ch), f, rec.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if got := attempts(t, f, "fast_retry"); got != 6 {
			t.Fatalf("attempts %d, want 6", got)
		}
		if n := len(rec.Errors()); n != 2 {
			t.Fatalf("%d errors, want 2", n)
		}
	})
	t.Run("missing document", func(t *testing.T) {
		ch := make(chan liveconfig.Change, 1)
		ch <- liveconfig.Change{Err: liveconfig.ErrNotFound}
		w, err := liveconfig.Watch(context.Background(), chanSource(ch), policy.NewFactory(nil))
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	})
	t.Run("context ends first", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		w, err := liveconfig.Watch(ctx, chanSource(nil), policy.NewFactory(nil))
		if !errors.Is(err, context.DeadlineExceeded) || w != nil {
			t.Fatalf("Watch = %v, %v; want DeadlineExceeded", w, err)
		}
	})
	t.Run("source gives up", func(t *testing.T) {
		src := liveconfig.SourceFunc(func(ctx context.Context, report func(liveconfig.Change)) error {
			return errors.New("bad endpoint")
		})
		w, err := liveconfig.Watch(context.Background(), src, policy.NewFactory(nil))
		if err == nil || !strings.Contains(err.Error(), "bad endpoint") || w != nil {
			t.Fatalf("Watch = %v, %v; want the source's error", w, err)
		}
	})
}

func TestWatchSourceStopsLater(t *testing.T) {
	ch := make(chan liveconfig.Change, 1)
	ch <- doc(3)
	stop := make(chan struct{})
	src := liveconfig.SourceFunc(func(ctx context.Context, report func(liveconfig.Change)) error {
		report(<-ch)
		<-stop
		return errors.New("lost the session")
	})
	var rec recorder
	w, err := liveconfig.Watch(context.Background(), src, policy.NewFactory(nil), rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	eventually(t, time.Second, "the stop reported", func() bool { return len(rec.Errors()) == 1 })
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), "lost the session") {
		t.Fatalf("Close = %v, want the source's error", err)
	}
}

func TestWatchFormatAndArgs(t *testing.T) {
	ch := make(chan liveconfig.Change, 1)
	ch <- liveconfig.Change{Name: "k", Data: []byte(`{"default": {"resilience": {"retry": {"policies": {"fast_retry": {"attempts": 4}}}}}}`)}
	f := policy.NewFactory(nil)
	w, err := liveconfig.Watch(context.Background(), chanSource(ch), f, liveconfig.WithFormat("json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := attempts(t, f, "fast_retry"); got != 4 {
		t.Fatalf("attempts %d, want 4", got)
	}
	if _, err := liveconfig.Watch(context.Background(), nil, f); err == nil {
		t.Error("nil source: no error")
	}
	if _, err := liveconfig.Watch(context.Background(), chanSource(ch), nil); err == nil {
		t.Error("nil factory: no error")
	}
}
