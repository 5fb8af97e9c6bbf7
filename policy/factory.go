package policy

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Mode values for deployment_mode.
const (
	// Standalone is the default mode: policies apply as written.
	Standalone = "standalone"
	// Mesh means a service mesh retries for us: every policy is one attempt
	// and circuits pass everything through.
	Mesh = "mesh"
)

// Snapshot is one validated settings document: the default policy, the
// named policies, the circuit breaker settings and the class tree. It is
// immutable and safe for concurrent use; the only ways to get one are
// [Factory.Snapshot], [Factory.Parse] and [Builtin], which validate in full.
type Snapshot struct {
	source   string
	layout   Layout
	mode     string
	enabled  bool
	def      *Policy            // as written
	policies map[string]*Policy // as written
	eff      map[string]*Policy // what requests get: "" included, Attempts 1 in MESH or disabled
	breaker  Breaker
	classes  *Classes
}

// Builtin returns a snapshot with only the built-in default policy, no
// circuits and the built-in classes.
func Builtin() *Snapshot {
	s := &Snapshot{source: "built-in defaults", mode: Standalone, enabled: true, def: Default(), policies: map[string]*Policy{}, classes: builtinClasses()}
	s.finish()
	return s
}

// finish computes the effective policies.
func (s *Snapshot) finish() {
	s.eff = make(map[string]*Policy, len(s.policies)+1)
	single := s.mode == Mesh || !s.enabled
	add := func(name string, p *Policy) {
		if single {
			p = p.single()
		}
		s.eff[name] = p
	}
	add("", s.def)
	for name, p := range s.policies {
		add(name, p)
	}
}

// Policy returns the policy requests get under name: "" (or "default") is
// the default policy. In MESH mode or with retries disabled every policy is
// returned with Attempts = 1. An unknown name is an error wrapping
// [ErrUnknownPolicy] that lists the first few known names; when the
// document had no resilience table at all, it says so and lists the tables
// it had.
func (s *Snapshot) Policy(name string) (*Policy, error) {
	if p, ok := s.eff[name]; ok {
		return p, nil
	}
	if name == "default" {
		return s.eff[""], nil
	}
	// Settings keys are lowercased when read: FastRetry is fastretry.
	if p, ok := s.eff[strings.ToLower(name)]; ok {
		return p, nil
	}
	if s.layout.read && !s.layout.Resilience {
		return nil, fmt.Errorf("rtx/policy: %w %q: %s has no [default.resilience] or [resilience] table (top-level tables: %s)",
			ErrUnknownPolicy, name, s.source, listShort(s.layout.Tables, maxListed))
	}
	return nil, fmt.Errorf("rtx/policy: %w %q (known: %s)", ErrUnknownPolicy, name, listShort(s.Names(), maxListed))
}

// ErrUnknownPolicy is wrapped by the error for a policy name that the
// settings do not define.
var ErrUnknownPolicy = errors.New("unknown retry policy")

// maxListed is how many names an error lists before "and N more".
const maxListed = 10

