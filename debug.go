package rtx

import (
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"weak"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/policy"
)

// DefaultDebugLimit is how many upstreams a [DebugHandler] lists per
// Transport or Retrier, in each of two groups (circuits not closed, then
// the others), when its Limit is 0.
const DefaultDebugLimit = 200

// debugGiveUps is how many give-ups an engine remembers for the debug page.
const debugGiveUps = 20

// Debuggable is what a [DebugHandler] shows: a [*Transport] or a
// [*Retrier]. Its method is unexported, so that only this package's types
// implement it.
type Debuggable interface {
	debugTarget() debugTarget
}

// debugTarget reaches a registered Transport or Retrier without keeping it
// alive.
type debugTarget struct {
	kind   string
	engine func() *engine // nil once the owner was collected
}

func (t *Transport) debugTarget() debugTarget {
	w := weak.Make(t)
	return debugTarget{kind: "transport", engine: func() *engine {
		if t := w.Value(); t != nil {
			return t.e
		}
		return nil
	}}
}

func (r *Retrier) debugTarget() debugTarget {
	w := weak.Make(r)
	return debugTarget{kind: "retrier", engine: func() *engine {
		if r := w.Value(); r != nil {
			return r.e
		}
		return nil
	}}
}

// DebugHandler is an [http.Handler] that shows what the Transports and
// Retriers registered with it are doing now, for an operator in an
// incident, as Envoy's admin endpoints and grpc-go's channelz do: the
// policies in force and where they came from (source, version, the last
// rejected update), per upstream the circuit, the retry budget and the
// hedge delay with the latencies behind it, and the last give-ups.
//
// It serves one plain HTML page (no scripts, no external assets; add
// ?refresh=N to reload it every N seconds), or JSON when asked with
// ?format=json or an Accept header naming application/json. The JSON is a
// [DebugState]: its field names are stable; fields may be added.
//
// Nothing mounts it: a program that wants it mounts it where its other
// debug handlers are, behind the same access control:
//
//	var dbg rtx.DebugHandler
//	dbg.Register("payments", transport)
//	mux.Handle("/debug/rtx", &dbg)
//
// The page shows nothing the logs would not: URLs without userinfo and
// with query values redacted ([RedactURL]), never header values or bodies.
//
// Reading it costs the requests nothing while nobody asks, and takes no
// lock that requests wait on, with two exceptions, each held for a copy
// of a few words and only for the upstreams listed: a circuit's failure
// count is read from its breaker, and latency quantiles are read from a
// sketch only when no attempt is recording into it (else they are left
// out of that reading). Upstream state is read entry by entry, not as one
// consistent snapshot. With many upstreams it lists the circuits that are
// not closed first, then the most recently used others, up to Limit each,
// and says how many it left out.
//
// The zero value is ready to use and lists nothing. A DebugHandler is
// safe for concurrent use; Limit must be set before it serves.
type DebugHandler struct {
	// Limit bounds how many upstreams are listed per Transport or Retrier
	// in each group (circuits open or half-open, then the others).
	// 0 means [DefaultDebugLimit].
	Limit int

	mu      sync.Mutex
	targets []registered
}

type registered struct {
	name string
	debugTarget
}

// Register adds t to the page under name; "" names it by its operation
// ([WithOperationName]: "http" for a Transport, "do" for a Retrier). The
// handler does not keep t alive: a Transport or Retrier that is no longer
// reachable drops off the page. Register panics if name is taken by
// another registration still alive, as [http.ServeMux.Handle] and
// expvar.Publish do. A nil t is ignored.
func (h *DebugHandler) Register(name string, t Debuggable) {
	if t == nil {
		return
	}
	dt := t.debugTarget()
	e := dt.engine()
	if e == nil {
		return
	}
	if name == "" {
		name = e.cfg.operation
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = slices.DeleteFunc(h.targets, func(r registered) bool { return r.engine() == nil })
	for _, r := range h.targets {
		if r.name == name {
			panic(fmt.Sprintf("rtx: DebugHandler.Register: %q is registered already", name))
		}
	}
	h.targets = append(h.targets, registered{name: name, debugTarget: dt})
}

// Unregister removes what was registered under name, if anything.
func (h *DebugHandler) Unregister(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.targets = slices.DeleteFunc(h.targets, func(r registered) bool { return r.name == name })
}

// ServeHTTP serves the page for GET and HEAD requests: JSON for
// ?format=json or an Accept header naming application/json, else HTML.
func (h *DebugHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := h.state(time.Now())
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return
	}
	refresh, _ := strconv.Atoi(r.URL.Query().Get("refresh"))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if err := debugPage.Execute(w, debugView{DebugState: st, Refresh: max(refresh, 0)}); err != nil {
		fmt.Fprintf(w, "<p>rendering failed: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "html":
		return false
	}
	for _, a := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(a, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/json") {
				return true
			}
		}
	}
	return false
}

