package rtx

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/athomic-go/rtx/breaker"
	"github.com/athomic-go/rtx/policy"
)

const circuits = `
[default.resilience.retry.policies.p]
attempts = 5
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
[default.resilience.circuit_breaker]
default_fail_max = 3
default_reset_timeout_sec = 60
`

// server answers with the status code held in code and counts hits.
func server(t *testing.T, code *atomic.Int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func get(t *testing.T, rt http.RoundTripper, url string) (*http.Response, error) {
	t.Helper()
	resp, err := rt.RoundTrip(mustGet(t, url))
	if resp != nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestCircuitOpensAndAbortsRetries(t *testing.T) {
	var code atomic.Int32
	code.Store(503)
	srv, hits := server(t, &code)
	var changes []breaker.StateChange
	var mu sync.Mutex
	set := breaker.Config{OnStateChange: func(c breaker.StateChange) {
		mu.Lock()
		changes = append(changes, c)
		mu.Unlock()
	}}
	tr := New(testFactory(t, circuits), "p", WithCircuits(set))
	defer tr.CloseIdleConnections()

	// Three classified failures open the circuit; the fourth attempt is
	// never made and the last 503 comes back as is.
	resp, err := get(t, tr, srv.URL)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("first request: %v, %v", resp, err)
	}
	if hits.Load() != 3 {
		t.Fatalf("server hits = %d, want 3 (fail_max)", hits.Load())
	}
	// Open before the first attempt: no I/O, an error naming the circuit.
	start := time.Now()
	_, err = get(t, tr, srv.URL)
	if elapsed := time.Since(start); elapsed > 50*time.Millisecond {
		t.Errorf("refusal took %v", elapsed)
	}
	var coe *CircuitOpenError
	if !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, gobreaker.ErrOpenState) || !errors.As(err, &coe) {
		t.Fatalf("err = %v, want ErrCircuitOpen and gobreaker.ErrOpenState", err)
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if coe.Circuit != host || !strings.Contains(err.Error(), host) {
		t.Errorf("circuit %q, error %q: want %s", coe.Circuit, err, host)
	}
	if hits.Load() != 3 {
		t.Errorf("an open circuit let a request through: hits = %d", hits.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || changes[0].To != gobreaker.StateOpen || changes[0].Circuit != host {
		t.Errorf("state changes = %+v", changes)
	}
}

func TestCircuitClosesAfterResetTimeout(t *testing.T) {
	var code atomic.Int32
	code.Store(500)
	srv, hits := server(t, &code)
	f := testFactory(t, strings.Replace(circuits, "default_reset_timeout_sec = 60", "default_reset_timeout_sec = 0.05", 1))
	tr := New(f, "p")
	defer tr.CloseIdleConnections()
	get(t, tr, srv.URL)
	if st := circuitState(tr.e, strings.TrimPrefix(srv.URL, "http://")); st != gobreaker.StateOpen {
		t.Fatalf("state = %v", st)
	}
	code.Store(200)
	before := hits.Load()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := get(t, tr, srv.URL)
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("while open: %v, %v", resp, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the circuit never let a probe through")
		}
		time.Sleep(5 * time.Millisecond) // polling an external clock: gobreaker reads time.Now
	}
	if hits.Load() != before+1 {
		t.Errorf("half-open let %d requests through, want 1 probe", hits.Load()-before)
	}
	if st := circuitState(tr.e, strings.TrimPrefix(srv.URL, "http://")); st != gobreaker.StateClosed {
		t.Errorf("after a good probe: %v", st)
	}
}

func TestCircuitIgnores404AndIsPerHost(t *testing.T) {
	var notFound, failing atomic.Int32
	notFound.Store(404)
	failing.Store(503)
	a, hitsA := server(t, &notFound)
	b, _ := server(t, &failing)
	c, hitsC := server(t, &notFound)
	tr := New(testFactory(t, circuits), "p")
	defer tr.CloseIdleConnections()
	for i := 0; i < 20; i++ {
		if resp, err := get(t, tr, a.URL); err != nil || resp.StatusCode != 404 {
			t.Fatalf("404 server: %v, %v", resp, err)
		}
	}
	if hitsA.Load() != 20 {
		t.Errorf("404s must never open a circuit: %d hits of 20", hitsA.Load())
	}
	get(t, tr, b.URL)
	if _, err := get(t, tr, b.URL); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("failing host: %v", err)
	}
	if resp, err := get(t, tr, c.URL); err != nil || resp.StatusCode != 404 || hitsC.Load() != 1 {
		t.Errorf("another host's circuit must stay closed: %v, %v", resp, err)
	}
}

func TestCircuitsPassThroughInMeshAndWhenDisabled(t *testing.T) {
	for name, doc := range map[string]string{
		"mesh":     "[default]\ndeployment_mode = \"mesh\"\n" + circuits,
		"disabled": strings.Replace(circuits, "default_fail_max = 3", "enabled = false\ndefault_fail_max = 3", 1),
	} {
		t.Run(name, func(t *testing.T) {
			var code atomic.Int32
			code.Store(503)
			srv, hits := server(t, &code)
			tr := New(testFactory(t, doc), "p")
			defer tr.CloseIdleConnections()
			for i := 0; i < 10; i++ {
				if _, err := get(t, tr, srv.URL); err != nil {
					t.Fatal(err)
				}
			}
			want := int32(10 * 5)
			if name == "mesh" {
				want = 10
			}
			if hits.Load() != want {
				t.Errorf("hits = %d, want %d", hits.Load(), want)
			}
		})
	}
}

func TestCircuitRetuneKeepsUnchangedState(t *testing.T) {
	var code atomic.Int32
	code.Store(503)
	srv, _ := server(t, &code)
	f := testFactory(t, circuits)
	tr := New(f, "p")
	defer tr.CloseIdleConnections()
	get(t, tr, srv.URL)
	// A change to another circuit leaves this one open.
	if _, err := f.Update([]byte(circuits+"[default.resilience.circuit_breaker.circuits.\"other:80\"]\nfail_max = 9\n"), "toml", "live"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, tr, srv.URL); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("unchanged circuit lost its state: %v", err)
	}
	// A change to this circuit's values starts it afresh.
	if _, err := f.Update([]byte(strings.Replace(circuits, "default_fail_max = 3", "default_fail_max = 4", 1)), "toml", "live"); err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, tr, srv.URL); errors.Is(err, ErrCircuitOpen) {
		t.Fatal("a retuned circuit must start closed")
	}
}

