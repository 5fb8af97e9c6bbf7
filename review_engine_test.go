package rtx

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/sony/gobreaker/v2"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/athomic-go/rtx/policy"
)

const cleanCircuitDoc = `
[default.resilience.retry.policies.one]
attempts = 1
exceptions = ["HTTPException"]

[default.resilience.circuit_breaker]
default_fail_max = 2
default_reset_timeout_sec = 30.0
`

// pathBase answers by path: /fail with a connection reset, /slow after
// release is closed, anything else 200.
func pathBase(release <-chan struct{}) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		switch r.URL.Path {
		case "/fail":
			return nil, netOpError{}.err()
		case "/slow":
			<-release
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
}

// onlyCircuit returns the engine's one circuit.
func onlyCircuit(t *testing.T, e *engine) *circuit {
	t.Helper()
	var c *circuit
	e.eachCircuit(func(x *circuit) { c = x })
	if c == nil {
		t.Fatal("no circuit")
	}
	return c
}

// An attempt that went through gobreaker in one generation and lands after
// the circuit opened and closed again is dropped by gobreaker; it must not
// reset the lock-free failure count either. If it does, the circuit looks
// clean while gobreaker still counts a failure: successes then go unreported
// and never reset that count, so a single later failure trips a circuit
// whose fail_max is 2.
func TestCleanCircuitStaleSuccessKeepsCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		tr := New(testFactory(t, cleanCircuitDoc), "one", WithBase(pathBase(release)))
		rt := func(path string) error {
			_, err := tr.RoundTrip(mustGet(t, "http://a.test"+path))
			return err
		}
		rt("/fail") // gobreaker: 1 failure; the circuit is no longer clean
		var wg sync.WaitGroup
		wg.Go(func() { rt("/slow") }) // through gobreaker, in the closed generation
		synctest.Wait()
		rt("/fail") // 2 failures: open
		c := onlyCircuit(t, tr.e)
		if st := c.cb.State(); st != gobreaker.StateOpen {
			t.Fatalf("state %v after fail_max failures", st)
		}
		time.Sleep(31 * time.Second)
		if err := rt("/ok"); err != nil { // the probe: closed again
			t.Fatalf("probe: %v", err)
		}
		rt("/fail") // 1 failure in the new closed generation
		close(release)
		wg.Wait() // the slow success of the first closed generation lands
		if _, clean := c.clean(); clean && c.cb.Counts().ConsecutiveFailures != 0 {
			t.Errorf("the circuit looks clean while gobreaker counts %d consecutive failures", c.cb.Counts().ConsecutiveFailures)
		}
		for range 100 {
			if err := rt("/ok"); err != nil {
				t.Fatal(err)
			}
		}
		rt("/fail") // one failure after 100 successes
		if err := rt("/ok"); err != nil {
			t.Errorf("one failure after 100 successes tripped a circuit of fail_max 2: %v", err)
		}
	})
}

// A success reported because a failure was counted, and a failure reported
// in full before the success's report returns, leave the lock-free count
// equal to gobreaker's: the count moves under gobreaker's lock, with the
// outcome gobreaker counts. (Updated after the outcome, as it once was, a
// late reset left it at zero while gobreaker counted a failure: the circuit
// looked clean, its successes no longer reached gobreaker, and the next
// failure tripped a circuit of fail_max 2.)
func TestCleanCircuitReportsInterleaved(t *testing.T) {
	c := newCircuit("h:1", policy.Circuit{FailMax: 2, ResetTimeout: time.Minute}, time.Now())
	gen, _ := c.clean()
	c.report(gen, errFailure, nil) // gobreaker 1, mirror 1
	// A success: report sees a failure counted and hands gobreaker the success...
	c.cb.Execute(func() (struct{}, error) { return struct{}{}, nil })
	// ...a failure is reported in full meanwhile (the mirror moves under
	// gobreaker's lock, so no reset can land after it)...
	c.report(gen, errFailure, nil)
	if m, g := c.failures.Load(), c.cb.Counts().ConsecutiveFailures; m != g {
		t.Fatalf("mirror %d, gobreaker %d", m, g)
	}
	for range 100 { // successes of attempts through the clean circuit
		if gen, clean := c.clean(); clean {
			c.report(gen, nil, nil)
		} else {
			c.cb.Execute(func() (struct{}, error) { return struct{}{}, nil })
		}
	}
	stale := c.cb.Counts().ConsecutiveFailures
	gen, _ = c.clean()
	c.report(gen, errFailure, nil)
	if st := c.cb.State(); st != gobreaker.StateClosed {
		t.Errorf("one failure after 100 successes: %v (gobreaker still counted %d failures before it)", st, stale)
	}
}

// shiftWall moves tm's wall reading by d, its monotonic reading kept: tm is
// then what time.Now returned when the wall clock was d off the monotonic
// clock's course since (a step by NTP, a suspend the monotonic clock does
// not count).
func shiftWall(t *testing.T, tm time.Time, d time.Duration) time.Time {
	t.Helper()
	const hasMonotonic = 1 << 63
	r := (*struct {
		wall uint64
		ext  int64
		loc  *time.Location
	})(unsafe.Pointer(&tm))
	if r.wall&hasMonotonic == 0 || d%time.Second != 0 {
		t.Skip("no monotonic reading, or d not whole seconds")
	}
	r.wall = uint64(int64(r.wall) + int64(d/time.Second)<<30)
	return tm
}