// DebugState is what a [DebugHandler] serves as JSON.
//
//	{
//	  "time": "2025-06-01T12:00:00Z",
//	  "settings": [ DebugSettings, ... ],   // one per factory, shared by targets
//	  "targets":  [ DebugTarget, ... ]      // in the order registered
//	}
//
// Times are RFC 3339 in UTC, durations are seconds (float), and the names
// of settings follow the settings file's keys. A field that does not apply
// is left out.
type DebugState struct {
	Time     time.Time       `json:"time"`
	Settings []DebugSettings `json:"settings"`
	Targets  []DebugTarget   `json:"targets"`
}

// DebugSettings describes the settings a factory serves: where they came
// from ([policy.Status]), the policies as requests get them, and the
// circuit breaker table.
type DebugSettings struct {
	Targets        []string        `json:"targets"` // the names of the targets using this factory
	Source         string          `json:"source"`
	Version        uint64          `json:"version"`
	Applied        time.Time       `json:"applied,omitzero"`
	Rejected       *DebugRejection `json:"rejected,omitempty"` // the last update turned down
	Mode           string          `json:"deployment_mode"`
	Enabled        bool            `json:"retry_enabled"`
	Env            string          `json:"env,omitempty"`
	Layers         []string        `json:"layers,omitempty"`
	Policies       []DebugPolicy   `json:"policies"` // "default" first
	CircuitBreaker DebugBreaker    `json:"circuit_breaker"`
}

// DebugRejection is a settings update that was turned down: the
// settings in force stayed.
type DebugRejection struct {
	Source string    `json:"source"`
	Error  string    `json:"error"`
	At     time.Time `json:"at"`
}

// DebugPolicy is a [policy.Policy] as requests get it (one attempt in
// mesh mode or with retries disabled), under its settings file's keys.
type DebugPolicy struct {
	Name                   string   `json:"name"`
	Attempts               int      `json:"attempts"`
	WaitMin                float64  `json:"wait_min_seconds"`
	WaitMax                float64  `json:"wait_max_seconds"`
	Backoff                float64  `json:"backoff"`
	Jitter                 float64  `json:"jitter"`
	Timeout                float64  `json:"timeout_seconds"`
	Exceptions             []string `json:"exceptions"`
	RetryNonIdempotent     bool     `json:"retry_non_idempotent"`
	IdempotencyKey         bool     `json:"idempotency_key"`
	BudgetRatio            float64  `json:"budget_ratio"`
	BudgetMinRetriesPerSec float64  `json:"budget_min_retries_per_sec"`
	BudgetWindow           float64  `json:"budget_window_seconds"`
	HedgeDelay             float64  `json:"hedge_delay_seconds"`
	HedgeQuantile          float64  `json:"hedge_quantile"`
	MaxHedges              int      `json:"max_hedges"`
}

// DebugBreaker is the circuit breaker table in force.
type DebugBreaker struct {
	Enabled      bool                           `json:"enabled"`
	FailMax      uint32                         `json:"default_fail_max"`
	ResetTimeout float64                        `json:"default_reset_timeout_sec"`
	Circuits     map[string]DebugCircuitSetting `json:"circuits,omitempty"`
}

// DebugCircuitSetting is the setting of one circuit.
type DebugCircuitSetting struct {
	FailMax      uint32  `json:"fail_max"`
	ResetTimeout float64 `json:"reset_timeout_sec"`
}

// DebugTarget is one registered [Transport] or [Retrier].
//
// Upstreams lists its upstreams (host:port, or a Retrier's operation
// name): those whose circuit is open or half-open first (open before
// half-open, the latest change first), up to the handler's Limit, then
// the most recently used others, up to Limit again. The counts say how
// many there are and how many were left out. Under custom circuit keys
// ([WithCircuits]), circuits are kept apart from the upstreams' budgets
// and are listed the same way in Circuits.
type DebugTarget struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // "transport" or "retrier"
	Operation string `json:"operation"`
	Policy    string `json:"policy"`   // the policy its calls run under unless WithPolicy says otherwise
	Settings  int    `json:"settings"` // index into DebugState.Settings

	Upstreams DebugList  `json:"upstreams"`
	Circuits  *DebugList `json:"circuits,omitempty"` // under custom circuit keys only

	GiveUpsTotal    uint64         `json:"give_ups_total"`     // since it was made
	GiveUpsByReason []DebugGiveUps `json:"give_ups_by_reason"` // since it was made, the most frequent first
	GiveUps         []DebugGiveUp  `json:"give_ups"`           // the last few, latest first
}