// listShort joins the first n names, and says how many more there are:
// "a, b, c and 9997 more". An empty list reads "none".
func listShort(names []string, n int) string {
	switch {
	case len(names) == 0:
		return "none"
	case len(names) <= n:
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// Layout says how a snapshot was read from its settings document, for a
// tool that checks a file (rtx check) or a debug page. The zero value
// describes a snapshot that was not read from a document ([Builtin]). A
// Layout returned by [Snapshot.Layout] shares its slices with the snapshot:
// it is safe for concurrent reads and must not be modified.
type Layout struct {
	// Tables lists the document's top-level tables, sorted.
	Tables []string
	// Layers lists what was merged, in order: "[default]" or "top level"
	// (a document whose tables start at [resilience]), then the
	// environment's table ("[production]"), then "environment variables"
	// when RTX_ variables set keys. Empty when the document has neither
	// layer (only built-in values apply).
	Layers []string
	// Env is the environment merged over the default layer; "" for none.
	Env string
	// EnvVars lists the RTX_ variables that set keys, sorted.
	EnvVars []string
	// Resilience reports whether the layers held a resilience table. When
	// false, asking for a policy by name is an error that lists Tables.
	Resilience bool

	read bool // the snapshot came from a document
}

// Layout returns how the snapshot was read from its document. The caller
// must not modify its slices.
func (s *Snapshot) Layout() Layout { return s.layout }

// Names returns the named policies, sorted, "default" first.
func (s *Snapshot) Names() []string {
	names := slices.Sorted(maps.Keys(s.policies))
	return append([]string{"default"}, names...)
}

// Source names where the snapshot came from (a file path, a key).
func (s *Snapshot) Source() string { return s.source }

// Mode returns the deployment mode: [Standalone] or [Mesh].
func (s *Snapshot) Mode() string { return s.mode }

// Enabled reports the retry table's enabled flag (false: one attempt each).
func (s *Snapshot) Enabled() bool { return s.enabled }

// Breaker returns the circuit breaker settings. Its Enabled field is false
// when the table is absent, disabled, or the mode is [Mesh].
func (s *Snapshot) Breaker() Breaker { return s.breaker }

// Classes returns the class tree the snapshot was validated against.
func (s *Snapshot) Classes() *Classes { return s.classes }

// Changed returns the names of the policies whose effective values differ
// between old and s ("default" for the default policy), including policies
// added or removed, and "circuit_breaker" when the circuit breaker settings
// differ; sorted. A change of deployment_mode or enabled shows as the
// policies it changes. A nil old counts as [Builtin].
func (s *Snapshot) Changed(old *Snapshot) []string {
	if old == nil {
		old = Builtin()
	}
	var out []string
	for name, p := range s.eff {
		if q, ok := old.eff[name]; !ok || !p.equal(q) {
			out = append(out, displayName(name))
		}
	}
	for name := range old.eff {
		if _, ok := s.eff[name]; !ok {
			out = append(out, displayName(name))
		}
	}
	if !s.breaker.equal(old.breaker) {
		out = append(out, "circuit_breaker")
	}
	slices.Sort(out)
	return out
}

func (b Breaker) equal(o Breaker) bool {
	return b.Enabled == o.Enabled && b.FailMax == o.FailMax && b.ResetTimeout == o.ResetTimeout && maps.Equal(b.Circuits, o.Circuits)
}

func displayName(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

func (p *Policy) equal(q *Policy) bool {
	return p.Attempts == q.Attempts && p.WaitMin == q.WaitMin && p.WaitMax == q.WaitMax &&
		p.Backoff == q.Backoff && p.Jitter == q.Jitter && p.Timeout == q.Timeout &&
		slices.Equal(p.Exceptions, q.Exceptions) && p.RetryNonIdempotent == q.RetryNonIdempotent &&
		p.IdempotencyKey == q.IdempotencyKey && p.BudgetRatio == q.BudgetRatio &&
		p.BudgetMinRetriesPerSec == q.BudgetMinRetriesPerSec && p.BudgetWindow == q.BudgetWindow &&
		p.HedgeDelay == q.HedgeDelay && p.HedgeQuantile == q.HedgeQuantile && p.MaxHedges == q.MaxHedges
}

// Breaker is the [resilience.circuit_breaker] table.
type Breaker struct {
	// Enabled is false when the table is absent, says enabled = false, or
	// the deployment mode is MESH: circuits then pass everything through.
	Enabled bool
	// FailMax is default_fail_max: consecutive classified failures that open a circuit.
	FailMax uint32
	// ResetTimeout is default_reset_timeout_sec: how long a circuit stays open.
	ResetTimeout time.Duration
	// Circuits holds per-circuit overrides by circuit name (a host:port by default).
	Circuits map[string]Circuit
}

// Circuit is the setting of one circuit.
type Circuit struct {
	FailMax      uint32        // consecutive classified failures that open it
	ResetTimeout time.Duration // how long it stays open before a probe
}

// Circuit returns the setting for the circuit called name: its own entry
// if there is one (names compare case-insensitively, as settings keys are
// lowercased), else for a host:port name the entry of its host (an entry
// named "api.example.com" covers every port of that host), else the
// defaults.
func (b Breaker) Circuit(name string) Circuit {
	if len(b.Circuits) > 0 {
		if c, ok := b.Circuits[name]; ok {
			return c
		}
		name = strings.ToLower(name)
		if c, ok := b.Circuits[name]; ok {
			return c
		}
		if host, _, err := net.SplitHostPort(name); err == nil {
			if c, ok := b.Circuits[host]; ok {
				return c
			}
		}
	}
	return Circuit{FailMax: b.FailMax, ResetTimeout: b.ResetTimeout}
}

// Factory serves named policies from the snapshot in force. Requests read
// the snapshot once ([Factory.Snapshot]) and keep it to the end; updates swap
// it atomically.
//
// The zero value serves [Builtin] until the first update. A Factory is safe
// for concurrent use and must not be copied after first use.
type Factory struct {
	// state holds the snapshot in force and its status together, so that
	// Status always describes the snapshot that Snapshot returns. Readers
	// load it once, without locks; writers replace it by compare-and-swap.
	state atomic.Pointer[state]
	load  loadConfig // how Parse decodes documents; fixed at LoadFile
}

type state struct {
	snap   *Snapshot
	status Status
}

// Status describes the snapshot a [Factory] serves and the last update it
// turned down, for an operator's debug page. It is a value: later changes
// to the factory do not show in a Status already returned, and it may be
// read from any goroutine. The zero value describes a factory that has
// served nothing yet.
type Status struct {
	// Version counts the snapshots put in force: 1 for the one LoadFile or
	// NewFactory starts with, plus one for every successful Update, Apply
	// or Swap. It is 0 while a zero Factory serves [Builtin].
	Version uint64
	// Source names where the snapshot in force came from (a file path, an
	// etcd or Consul key, "built-in defaults").
	Source string
	// Applied is when the snapshot in force was put in force; zero while
	// a zero Factory serves [Builtin].
	Applied time.Time
	// Rejected is the last update turned down, or nil when none was. An
	// update applied later does not clear it.
	Rejected *Rejection
}

// Rejection is an update that a [Factory] turned down; the snapshot in
// force stayed. It is immutable once a Status holds it.
type Rejection struct {
	Source string    // the document's name
	Err    string    // why it was rejected: the parse, limit or validation error
	At     time.Time // when
}

// NewFactory returns a factory serving s (nil: [Builtin]), at version 1.
// Documents given to [Factory.Update] later are validated against s's
// classes.
func NewFactory(s *Snapshot) *Factory {
	f := &Factory{}
	if s == nil {
		s = Builtin()
	}
	f.state.Store(&state{snap: s, status: Status{Version: 1, Source: s.source, Applied: time.Now()}})
	f.load.classes = s.classes.User()
	return f
}

// current returns the factory's state, storing the zero factory's first
// one ([Builtin], version 0) on first use.
func (f *Factory) current() *state {
	if st := f.state.Load(); st != nil {
		return st
	}
	b := Builtin()
	f.state.CompareAndSwap(nil, &state{snap: b, status: Status{Source: b.source}})
	return f.state.Load()
}

// Snapshot returns the snapshot in force. A nil factory serves a new
// [Builtin] on each call; a zero one stores [Builtin] on first use.
func (f *Factory) Snapshot() *Snapshot {
	if f == nil {
		return Builtin()
	}
	if st := f.state.Load(); st != nil {
		return st.snap
	}
	return f.current().snap
}

// Status returns the version, source and time of the snapshot in force and
// the last rejected update. It takes no lock. A nil factory reports a
// zero-version [Builtin].
func (f *Factory) Status() Status {
	if f == nil {
		return Status{Source: Builtin().source}
	}
	return f.current().status
}

// Policy returns the named policy of the snapshot in force; see
// [Snapshot.Policy].
func (f *Factory) Policy(name string) (*Policy, error) {
	return f.Snapshot().Policy(name)
}

// Swap makes s the snapshot in force, counts a new version in [Status],
// and returns the snapshot it replaced. A nil s is ignored and returns the
// current snapshot.
func (f *Factory) Swap(s *Snapshot) (old *Snapshot) {
	if s == nil {
		return f.Snapshot()
	}
	now := time.Now()
	for {
		cur := f.current()
		next := &state{snap: s, status: Status{Version: cur.status.Version + 1, Source: s.source, Applied: now, Rejected: cur.status.Rejected}}
		if f.state.CompareAndSwap(cur, next) {
			return cur.snap
		}
	}
}

// Reject records err as the last rejected update from source, for
// [Factory.Status]; the snapshot in force stays. [Factory.Update] and
// [Factory.Apply] record their own rejections; Reject is for a caller that
// turns a document down before it reaches the factory. A nil err is
// ignored.
func (f *Factory) Reject(source string, err error) {
	if err == nil {
		return
	}
	r := &Rejection{Source: source, Err: err.Error(), At: time.Now()}
	for {
		cur := f.current()
		next := &state{snap: cur.snap, status: cur.status}
		next.status.Rejected = r
		if f.state.CompareAndSwap(cur, next) {
			return
		}
	}
}

// Update decodes a settings document with the options the factory was
// loaded with (environment, classes), validates it in full and only then
// swaps it in. format is "toml", "yaml" or "json"; source names the document
// in errors. On error the snapshot in force is left as it is and the error
// is recorded in [Factory.Status]. Update returns the names of the policies
// it changed.
func (f *Factory) Update(data []byte, format, source string) (changed []string, err error) {
	s, old, err := f.Apply(data, format, source)
	if err != nil {
		return nil, err
	}
	return s.Changed(old), nil
}

// Apply is [Factory.Update] for a caller that needs the snapshots: it
// decodes, validates and swaps in the document, and returns the snapshot
// now in force and the one it replaced. Every outcome shows in
// [Factory.Status]: a new version, or the rejection (a document over the
// limits, one that does not parse, one that does not validate).
func (f *Factory) Apply(data []byte, format, source string) (now, old *Snapshot, err error) {
	s, err := f.Parse(data, format, source)
	if err != nil {
		if source == "" {
			source = "settings"
		}
		f.Reject(source, err)
		return nil, nil, err
	}
	return s, f.Swap(s), nil
}
