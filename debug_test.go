package rtx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// debugSettings has a budget of two retries per 10 s whatever the traffic,
// and circuits that open after five failures for 100 ms.
const debugDoc = `
[default.resilience.retry.policies.api]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
budget_ratio = 0
budget_min_retries_per_sec = 0.2
budget_window_seconds = 10

[default.resilience.circuit_breaker]
enabled = true
default_fail_max = 5
default_reset_timeout_sec = 0.1
`

// fetchDebug reads the handler's JSON.
func fetchDebug(t *testing.T, h http.Handler) DebugState {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/rtx?format=json", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET ?format=json: %d %q\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var st DebugState
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func fetchHTML(t *testing.T, h http.Handler, accept string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/debug/rtx", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("GET: %d\n%s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func onlyUpstream(t *testing.T, st DebugState) DebugUpstream {
	t.Helper()
	if len(st.Targets) != 1 || len(st.Targets[0].Upstreams.Entries) != 1 {
		t.Fatalf("want one target with one upstream, got %+v", st.Targets)
	}
	return st.Targets[0].Upstreams.Entries[0]
}

func laneOf(t *testing.T, u DebugUpstream, pol string) DebugPolicyState {
	t.Helper()
	for _, l := range u.Policies {
		if l.Policy == pol {
			return l
		}
	}
	t.Fatalf("no lane for policy %q in %+v", pol, u.Policies)
	return DebugPolicyState{}
}

func TestDebugJSONLive(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	f := testFactory(t, debugDoc)
	tr := New(f, "api")
	defer tr.CloseIdleConnections()
	var h DebugHandler
	h.Register("backend", tr)
	get := func() (*http.Response, error) {
		resp, err := tr.RoundTrip(mustGet(t, srv.URL+"/items"))
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	// Three attempts (failures 1-3, both retries of the budget spent);
	// one attempt stopped by the budget (failure 4); one that opens the
	// circuit (failure 5); one refused before any I/O.
	for range 3 {
		get()
	}
	if _, err := get(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("fourth request: %v, want ErrCircuitOpen", err)
	}
	st := fetchDebug(t, &h)
	tg := st.Targets[0]
	if tg.Name != "backend" || tg.Kind != "transport" || tg.Operation != "http" || tg.Policy != "api" || tg.Settings != 0 {
		t.Errorf("target = %+v", tg)
	}
	if tg.Upstreams.Total != 1 || tg.Upstreams.Open != 1 || tg.Upstreams.Omitted != 0 {
		t.Errorf("upstreams = %+v", tg.Upstreams)
	}
	u := onlyUpstream(t, st)
	if want := strings.TrimPrefix(srv.URL, "http://"); u.Key != want {
		t.Errorf("key = %q, want %q", u.Key, want)
	}
	if c := u.Circuit; c == nil || c.State != "open" || c.FailMax != 5 || c.ResetTimeout != 0.1 || time.Since(c.Since) > 5*time.Second || c.ProbeDue {
		t.Errorf("circuit = %+v, want open since just now", c)
	}
	if b := laneOf(t, u, "api").Budget; b == nil || b.FirstAttempts != 4 || b.Retries != 2 || b.RetriesLeft != 0 || b.Window != 10 {
		t.Errorf("budget = %+v, want 4 first attempts, 2 retries, none left", b)
	}
	var reasons []Reason
	for _, g := range tg.GiveUps {
		reasons = append(reasons, g.Reason)
		if g.Policy != "api" || g.Upstream != u.Key || g.Class != "HTTPRequestError" || g.Status != 503 || g.Method != "GET" || g.URL != srv.URL+"/items" {
			t.Errorf("give-up = %+v", g)
		}
	}
	if want := []Reason{ReasonCircuitOpen, ReasonBudget, ReasonAttempts}; fmt.Sprint(reasons) != fmt.Sprint(want) || tg.GiveUpsTotal != 3 {
		t.Errorf("give-ups = %v (%d in all), want %v latest first", reasons, tg.GiveUpsTotal, want)
	}
	if fmt.Sprint(tg.GiveUpsByReason) != "[{attempts exhausted 1} {circuit open 1} {retry budget exhausted 1}]" {
		t.Errorf("give-ups by reason = %v", tg.GiveUpsByReason)
	}
	if tg.GiveUps[2].Attempts != 3 || tg.GiveUps[1].Attempts != 1 {
		t.Errorf("attempts = %d, %d", tg.GiveUps[2].Attempts, tg.GiveUps[1].Attempts)
	}

	// Past the reset timeout the circuit is still reported open, probe due,
	// until a request probes it; a success closes it.
	time.Sleep(150 * time.Millisecond)
	if c := onlyUpstream(t, fetchDebug(t, &h)).Circuit; c.State != "open" || !c.ProbeDue {
		t.Errorf("past the reset timeout: %+v, want open with a probe due", c)
	}
	failing.Store(false)
	if resp, err := get(); err != nil || resp.StatusCode != 200 {
		t.Fatalf("probe: %v %v", resp, err)
	}
	if c := onlyUpstream(t, fetchDebug(t, &h)).Circuit; c.State != "closed" || c.ConsecutiveFailures != 0 || time.Since(c.Since) > time.Second {
		t.Errorf("after the probe: %+v, want closed just now", c)
	}

	// Settings: version 1 from the test's document; an update, then a
	// rejected one, which leaves the update in force.
	st = fetchDebug(t, &h)
	s := st.Settings[0]
	if s.Version != 2 || s.Source != "test.toml" || s.Rejected != nil || fmt.Sprint(s.Targets) != "[backend]" || !s.CircuitBreaker.Enabled || s.CircuitBreaker.FailMax != 5 {
		t.Errorf("settings = %+v", s)
	}
	if _, err := f.Update([]byte(strings.Replace(debugDoc, "attempts = 3", "attempts = 4", 1)), "toml", "update.toml"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Update([]byte(strings.Replace(debugDoc, "attempts = 3", "max_attempts = 4", 1)), "toml", "bad.toml"); err == nil {
		t.Fatal("bad document accepted")
	}
	s = fetchDebug(t, &h).Settings[0]
	if s.Version != 3 || s.Source != "update.toml" || time.Since(s.Applied) > 5*time.Second {
		t.Errorf("after the update: version %d from %q applied %v", s.Version, s.Source, s.Applied)
	}
	if r := s.Rejected; r == nil || r.Source != "bad.toml" || !strings.Contains(r.Error, "max_attempts") || time.Since(r.At) > 5*time.Second {
		t.Errorf("rejected = %+v, want bad.toml's max_attempts", r)
	}
	var api *DebugPolicy
	for i, p := range s.Policies {
		if p.Name == "api" {
			api = &s.Policies[i]
		}
	}
	if s.Policies[0].Name != "default" || api == nil {
		t.Fatalf("policies = %+v", s.Policies)
	}
	want := DebugPolicy{Name: "api", Attempts: 4, WaitMin: 0.001, WaitMax: 0.002, Backoff: 2, Jitter: 1,
		Exceptions: []string{"HTTPException"}, BudgetRatio: 0, BudgetMinRetriesPerSec: 0.2, BudgetWindow: 10}
	if fmt.Sprintf("%+v", *api) != fmt.Sprintf("%+v", want) {
		t.Errorf("policy api = %+v\nwant %+v", *api, want)
	}

	// The same through Accept, and the HTML page by default.
	if body := fetchHTML(t, &h, "text/html;q=0.9, application/json"); !strings.HasPrefix(body, "{") {
		t.Errorf("Accept: application/json served %.40q", body)
	}
	page := fetchHTML(t, &h, "")
	for _, want := range []string{"<!DOCTYPE html>", "backend", u.Key, "retry budget exhausted", "circuit open", "Last update rejected", "max_attempts", "version 3"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "src=") || strings.Contains(page, "href=\"http") {
		t.Error("page has a script or an external asset")
	}
}

// TestDebugRedacted: the page shows URLs as the logs do, never userinfo,
// query values, header values or bodies.
func TestDebugRedacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Echo", r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "resp-body-secret")
	}))
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	tr := New(testFactory(t, quick), "quick")
	defer tr.CloseIdleConnections()
	var h DebugHandler
	h.Register("", tr)
	for _, base := range []string{srv.URL, deadURL} {
		u := strings.Replace(base, "http://", "http://alice:pw-secret@", 1) + "/v1/x?token=tok-secret&s3cr3t-bare#frag-secret"
		req, err := http.NewRequest("PUT", u, strings.NewReader("req-body-secret"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer header-secret")
		resp, err := tr.RoundTrip(req)
		if resp != nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if resp == nil && err == nil {
			t.Fatal("no outcome")
		}
	}
	st := fetchDebug(t, &h)
	if got := st.Targets[0]; got.Name != "http" || len(got.GiveUps) != 2 {
		t.Fatalf("target = %+v", got)
	}
	if g := st.Targets[0].GiveUps[1]; g.URL != srv.URL+"/v1/x?token=REDACTED&REDACTED" || g.Method != "PUT" {
		t.Errorf("url = %q", g.URL)
	}
	if g := st.Targets[0].GiveUps[0]; g.Error == "" || g.Status != 0 {
		t.Errorf("refused connection: %+v", g)
	}
	raw, _ := json.Marshal(st)
	for _, body := range []string{string(raw), fetchHTML(t, &h, "")} {
		for _, secret := range []string{"secret", "alice", "s3cr3t", "frag"} {
			if strings.Contains(body, secret) {
				i := strings.Index(body, secret)
				t.Errorf("page shows %q: …%s…", secret, body[max(i-80, 0):min(i+40, len(body))])
			}
		}
	}
}

func TestDebugRetrier(t *testing.T) {
	r := NewRetrier(testFactory(t, strings.Replace(quick, `["HTTPException"]`, `["Exception"]`, 1)), "", WithOperationName("billing"))
	var h DebugHandler
	h.Register("", r)
	err := r.Do(context.Background(), func(context.Context) error { return errors.New("ledger down") })
	if err == nil {
		t.Fatal("no error")
	}
	tg := fetchDebug(t, &h).Targets[0]
	if tg.Name != "billing" || tg.Kind != "retrier" || tg.Operation != "billing" || len(tg.GiveUps) != 1 {
		t.Fatalf("target = %+v", tg)
	}
	if g := tg.GiveUps[0]; g.Upstream != "billing" || g.Reason != ReasonAttempts || g.Attempts != 3 || g.Class != "Exception" || g.URL != "" || g.Method != "" || g.Error != "ledger down" {
		t.Errorf("give-up = %+v", g)
	}
	if u := onlyUpstream(t, fetchDebug(t, &h)); u.Key != "billing" || laneOf(t, u, "default").Budget == nil {
		t.Errorf("upstream = %+v", u)
	}
	runtime.KeepAlive(r) // registered weakly: the page drops a collected Retrier
}

// TestDebugBounded: with 100,000 upstreams the page lists the open and
// half-open circuits first, then at most Limit others, and counts the
// rest.
func TestDebugBounded(t *testing.T) {
	tr := New(testFactory(t, debugDoc), "api", WithBase(newSink()))
	e := tr.e
	setting := e.factory.Snapshot().Breaker().Circuit("")
	now := e.clock()
	const n = 100_000
	for i := range n {
		key := fmt.Sprintf("host%d.test:80", i)
		u := e.ups.get([]byte(key), now-int64(n-i)) // the higher i, the more recently used
		c := u.circuitFor(setting, false, e.epoch)
		switch {
		case i%25_000 == 7:
			c.state.Store(int32(gobreaker.StateOpen))
			c.changed.Store(now - int64(i))
		case i == 12_345:
			c.state.Store(int32(gobreaker.StateHalfOpen))
		}
	}
	h := DebugHandler{Limit: 50}
	h.Register("many", tr)
	start := time.Now()
	l := fetchDebug(t, &h).Targets[0].Upstreams
	t.Logf("read %d upstreams in %v", n, time.Since(start))
	if l.Total != n || l.Open != 4 || l.HalfOpen != 1 || len(l.Entries) != 55 || l.Omitted != n-55 {
		t.Fatalf("total %d open %d half-open %d listed %d omitted %d", l.Total, l.Open, l.HalfOpen, len(l.Entries), l.Omitted)
	}
	var keys []string
	for _, u := range l.Entries[:6] {
		keys = append(keys, u.Key+" "+u.Circuit.State)
	}
	want := "[host7.test:80 open host25007.test:80 open host50007.test:80 open host75007.test:80 open host12345.test:80 half-open host99999.test:80 closed]"
	if fmt.Sprint(keys) != want {
		t.Errorf("first listed:\n%v\nwant\n%v", keys, want)
	}
	if last := l.Entries[54].Key; last != "host99950.test:80" {
		t.Errorf("last listed %q, want the 50th most recently used", last)
	}
	page := fetchHTML(t, &h, "")
	if !strings.Contains(page, fmt.Sprintf("%d of %d not listed", n-55, n)) {
		t.Error("the page does not say what it left out")
	}
	if len(page) > 200_000 {
		t.Errorf("page is %d bytes", len(page))
	}
	runtime.KeepAlive(tr) // registered weakly: the page drops a collected Transport
}

// TestDebugHedge: a hedging policy's delay and the latencies behind it.
func TestDebugHedge(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	const doc = `
[default.resilience.retry.policies.search]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
hedge_delay_seconds = 2
hedge_quantile = 0.95
`
	tr := New(testFactory(t, doc), "search")
	defer tr.CloseIdleConnections()
	var h DebugHandler
	h.Register("search", tr)
	for range 120 {
		resp, err := tr.RoundTrip(mustGet(t, srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	hd := laneOf(t, onlyUpstream(t, fetchDebug(t, &h)), "search").Hedge
	if hd == nil || hd.Delay != 2 || hd.Quantile != 0.95 || hd.Samples < 120-latencyRefresh || hd.Samples > 120 || hd.P50 == nil || *hd.P50 <= 0 || *hd.P50 > *hd.P99 {
		t.Fatalf("hedge = %+v", hd)
	}
	page := fetchHTML(t, &h, "")
	if !strings.Contains(page, "p0.95") {
		t.Error("page does not show the hedge quantile")
	}
}

// TestDebugBudgetTally: what the page says is left is what withdraw
// allows.
func TestDebugBudgetTally(t *testing.T) {
	p := testFactory(t, debugDoc).Snapshot()
	pol, _ := p.Policy("api")
	pol2 := *pol
	pol2.BudgetRatio = 0.5
	var b budget
	b.init(pol2.BudgetWindow)
	now := int64(time.Hour)
	for range 7 {
		b.add(now, 1, 0)
	}
	_, _, left := b.tally(&pol2, now)
	if left != 5 { // 0.5*7 + 0.2*10 = 5.5
		t.Fatalf("left = %d, want 5", left)
	}
	for i := range left {
		if !b.withdraw(&pol2, now) {
			t.Fatalf("withdraw %d refused", i+1)
		}
	}
	if b.withdraw(&pol2, now) {
		t.Fatal("withdraw allowed past what tally said")
	}
	if f, r, left := b.tally(&pol2, now); f != 7 || r != 5 || left != 0 {
		t.Errorf("tally = %d %d %d", f, r, left)
	}
	if f, r, _ := b.tally(&pol2, now+int64(11*time.Second)); f != 0 || r != 0 {
		t.Errorf("past the window: %d %d", f, r)
	}
}

func TestDebugRegister(t *testing.T) {
	var h DebugHandler
	if st := fetchDebug(t, &h); len(st.Targets) != 0 || len(st.Settings) != 0 {
		t.Fatalf("zero handler: %+v", st)
	}
	if page := fetchHTML(t, &h, ""); !strings.Contains(page, "Nothing registered") {
		t.Error("zero handler's page")
	}
	keep := New(nil, "")
	h.Register("", keep)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a second registration under a name taken did not panic")
			}
		}()
		h.Register("http", New(nil, ""))
	}()
	h.Register("gone", New(nil, "")) // nothing else keeps it alive
	h.Register("", (*Transport)(nil))
	h.Register("", nil)
	for range 5 {
		runtime.GC()
	}
	st := fetchDebug(t, &h)
	if len(st.Targets) != 1 || st.Targets[0].Name != "http" || st.Targets[0].Policy != "default" || st.Settings[0].Source != "built-in defaults" {
		t.Errorf("targets = %+v", st.Targets)
	}
	h.Register("gone", keep) // the collected one's name is free again
	h.Unregister("http")
	if st := fetchDebug(t, &h); len(st.Targets) != 1 || st.Targets[0].Name != "gone" {
		t.Errorf("after Unregister: %+v", st.Targets)
	}
	runtime.KeepAlive(keep)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
}

// BenchmarkGETDebug is BenchmarkGET's first try with no debug handler,
// with one registered and idle, and with one read in a loop meanwhile:
// the first two must not differ. In "reading", B/op counts the reader's
// allocations too (the benchmark counts the whole process's); allocs/op
// stays 0 as the request path allocates nothing.
func BenchmarkGETDebug(b *testing.B) {
	for _, mode := range []string{"unregistered", "registered", "reading"} {
		b.Run(mode, func(b *testing.B) {
			tr := New(testFactory(b, benchSettings), "api", WithBase(newSink()))
			var h DebugHandler
			if mode != "unregistered" {
				h.Register("api", tr)
			}
			if mode == "reading" {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				defer func() { cancel(); <-done }()
				go func() {
					defer close(done)
					for ctx.Err() == nil {
						h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/?format=json", nil))
					}
				}()
			}
			req := mustGet(b, "http://api.test/items?page=1")
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tr.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}