// DebugList is a bounded list of upstream (or circuit) entries.
type DebugList struct {
	Total    int             `json:"total"`     // entries kept
	Open     int             `json:"open"`      // of which circuits open
	HalfOpen int             `json:"half_open"` // and half-open
	Omitted  int             `json:"omitted"`   // entries not listed
	Entries  []DebugUpstream `json:"entries"`
}

// DebugUpstream is the state kept for one upstream, or one circuit under
// a custom key.
type DebugUpstream struct {
	Key      string             `json:"key"`
	LastUsed time.Time          `json:"last_used"`
	Circuit  *DebugCircuit      `json:"circuit,omitempty"`  // none while circuits are off
	Policies []DebugPolicyState `json:"policies,omitempty"` // under each policy its calls ran under
}

// DebugCircuit is a circuit's state as last reported by its breaker.
// An open circuit past its reset timeout turns half-open at its next use:
// ProbeDue says so meanwhile.
type DebugCircuit struct {
	Name                string    `json:"name"`
	State               string    `json:"state"` // "closed", "half-open" or "open"
	Since               time.Time `json:"since"` // the last change of state (or creation)
	ConsecutiveFailures uint32    `json:"consecutive_failures"`
	FailMax             uint32    `json:"fail_max"`
	ResetTimeout        float64   `json:"reset_timeout_sec"`
	ProbeDue            bool      `json:"probe_due,omitempty"`
}

// DebugPolicyState is an upstream's state under one policy: its retry
// budget and hedge delay.
type DebugPolicyState struct {
	Policy string       `json:"policy"`
	Budget *DebugBudget `json:"budget,omitempty"` // when the policy has a budget
	Hedge  *DebugHedge  `json:"hedge,omitempty"`  // when the policy hedges
}

// DebugBudget is a retry budget over its window, now: first attempts and
// retries (hedges included) counted, and how many more retries it allows.
type DebugBudget struct {
	Window        float64 `json:"window_seconds"`
	FirstAttempts int64   `json:"first_attempts"`
	Retries       int64   `json:"retries"`
	RetriesLeft   int64   `json:"retries_left"`
}

// DebugHedge is the hedge delay in force for an upstream under a policy
// and, when the delay follows a quantile, the recent answered-attempt
// latencies it rests on: as of the sketch's last recomputation, which
// happens every few samples (left out before the first).
type DebugHedge struct {
	Delay    float64  `json:"delay_seconds"`
	Quantile float64  `json:"quantile,omitempty"`
	Samples  float64  `json:"samples,omitempty"`
	P50      *float64 `json:"p50_seconds,omitempty"`
	P90      *float64 `json:"p90_seconds,omitempty"`
	P95      *float64 `json:"p95_seconds,omitempty"`
	P99      *float64 `json:"p99_seconds,omitempty"`
}

// DebugGiveUps counts the give-ups for one reason.
type DebugGiveUps struct {
	Reason Reason `json:"reason"`
	Count  uint64 `json:"count"`
}

// DebugGiveUp is one call that gave up, as its log line tells it.
type DebugGiveUp struct {
	Time     time.Time `json:"time"`
	Policy   string    `json:"policy"`
	Upstream string    `json:"upstream"`
	Class    string    `json:"class"`
	Reason   Reason    `json:"reason"`
	Attempts int       `json:"attempts"`
	Status   int       `json:"status,omitempty"` // the response handed back, if any
	Method   string    `json:"method,omitempty"`
	URL      string    `json:"url,omitempty"` // redacted as by RedactURL
	Error    string    `json:"error,omitempty"`
}

// giveUpLog is an engine's ring of its last give-ups. Only the give-up
// path writes it, never the path of a first try that succeeds.
type giveUpLog struct {
	mu       sync.Mutex
	total    uint64
	byReason map[Reason]uint64 // as many keys as there are reasons
	ring     [debugGiveUps]giveUp
}

// giveUp is what is kept of a give-up; its URL and error are redacted when
// shown, not when kept, so that recording allocates nothing.
type giveUp struct {
	at       time.Time
	policy   string
	upstream string
	class    string
	reason   Reason
	attempts int
	status   int
	method   string
	url      url.URL // userinfo and fragment dropped
	hasURL   bool
	err      error
}

