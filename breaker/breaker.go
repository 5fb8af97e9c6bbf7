// Package breaker keeps rtx's circuit breakers: one
// [gobreaker.TwoStepCircuitBreaker] per circuit, by default one circuit per
// upstream host:port, tuned by the [policy.Breaker] settings of the
// snapshot in force.
//
// A circuit opens after fail_max consecutive classified failures, turns
// half-open after reset_timeout_sec, lets one probe through and closes when
// the probe succeeds. When the settings of a circuit change, that circuit
// starts afresh with the new values; circuits whose values did not change
// keep their state.
package breaker

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/policy"
)

// Target is what a circuit key is computed from.
type Target struct {
	Request   *http.Request // the attempt's request; nil for rtx.Do
	Policy    string        // the policy's name ("default" for the default)
	Operation string        // rtx.WithOperationName
}

// ByHost keys circuits by the request's host:port (the port from the
// scheme when the URL has none); without a request, by operation.
func ByHost(t Target) string {
	if t.Request == nil || t.Request.URL == nil {
		return t.Operation
	}
	u := t.Request.URL
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(host, port)
}

// ByPolicy keys circuits by policy name.
func ByPolicy(t Target) string { return t.Policy }

// ByOperation keys circuits by operation name (rtx.WithOperationName).
func ByOperation(t Target) string { return t.Operation }

// StateChange reports a circuit moving from one state to another.
type StateChange struct {
	Circuit  string          // the circuit's name
	From, To gobreaker.State // the states before and after
}

// Option configures a [Set].
type Option func(*Set)

// WithKey sets how attempts map to circuits; the default is [ByHost]. The
// function must be safe for concurrent use.
func WithKey(key func(Target) string) Option {
	return func(s *Set) {
		if key != nil {
			s.key = key
		}
	}
}

// OnStateChange sets a function told of every state change. Unlike
// gobreaker's own callback it runs outside the breaker's lock, so it may
// call back into the Set. Changes of one circuit are reported in order and
// one at a time, usually on the goroutine whose attempt caused them, or
// else on the next goroutine to use that circuit; changes of different
// circuits may be reported concurrently.
func OnStateChange(fn func(StateChange)) Option {
	return func(s *Set) { s.onChange = fn }
}

// Set holds the circuits of one rtx.Transport (or of several that share it).
// The zero value is not usable; create one with [New]. A Set is safe for
// concurrent use.
type Set struct {
	key      func(Target) string
	onChange func(StateChange)

	mu       sync.Mutex
	circuits map[string]*circuit
}

// New returns an empty set of circuits.
func New(opts ...Option) *Set {
	s := &Set{key: ByHost, circuits: map[string]*circuit{}}
	for _, o := range opts {
		if o != nil {
			o(s)
		}
	}
	return s
}

// Key returns the circuit name for t.
func (s *Set) Key(t Target) string { return s.key(t) }

type circuit struct {
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}]
	setting policy.Circuit

	mu      sync.Mutex
	pending []StateChange // recorded under gobreaker's lock, reported after it
	deliver sync.Mutex    // held by the one goroutine reporting changes
}

var (
	errFailure  = errors.New("classified failure")
	errExcluded = errors.New("excluded outcome")
)

// get returns the circuit called name, made anew when its settings changed.
func (s *Set) get(name string, b policy.Breaker) *circuit {
	want := b.Circuit(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.circuits[name]
	if c != nil && c.setting == want {
		return c
	}
	if c == nil && len(s.circuits) >= maxCircuits {
		s.evictClosed()
	}
	c = &circuit{setting: want}
	c.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     want.ResetTimeout,
		ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= want.FailMax },
		IsExcluded:  func(err error) bool { return err == errExcluded },
		OnStateChange: func(name string, from, to gobreaker.State) {
			c.mu.Lock()
			c.pending = append(c.pending, StateChange{Circuit: name, From: from, To: to})
			c.mu.Unlock()
		},
	})
	s.circuits[name] = c
	return c
}

// maxCircuits bounds a set: past it, closed circuits are forgotten (a closed
// circuit's only state is its count of recent failures).
const maxCircuits = 4096

// evictClosed drops the closed circuits. Must be called with s.mu held.
func (s *Set) evictClosed() {
	for name, c := range s.circuits {
		if c.cb.State() == gobreaker.StateClosed {
			delete(s.circuits, name)
		}
	}
}

// flush reports the state changes recorded so far, in order and one at a
// time per circuit. A goroutine that finds another reporting leaves its
// changes to that one, which looks again before it stops; so a callback
// that calls back into the set does not deadlock.
func (s *Set) flush(c *circuit) {
	for {
		if !c.deliver.TryLock() {
			return
		}
		c.mu.Lock()
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		if s.onChange != nil {
			for _, ch := range pending {
				s.onChange(ch)
			}
		}
		c.deliver.Unlock()
		c.mu.Lock()
		more := len(c.pending) > 0
		c.mu.Unlock()
		if !more {
			return
		}
	}
}

// Outcome is what an attempt reports to its circuit.
type Outcome int

const (
	// Success: any answer that is not a classified failure.
	Success Outcome = iota
	// Failure: a classified failure (any class under HTTPException).
	Failure
	// Excluded: the caller's own cancellation; it counts neither way.
	Excluded
)

// Allow asks the circuit called name, under the settings b, whether an
// attempt may proceed. On success it returns the function that reports the
// attempt's outcome, to be called exactly once. Otherwise the error is
// gobreaker.ErrOpenState (open) or gobreaker.ErrTooManyRequests (half-open,
// probe already in flight).
func (s *Set) Allow(name string, b policy.Breaker) (report func(Outcome), err error) {
	c := s.get(name, b)
	done, err := c.cb.Allow()
	s.flush(c)
	if err != nil {
		return nil, err
	}
	return func(o Outcome) {
		switch o {
		case Success:
			done(nil)
		case Failure:
			done(errFailure)
		default:
			done(errExcluded)
		}
		s.flush(c)
	}, nil
}

// State returns the state of the circuit called name under the settings b
// (a circuit never used is closed).
func (s *Set) State(name string, b policy.Breaker) gobreaker.State {
	c := s.get(name, b)
	st := c.cb.State()
	s.flush(c)
	return st
}

// Circuits returns the names of the circuits in use and their states.
func (s *Set) Circuits() map[string]gobreaker.State {
	s.mu.Lock()
	cs := make(map[string]*circuit, len(s.circuits))
	for k, v := range s.circuits {
		cs[k] = v
	}
	s.mu.Unlock()
	out := make(map[string]gobreaker.State, len(cs))
	for k, c := range cs {
		out[k] = c.cb.State()
		s.flush(c)
	}
	return out
}