// Span times are wall-clock times. Made from the engine's monotonic
// clock, they drift from the wall clock by whatever it was stepped (or
// slept, suspended) since the engine was made: here an hour, as after an
// NTP step at boot or a host suspend.
func TestSpanStartFollowsWallClock(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	tr := New(testFactory(t, cleanCircuitDoc), "one", WithBase(pathBase(nil)), WithTracerProvider(tp))
	// The wall clock was an hour behind when the engine was made, and has
	// been set right since.
	tr.e.epoch = shiftWall(t, tr.e.epoch, -time.Hour)
	tr.e.obs.epoch = tr.e.epoch
	before := time.Now()
	resp, err := tr.RoundTrip(mustGet(t, "http://a.test/ok"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	after := time.Now()
	for _, s := range rec.Ended() {
		// As exporters read it: the wall reading (a comparison of two
		// times.Now would use their monotonic readings).
		if st := s.StartTime().UnixNano(); st < before.Add(-time.Second).UnixNano() || st > after.Add(time.Second).UnixNano() {
			t.Errorf("span %q starts at %v, the call ran from %v to %v", s.Name(), time.Unix(0, st).UTC(), before.Round(0).UTC(), after.Round(0).UTC())
		}
	}
	if len(rec.Ended()) == 0 {
		t.Fatal("no span")
	}
}

// A bucket's slice is tagged with 22 bits: the window's counts come back
// 2^22 slices later (70 minutes of 1 ms slices, 9.7 days of 200 ms ones)
// when nothing used the budget meanwhile.
func TestBudgetStaleBucketsDoNotReturn(t *testing.T) {
	p := &policy.Policy{Name: "p", Attempts: 3, BudgetRatio: 0, BudgetMinRetriesPerSec: 200, BudgetWindow: 5 * time.Millisecond}
	var b budget
	b.init(p.BudgetWindow) // 1 ms slices
	now := int64(time.Hour)
	for b.withdraw(p, now) {
	}
	later := now + int64(1<<tagBits)*sliceNs(&b) // 2^22 ms later: 70 minutes
	if f, r := b.counts(later); f != 0 || r != 0 {
		t.Errorf("70 minutes later the window holds %d firsts and %d retries", f, r)
	}
	if !b.withdraw(p, later) {
		t.Error("70 minutes later the budget is still spent")
	}
}

// Slices whose tags wrap around (the low 22 bits of the slice number go
// back to zero) are still counted in one window.
func TestBudgetWindowAcrossTagWrap(t *testing.T) {
	var b budget
	b.init(5 * time.Second) // 1 s slices
	wrap := int64(1<<tagBits) * sliceNs(&b)
	b.add(wrap-sliceNs(&b), 3, 1) // the last slice before the wrap
	b.add(wrap, 2, 1)             // the first after
	if f, r := b.counts(wrap + 3*sliceNs(&b)); f != 5 || r != 2 {
		t.Errorf("across the wrap: %d firsts, %d retries; want 5, 2", f, r)
	}
	if f, r := b.counts(wrap + 4*sliceNs(&b)); f != 2 || r != 1 {
		t.Errorf("the slice before the wrap must have left the window: %d, %d", f, r)
	}
	if f, r := b.counts(wrap + 5*sliceNs(&b)); f != 0 || r != 0 {
		t.Errorf("a window later: %d, %d", f, r)
	}
}

// The engine remembers the entry it found lately; once eviction took it,
// the calls to its upstream find the live entry, so that the failures of a
// circuit land in one place: fail_max of them open it.
func TestRememberedEntryEvicted(t *testing.T) {
	var tr *Transport
	tr = New(testFactory(t, reviewEvict), "one", WithBase(pathBase(nil)), withMaxUpstreams(64)) // one entry per shard
	seed := tr.e.ups.seed
	shardOf := func(k string) uint64 { return maphash.String(seed, k) % tableShards }
	other := ""
	for i := 0; other == ""; i++ {
		if h := fmt.Sprintf("b%d.test", i); shardOf(h+":80") == shardOf("a.test:80") {
			other = h
		}
	}
	for i := 0; ; i++ { // until the engine remembers a.test
		tr.RoundTrip(mustGet(t, "http://a.test/ok"))
		if u := tr.e.last.Load(); u != nil && u.key == "a.test:80" {
			break
		}
		if i > 10000 {
			t.Fatal("a.test never remembered")
		}
	}
	old := tr.e.last.Load()
	tr.RoundTrip(mustGet(t, "http://"+other+"/ok")) // evicts a.test (the shard holds one)
	if old.calls.Load() >= 0 {
		t.Fatal("a.test was not evicted")
	}
	tr.RoundTrip(mustGet(t, "http://a.test/fail"))
	tr.RoundTrip(mustGet(t, "http://a.test/fail"))
	if _, err := tr.RoundTrip(mustGet(t, "http://a.test/ok")); !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("two failures with fail_max 2, yet the next request went out: %v", err)
	}
	if c := old.circuit.Load(); c != nil && c.cb.Counts().ConsecutiveFailures != 0 {
		t.Errorf("a failure landed in the evicted entry")
	}
}

// sliceNs is the length of b's slices.
func sliceNs(b *budget) int64 { return int64(b.head.Load()>>32) * int64(time.Millisecond) }