// record remembers a call that gave up with out, for reason.
func (l *giveUpLog) record(c *call, out outcome, reason Reason) {
	g := giveUp{at: time.Now(), policy: policyName(c.pol), class: out.class, reason: reason, attempts: out.attempt, err: out.err}
	if c.up != nil {
		g.upstream = c.up.key
	}
	if out.resp != nil {
		g.status = out.resp.StatusCode
	}
	if c.req != nil && c.req.URL != nil {
		g.method, g.url, g.hasURL = method(c.req), *c.req.URL, true
		g.url.User, g.url.Fragment, g.url.RawFragment = nil, "", ""
	}
	l.mu.Lock()
	l.ring[l.total%debugGiveUps] = g
	l.total++
	if l.byReason == nil {
		l.byReason = map[Reason]uint64{}
	}
	l.byReason[reason]++
	l.mu.Unlock()
}

// last returns the give-ups remembered, latest first, how many there were
// in all, and how many for each reason.
func (l *giveUpLog) last() ([]DebugGiveUp, uint64, []DebugGiveUps) {
	l.mu.Lock()
	total := l.total
	n := min(total, debugGiveUps)
	gs := make([]giveUp, 0, n)
	for i := range n {
		gs = append(gs, l.ring[(total-1-i)%debugGiveUps])
	}
	counts := make([]DebugGiveUps, 0, len(l.byReason))
	for r, c := range l.byReason {
		counts = append(counts, DebugGiveUps{Reason: r, Count: c})
	}
	l.mu.Unlock()
	slices.SortFunc(counts, func(a, b DebugGiveUps) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(string(a.Reason), string(b.Reason)))
	})
	out := make([]DebugGiveUp, len(gs))
	for i, g := range gs {
		d := DebugGiveUp{Time: g.at.UTC(), Policy: g.policy, Upstream: g.upstream, Class: g.class, Reason: g.reason,
			Attempts: g.attempts, Status: g.status, Method: g.method}
		if g.hasURL {
			d.URL = RedactURL(&g.url)
		}
		if g.err != nil {
			d.Error = redactError(g.err)
		}
		out[i] = d
	}
	return out, total, counts
}

// tally returns the first attempts and retries in the budget's window at
// now, and how many more retries p allows: withdraw's arithmetic, read
// only.
func (b *budget) tally(p *policy.Policy, now int64) (firsts, retries, left int64) {
	firsts, retries = b.counts(now)
	if p == nil {
		return firsts, retries, 0
	}
	left = max(int64(math.Floor(b.allowed(p, firsts)-float64(retries))), 0)
	return firsts, retries, left
}

// state reads the registered targets at now.
func (h *DebugHandler) state(now time.Time) DebugState {
	h.mu.Lock()
	regs := slices.Clone(h.targets)
	h.mu.Unlock()
	limit := h.Limit
	if limit <= 0 {
		limit = DefaultDebugLimit
	}
	st := DebugState{Time: now.UTC(), Settings: []DebugSettings{}, Targets: []DebugTarget{}}
	factories := map[*policy.Factory]int{}
	for _, r := range regs {
		e := r.engine()
		if e == nil {
			continue
		}
		snap := e.factory.Snapshot()
		idx, ok := factories[e.factory]
		if !ok {
			idx = len(st.Settings)
			factories[e.factory] = idx
			st.Settings = append(st.Settings, debugSettings(e.factory.Status(), snap))
		}
		st.Settings[idx].Targets = append(st.Settings[idx].Targets, r.name)
		t := DebugTarget{Name: r.name, Kind: r.kind, Operation: e.cfg.operation, Policy: cmp.Or(e.name, "default"), Settings: idx}
		t.Upstreams = debugList(e, e.ups, snap, now, limit)
		if e.named != nil {
			l := debugList(e, e.named, snap, now, limit)
			t.Circuits = &l
		}
		t.GiveUps, t.GiveUpsTotal, t.GiveUpsByReason = e.giveUps.last()
		st.Targets = append(st.Targets, t)
	}
	return st
}