func TestCircuitConcurrent(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	srv, _ := server(t, &code)
	f := testFactory(t, circuits)
	var tr *Transport
	set := breaker.Config{OnStateChange: func(breaker.StateChange) {
		circuitState(tr.e, strings.TrimPrefix(srv.URL, "http://")) // calling back must not deadlock
	}}
	tr = New(f, "p", WithCircuits(set))
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if g == 0 && i == 10 {
					code.Store(503)
				}
				if _, err := get(t, tr, srv.URL); err != nil && !errors.Is(err, ErrCircuitOpen) {
					t.Errorf("unexpected error: %v", err)
				}
			}
		}(g)
	}
	wg.Wait()
	if st := circuitState(tr.e, strings.TrimPrefix(srv.URL, "http://")); st != gobreaker.StateOpen {
		t.Errorf("after sustained 503s the circuit is %v", st)
	}
}

func TestCircuitDoByOperation(t *testing.T) {
	f := testFactory(t, circuits)
	r := NewRetrier(f, "p", WithCircuits(breaker.Config{Key: breaker.ByOperation}), WithOperationName("inventory"))
	calls := 0
	fail := func() error { calls++; return (netOpError{}).err() }
	_ = r.Do(t.Context(), func(ctxArg context.Context) error { return fail() })
	if calls != 3 {
		t.Fatalf("calls = %d, want 3 before the circuit opened", calls)
	}
	err := r.Do(t.Context(), func(context.Context) error { return fail() })
	var coe *CircuitOpenError
	if !errors.As(err, &coe) || coe.Circuit != "inventory" || calls != 3 {
		t.Fatalf("err = %v, calls = %d", err, calls)
	}
}

func TestCircuitStateMetricAndAborts(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	var code atomic.Int32
	code.Store(503)
	srv, _ := server(t, &code)
	tr := New(testFactory(t, circuits), "p", WithMeterProvider(mp))
	defer tr.CloseIdleConnections()
	get(t, tr, srv.URL) // opens the circuit and is aborted by it
	get(t, tr, srv.URL) // refused outright
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var state, aborts int64 = -1, 0
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if c, _ := p.Attributes.Value("circuit"); c.AsString() == strings.TrimPrefix(srv.URL, "http://") {
						state = p.Value
					}
				}
			case metricdata.Sum[int64]:
				if m.Name == "retry.circuit_breaker.aborts" {
					for _, p := range d.DataPoints {
						aborts += p.Value
					}
				}
			}
		}
	}
	if state != int64(gobreaker.StateOpen) || aborts != 2 {
		t.Errorf("state gauge = %d (want %d), aborts = %d (want 2)", state, gobreaker.StateOpen, aborts)
	}
}

// Attempts through a clean circuit bypass gobreaker; what they come to
// reaches it as gobreaker itself would count it: failures count, a success
// after a failure resets the count, and an outcome from before a change of
// state is dropped.
func TestCleanCircuitReports(t *testing.T) {
	c := newCircuit("h:1", policy.Circuit{FailMax: 3, ResetTimeout: time.Minute}, time.Now())
	gen, clean := c.clean()
	if !clean {
		t.Fatal("a new circuit is clean")
	}
	c.report(gen, errFailure, nil)
	c.report(gen, errFailure, nil)
	if _, clean := c.clean(); clean || c.cb.Counts().ConsecutiveFailures != 2 {
		t.Fatalf("after 2 failures: clean %v, gobreaker counts %d", clean, c.cb.Counts().ConsecutiveFailures)
	}
	c.report(gen, nil, nil) // a success that began while clean
	if _, clean := c.clean(); !clean || c.cb.Counts().ConsecutiveFailures != 0 {
		t.Fatalf("a success must reset the count: clean %v, gobreaker counts %d", clean, c.cb.Counts().ConsecutiveFailures)
	}
	var changes []breaker.StateChange
	onChange := func(ch breaker.StateChange) { changes = append(changes, ch) }
	for range 3 {
		c.report(gen, errFailure, onChange)
	}
	if c.cb.State() != gobreaker.StateOpen || len(changes) != 1 || changes[0].To != gobreaker.StateOpen {
		t.Fatalf("3 failures: state %v, changes %v", c.cb.State(), changes)
	}
	c.report(gen, errFailure, onChange) // from the closed generation
	c.report(gen, nil, onChange)
	if c.cb.State() != gobreaker.StateOpen || len(changes) != 1 {
		t.Fatalf("an outcome of the closed generation changed the open circuit: %v, %v", c.cb.State(), changes)
	}
}
