package policy

import (
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
// returned with Attempts = 1. An unknown name is an error that lists the
// known ones.
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
	return nil, fmt.Errorf("rtx/policy: unknown retry policy %q (known: %s)", name, strings.Join(s.Names(), ", "))
}

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
		p.BudgetMinRetriesPerSec == q.BudgetMinRetriesPerSec && p.BudgetWindow == q.BudgetWindow
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
	snap atomic.Pointer[Snapshot]
	load loadConfig // how Parse decodes documents; fixed at LoadFile
}

// NewFactory returns a factory serving s (nil: [Builtin]). Documents
// given to [Factory.Update] later are validated against s's classes.
func NewFactory(s *Snapshot) *Factory {
	f := &Factory{}
	if s == nil {
		s = Builtin()
	}
	f.snap.Store(s)
	f.load.classes = s.classes.User()
	return f
}

// Snapshot returns the snapshot in force. A nil factory serves a new
// [Builtin] on each call; a zero one stores [Builtin] on first use.
func (f *Factory) Snapshot() *Snapshot {
	if f == nil {
		return Builtin()
	}
	if s := f.snap.Load(); s != nil {
		return s
	}
	f.snap.CompareAndSwap(nil, Builtin())
	return f.snap.Load()
}

// Policy returns the named policy of the snapshot in force; see
// [Snapshot.Policy].
func (f *Factory) Policy(name string) (*Policy, error) {
	return f.Snapshot().Policy(name)
}

// Swap makes s the snapshot in force and returns the one it replaced. A nil
// s is ignored and returns the current snapshot.
func (f *Factory) Swap(s *Snapshot) (old *Snapshot) {
	if s == nil {
		return f.Snapshot()
	}
	old = f.snap.Swap(s)
	if old == nil {
		old = Builtin()
	}
	return old
}

// Update decodes a settings document with the options the factory was
// loaded with (environment, classes), validates it in full and only then
// swaps it in. format is "toml", "yaml" or "json"; source names the document
// in errors. On error the snapshot in force is left as it is. Update returns
// the names of the policies it changed.
func (f *Factory) Update(data []byte, format, source string) (changed []string, err error) {
	s, err := f.Parse(data, format, source)
	if err != nil {
		return nil, err
	}
	old := f.Swap(s)
	return s.Changed(old), nil
}