func debugSettings(status policy.Status, snap *policy.Snapshot) DebugSettings {
	s := DebugSettings{Source: status.Source, Version: status.Version, Applied: status.Applied.UTC(),
		Mode: snap.Mode(), Enabled: snap.Enabled(), Env: snap.Layout().Env, Layers: snap.Layout().Layers}
	if status.Applied.IsZero() {
		s.Applied = time.Time{}
	}
	if rj := status.Rejected; rj != nil {
		s.Rejected = &DebugRejection{Source: rj.Source, Error: rj.Err, At: rj.At.UTC()}
	}
	for _, name := range snap.Names() {
		p, err := snap.Policy(name)
		if err != nil {
			continue
		}
		s.Policies = append(s.Policies, DebugPolicy{Name: name, Attempts: p.Attempts,
			WaitMin: p.WaitMin.Seconds(), WaitMax: p.WaitMax.Seconds(), Backoff: p.Backoff, Jitter: p.Jitter,
			Timeout: p.Timeout.Seconds(), Exceptions: slices.Clone(p.Exceptions),
			RetryNonIdempotent: p.RetryNonIdempotent, IdempotencyKey: p.IdempotencyKey,
			BudgetRatio: p.BudgetRatio, BudgetMinRetriesPerSec: p.BudgetMinRetriesPerSec, BudgetWindow: p.BudgetWindow.Seconds(),
			HedgeDelay: p.HedgeDelay.Seconds(), HedgeQuantile: p.HedgeQuantile, MaxHedges: p.MaxHedges})
	}
	b := snap.Breaker()
	s.CircuitBreaker = DebugBreaker{Enabled: b.Enabled, FailMax: b.FailMax, ResetTimeout: b.ResetTimeout.Seconds()}
	if len(b.Circuits) > 0 {
		s.CircuitBreaker.Circuits = make(map[string]DebugCircuitSetting, len(b.Circuits))
		for k, c := range b.Circuits {
			s.CircuitBreaker.Circuits[k] = DebugCircuitSetting{FailMax: c.FailMax, ResetTimeout: c.ResetTimeout.Seconds()}
		}
	}
	return s
}

// candidate is an entry considered for listing, read with atomic loads
// only.
type candidate struct {
	u       *upstream
	c       *circuit
	state   gobreaker.State
	changed int64
	used    int64
}

// rank orders candidates: open circuits, then half-open ones, the latest
// change first; then the others, the latest used first.
func rank(a, b candidate) int {
	if ga, gb := group(a.state), group(b.state); ga != gb {
		return cmp.Compare(ga, gb)
	}
	if a.state != gobreaker.StateClosed {
		if c := cmp.Compare(b.changed, a.changed); c != 0 {
			return c
		}
	} else if c := cmp.Compare(b.used, a.used); c != 0 {
		return c
	}
	return strings.Compare(a.u.key, b.u.key)
}

func group(s gobreaker.State) int {
	switch s {
	case gobreaker.StateOpen:
		return 0
	case gobreaker.StateHalfOpen:
		return 1
	}
	return 2
}

// topK keeps the best k candidates seen, in memory bounded by 2k.
type topK struct {
	k  int
	cs []candidate
}

func (t *topK) add(c candidate) {
	t.cs = append(t.cs, c)
	if len(t.cs) >= 2*t.k {
		t.trim()
	}
}

func (t *topK) trim() {
	slices.SortFunc(t.cs, rank)
	t.cs = t.cs[:min(len(t.cs), t.k)]
}

// debugList lists a table's entries, the circuits not closed first, at
// most limit of them and limit others. t is one of e's.
func debugList(e *engine, t *table, snap *policy.Snapshot, now time.Time, limit int) DebugList {
	var l DebugList
	troubled, others := topK{k: limit}, topK{k: limit}
	t.each(func(u *upstream) {
		l.Total++
		c := candidate{u: u, used: u.used.Load(), state: gobreaker.StateClosed}
		if c.c = u.circuit.Load(); c.c != nil {
			c.state = gobreaker.State(c.c.state.Load())
			c.changed = c.c.changed.Load()
		}
		switch c.state {
		case gobreaker.StateOpen:
			l.Open++
			troubled.add(c)
		case gobreaker.StateHalfOpen:
			l.HalfOpen++
			troubled.add(c)
		default:
			others.add(c)
		}
	})
	troubled.trim()
	others.trim()
	l.Entries = make([]DebugUpstream, 0, len(troubled.cs)+len(others.cs))
	for _, c := range slices.Concat(troubled.cs, others.cs) {
		l.Entries = append(l.Entries, debugUpstream(e, c, snap, e.at(now)))
	}
	l.Omitted = l.Total - len(l.Entries)
	return l
}

// debugUpstream describes an entry of e at now (engine time).
func debugUpstream(e *engine, c candidate, snap *policy.Snapshot, now int64) DebugUpstream {
	d := DebugUpstream{Key: c.u.key, LastUsed: e.wall(c.used).Round(0).UTC()}
	if c.c != nil {
		d.Circuit = &DebugCircuit{Name: c.c.name, State: stateName(c.state), Since: e.wall(c.changed).Round(0).UTC(),
			ConsecutiveFailures: c.c.failures.Load(),
			FailMax:             c.c.setting.FailMax, ResetTimeout: c.c.setting.ResetTimeout.Seconds(),
			ProbeDue: c.state == gobreaker.StateOpen && now-c.changed > int64(c.c.setting.ResetTimeout)}
	}
	c.u.lanes(func(ln *lane) { d.Policies = append(d.Policies, debugLane(ln, snap, now)) })
	return d
}

func debugLane(ln *lane, snap *policy.Snapshot, now int64) DebugPolicyState {
	d := DebugPolicyState{Policy: cmp.Or(ln.policy, "default")}
	p, err := snap.Policy(ln.policy)
	if err != nil {
		p = nil // the policy went with an update: its counts stay, its limits are gone
	}
	if ln.window > 0 && (p == nil || budgetEnabled(p)) {
		firsts, retries, left := ln.budget.tally(p, now)
		d.Budget = &DebugBudget{Window: ln.window.Seconds(), FirstAttempts: firsts, Retries: retries, RetriesLeft: left}
	}
	if p == nil || !p.Hedges() {
		return d
	}
	h := &DebugHedge{Delay: p.HedgeDelay.Seconds()}
	if p.HedgeQuantile > 0 {
		h.Quantile = p.HedgeQuantile
		if s := ln.latency.Load(); s != nil && s.quantile == p.HedgeQuantile {
			h.Delay = max(p.HedgeDelay, time.Duration(s.delay.Load())).Seconds() // as hedgeDelay computes it
			if sum := s.summary.Load(); sum != nil {
				h.Samples = sum.samples
				h.P50, h.P90, h.P95, h.P99 = &sum.q[0], &sum.q[1], &sum.q[2], &sum.q[3]
			}
		}
	}
	d.Hedge = h
	return d
}

func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return "open"
	case gobreaker.StateHalfOpen:
		return "half-open"
	}
	return "closed"
}

// debugView is what the HTML page is rendered from.
type debugView struct {
	DebugState
	Refresh int // seconds between reloads; 0: none
}

// Ago says how long before the page's time t was.
func (v debugView) Ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := v.Time.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Second:
		return fmt.Sprintf("%dms ago", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm ago", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// Clock renders t as a UTC time of day with milliseconds, and the date
// when it is not the page's.
func (v debugView) Clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	if t.Format(time.DateOnly) != v.Time.Format(time.DateOnly) {
		return t.Format("2006-01-02 15:04:05.000Z")
	}
	return t.Format("15:04:05.000Z")
}

// Secs renders a number of seconds as a short duration.
func (debugView) Secs(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", s*1e6)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", s*1e3)
	}
	return strconv.FormatFloat(s, 'g', 4, 64) + "s"
}

// SecsP renders an optional number of seconds.
func (v debugView) SecsP(s *float64) string {
	if s == nil {
		return "—"
	}
	return v.Secs(*s)
}

// Left says what a list left out.
func (debugView) Left(l DebugList) string {
	if l.Omitted == 0 {
		return ""
	}
	listedTroubled := 0
	for _, e := range l.Entries {
		if e.Circuit != nil && e.Circuit.State != "closed" {
			listedTroubled++
		}
	}
	if t := l.Open + l.HalfOpen - listedTroubled; t > 0 {
		return fmt.Sprintf("%d of %d not listed, %d of them with circuits open or half-open; the JSON has the same limit.", l.Omitted, l.Total, t)
	}
	return fmt.Sprintf("%d of %d not listed: the least recently used, circuits closed.", l.Omitted, l.Total)
}

// debugListArgs is what the page's "list" template is called with.
type debugListArgs struct {
	V    debugView
	L    DebugList
	What string
}

var debugPage = template.Must(template.New("rtx").Funcs(template.FuncMap{
	"args": func(v debugView, l DebugList, what string) debugListArgs { return debugListArgs{v, l, what} },
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>rtx: what it is doing now</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 1.5em 2em;color:#1d2330;background:#fbfbfc}
h1{font-size:20px;margin:.8em 0 .2em}h2{font-size:17px;margin:1.4em 0 .3em;border-bottom:1px solid #d8dbe2;padding-bottom:.2em}
h3{font-size:14px;margin:1em 0 .3em;color:#454d5d}small,.meta{color:#667085;font-weight:normal}
table{border-collapse:collapse;margin:.2em 0;background:#fff}th,td{border:1px solid #e1e4ea;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;font-size:13px}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.st{display:inline-block;min-width:5.5em;text-align:center;border-radius:3px;padding:0 6px;font-weight:600;font-size:12px;color:#fff}
.st.open{background:#c62828}.st.half-open{background:#e08a00}.st.closed{background:#2e7d32}.st.none{background:#9aa1ad}
tr.open td{background:#fdecec}tr.half-open td{background:#fff5e0}
.sum span{margin-right:1.2em}.bad{color:#c62828;font-weight:600}.warn{color:#b26a00;font-weight:600}
.rej{border:1px solid #e5a0a0;background:#fdecec;padding:6px 10px;margin:.4em 0;max-width:70em}
.note{color:#667085;font-style:italic}.lane,.nw{white-space:nowrap}table.wide{width:100%}td.req{overflow-wrap:anywhere}td.req code{font-size:12px}
</style></head><body>
<h1>rtx <small>what it is doing now</small></h1>
<p class="meta">{{.Time.Format "2006-01-02 15:04:05.000Z"}} · <a href="?format=json">JSON</a>{{if not .Refresh}} · <a href="?refresh=5">reload every 5s</a>{{end}}</p>
{{- range .Settings}}
<p class="sum">Settings <b>version {{.Version}}</b> from <code>{{.Source}}</code>, applied {{$.Ago .Applied}}{{if .Env}}, environment <code>{{.Env}}</code>{{end}}{{if ne .Mode "standalone"}}, <span class="warn">mode {{.Mode}}</span>{{end}}{{if not .Enabled}}, <span class="warn">retries disabled</span>{{end}}{{if not .CircuitBreaker.Enabled}}, circuits off{{end}} <small>(used by {{range $i, $n := .Targets}}{{if $i}}, {{end}}{{$n}}{{end}})</small></p>
{{- with .Rejected}}
<div class="rej"><span class="bad">Last update rejected</span> {{$.Ago .At}} ({{$.Clock .At}}) from <code>{{.Source}}</code>; the settings above stayed in force:<br><code>{{.Error}}</code></div>
{{- end}}
{{- end}}
{{- if not .Targets}}<p class="note">Nothing registered: call Register with a Transport or Retrier.</p>{{end}}
{{- range .Targets}}
<h2>{{.Name}} <small>{{.Kind}} · operation <code>{{.Operation}}</code> · policy <code>{{.Policy}}</code></small></h2>
<p class="sum">{{with .Upstreams}}<span{{if .Open}} class="bad"{{end}}>{{.Open}} open</span><span{{if .HalfOpen}} class="warn"{{end}}>{{.HalfOpen}} half-open</span><span>{{.Total}} upstreams</span>{{end}}<span{{if .GiveUps}} class="warn"{{end}}>{{.GiveUpsTotal}} give-ups</span></p>
{{- template "list" (args $ .Upstreams "upstream")}}
{{- with .Circuits}}<h3>Circuits (custom keys)</h3>{{template "list" (args $ . "circuit")}}{{end}}
<h3>Last give-ups{{if .GiveUpsTotal}} <small>of {{.GiveUpsTotal}}: {{range $i, $r := .GiveUpsByReason}}{{if $i}}, {{end}}{{$r.Count}} {{$r.Reason}}{{end}}</small>{{end}}</h3>
{{- if .GiveUps}}
<table class="wide"><tr><th>time</th><th>policy</th><th>upstream</th><th>reason · class</th><th>attempts</th><th>status</th><th>request · error</th></tr>
{{- range .GiveUps}}
<tr><td class="nw" title="{{.Time.Format "2006-01-02T15:04:05.000Z07:00"}}">{{$.Clock .Time}}<br><small>{{$.Ago .Time}}</small></td><td>{{.Policy}}</td><td><code>{{.Upstream}}</code></td><td class="nw"><b>{{.Reason}}</b><br><small>{{.Class}}</small></td><td class="n">{{.Attempts}}</td><td class="n">{{if .Status}}{{.Status}}{{end}}</td><td class="req">{{if .Method}}<code>{{.Method}} {{.URL}}</code>{{end}}{{if and .Method .Error}}<br>{{end}}{{with .Error}}<small>{{.}}</small>{{end}}</td></tr>
{{- end}}
</table>
{{- else}}<p class="note">None.</p>{{end}}
{{- end}}
{{- range .Settings}}
<h2>Policies in force <small>version {{.Version}} · {{.Source}}</small></h2>
<table><tr><th>policy</th><th>attempts</th><th>wait min</th><th>wait max</th><th>backoff</th><th>jitter</th><th>timeout</th><th>exceptions</th><th>non-idempotent</th><th>idempotency key</th><th>budget ratio</th><th>min retries/s</th><th>budget window</th><th>hedge delay</th><th>hedge quantile</th><th>max hedges</th></tr>
{{- range .Policies}}
<tr><td><code>{{.Name}}</code></td><td class="n">{{.Attempts}}</td><td class="n">{{$.Secs .WaitMin}}</td><td class="n">{{$.Secs .WaitMax}}</td><td class="n">{{.Backoff}}</td><td class="n">{{.Jitter}}</td><td class="n">{{$.Secs .Timeout}}</td><td>{{range $i, $x := .Exceptions}}{{if $i}}, {{end}}{{$x}}{{end}}</td><td>{{.RetryNonIdempotent}}</td><td>{{.IdempotencyKey}}</td><td class="n">{{if lt .BudgetRatio 0.0}}off{{else}}{{.BudgetRatio}}{{end}}</td><td class="n">{{.BudgetMinRetriesPerSec}}</td><td class="n">{{$.Secs .BudgetWindow}}</td><td class="n">{{$.Secs .HedgeDelay}}</td><td class="n">{{if .HedgeQuantile}}{{.HedgeQuantile}}{{end}}</td><td class="n">{{.MaxHedges}}</td></tr>
{{- end}}
</table>
{{- with .CircuitBreaker}}
<p>Circuit breakers {{if .Enabled}}on: open after <b>{{.FailMax}}</b> consecutive failures, for <b>{{$.Secs .ResetTimeout}}</b>{{else}}off{{end}}.</p>
{{- if .Circuits}}
<table><tr><th>circuit</th><th>fail max</th><th>reset timeout</th></tr>
{{- range $k, $c := .Circuits}}<tr><td><code>{{$k}}</code></td><td class="n">{{$c.FailMax}}</td><td class="n">{{$.Secs $c.ResetTimeout}}</td></tr>{{end}}
</table>
{{- end}}
{{- end}}
{{- end}}
</body></html>
{{define "list"}}{{$v := .V}}{{with .L}}
{{- if .Entries}}
<table><tr><th>{{$.What}}</th><th>circuit</th><th>since</th><th>failures</th><th>policy</th><th>budget: firsts / retries / left</th><th>hedge delay</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>last used</th></tr>
{{- range .Entries}}{{$e := .}}{{$cls := "none"}}{{with .Circuit}}{{$cls = .State}}{{end}}
<tr class="{{$cls}}"><td><code>{{.Key}}</code></td>
{{- with .Circuit}}<td><span class="st {{.State}}">{{.State}}</span>{{if .ProbeDue}} <small>probe due</small>{{end}}</td><td class="nw" title="{{.Since.Format "2006-01-02T15:04:05.000Z07:00"}}">{{$v.Ago .Since}}</td><td class="n">{{.ConsecutiveFailures}} / {{.FailMax}}</td>
{{- else}}<td><span class="st none">no circuit</span></td><td></td><td></td>{{end}}
<td>{{range .Policies}}<div class="lane"><code>{{.Policy}}</code></div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Budget}}{{.FirstAttempts}} / {{.Retries}} / <b{{if not .RetriesLeft}} class="bad"{{end}}>{{.RetriesLeft}}</b> <small>in {{$v.Secs .Window}}</small>{{else}}—{{end}}</div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Hedge}}{{$v.Secs .Delay}}{{if .Quantile}} <small>p{{.Quantile}}</small>{{end}}{{else}}—{{end}}</div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Hedge}}{{$v.SecsP .P50}}{{else}}—{{end}}</div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Hedge}}{{$v.SecsP .P90}}{{else}}—{{end}}</div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Hedge}}{{$v.SecsP .P95}}{{else}}—{{end}}</div>{{end}}</td>
<td>{{range .Policies}}<div class="lane">{{with .Hedge}}{{$v.SecsP .P99}}{{else}}—{{end}}</div>{{end}}</td>
<td class="nw">{{$v.Ago .LastUsed}}</td></tr>
{{- end}}
</table>
{{- else}}<p class="note">No {{$.What}} state kept.</p>{{end}}
{{- with $v.Left .}}<p class="note">{{.}}</p>{{end}}
{{- end}}{{end}}`))
