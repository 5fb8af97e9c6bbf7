package rtx

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/athomic-go/rtx/breaker"
	"github.com/athomic-go/rtx/policy"
)

// circuit is one circuit breaker: a gobreaker breaker tuned by the setting
// it was made for, and the state changes it owes to OnStateChange.
type circuit struct {
	cb      *gobreaker.CircuitBreaker[struct{}]
	name    string
	setting policy.Circuit

	state    atomic.Int32  // the last state gobreaker reported
	changed  atomic.Int64  // engine time (see engine.clock) of the last change, or of creation before one
	failures atomic.Uint32 // gobreaker's count of consecutive failures, mirrored under its lock (see newCircuit)
	gen      atomic.Uint32 // state changes so far: gobreaker starts a generation at each

	mu      sync.Mutex
	pending []breaker.StateChange // recorded under gobreaker's lock, reported after it
	queued  atomic.Bool           // pending is not empty
	deliver sync.Mutex            // held by the one goroutine reporting changes
}

var (
	errFailure  = errors.New("classified failure")
	errExcluded = errors.New("excluded outcome")
)

// newCircuit makes a circuit on the clock of the engine whose epoch is
// given (see engine.clock).
func newCircuit(name string, setting policy.Circuit, epoch time.Time) *circuit {
	c := &circuit{name: name, setting: setting}
	c.changed.Store(int64(time.Since(epoch)))
	c.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     setting.ResetTimeout,
		// gobreaker calls these three under its lock, for an outcome it
		// counts (of the generation in force): the lock-free mirrors of its
		// count and state change with it, never from a stale outcome.
		ReadyToTrip: func(n gobreaker.Counts) bool {
			c.failures.Store(n.ConsecutiveFailures)
			return n.ConsecutiveFailures >= setting.FailMax
		},
		IsSuccessful: func(err error) bool {
			if err == nil {
				c.failures.Store(0)
			}
			return err == nil
		},
		IsExcluded: func(err error) bool { return err == errExcluded },
		OnStateChange: func(name string, from, to gobreaker.State) {
			c.gen.Add(1) // before the state: a reader that sees the new state sees the new generation
			c.state.Store(int32(to))
			c.failures.Store(0) // a new generation counts from zero
			c.changed.Store(int64(time.Since(epoch)))
			c.mu.Lock()
			c.pending = append(c.pending, breaker.StateChange{Circuit: name, From: from, To: to})
			c.queued.Store(true)
			c.mu.Unlock()
		},
	})
	return c
}

// circuitFor returns the entry's circuit under setting, made anew when the
// setting changed (a circuit whose setting did not change keeps its state).
// A call on a snapshot that is no longer in force (stale) never replaces a
// circuit: during an update, old and new calls would reset it in turn.
func (u *upstream) circuitFor(setting policy.Circuit, stale bool, epoch time.Time) *circuit {
	if c := u.circuit.Load(); c != nil && (c.setting == setting || stale) {
		return c
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if c := u.circuit.Load(); c != nil && (c.setting == setting || stale) {
		return c
	}
	c := newCircuit(u.key, setting, epoch)
	u.circuit.Store(c)
	return c
}

// idle reports whether the circuit behaves as a fresh one would: closed
// with no failure counted, or open past its reset timeout (its next use
// lets a probe through, as a fresh circuit lets everything through).
func (c *circuit) idle(now int64) bool {
	switch gobreaker.State(c.state.Load()) {
	case gobreaker.StateClosed:
		// The mirror may lag gobreaker's count for a moment: eviction,
		// which is rare, asks gobreaker too.
		return c.failures.Load() == 0 && c.cb.Counts().ConsecutiveFailures == 0
	case gobreaker.StateOpen:
		return now-c.changed.Load() > int64(c.setting.ResetTimeout)
	}
	return false
}

// clean reports whether the circuit is closed with no failure counted, and
// its generation: an attempt then goes through whatever it comes to, and
// gobreaker needs to hear of it only if it fails, or if it succeeds after
// another's failure (see report).
func (c *circuit) clean() (gen uint32, ok bool) {
	gen = c.gen.Load()
	return gen, c.state.Load() == int32(gobreaker.StateClosed) && c.failures.Load() == 0
}

// report hands gobreaker the outcome of an attempt made without it, while
// the circuit was clean in generation gen (see clean): a failure, or a
// success once failures were counted meanwhile (it resets the count). As
// gobreaker does, an outcome of an older generation is dropped. A success
// of a circuit still clean changes nothing in gobreaker but counters rtx
// never reads.
func (c *circuit) report(gen uint32, outcome error, onChange func(breaker.StateChange)) {
	switch {
	case outcome == errFailure, outcome == nil && c.failures.Load() > 0:
	default:
		return
	}
	if c.gen.Load() != gen {
		return
	}
	c.cb.Execute(func() (struct{}, error) { return struct{}{}, outcome })
	c.flush(onChange)
}

// peek returns the circuit's state now, reporting the change that reading
// it may cause (open turning half-open).
func (c *circuit) peek(onChange func(breaker.StateChange)) gobreaker.State {
	st := c.cb.State()
	c.flush(onChange)
	return st
}

// flush reports the state changes recorded so far, in order and one at a
// time per circuit. A goroutine that finds another reporting leaves its
// changes to that one, which looks again before it stops; so a callback
// that calls back into the transport does not deadlock.
func (c *circuit) flush(onChange func(breaker.StateChange)) {
	for {
		if !c.queued.Load() || !c.deliver.TryLock() {
			return
		}
		c.mu.Lock()
		pending := c.pending
		c.pending = nil
		c.queued.Store(false)
		c.mu.Unlock()
		if onChange != nil {
			for _, ch := range pending {
				onChange(ch)
			}
		}
		c.deliver.Unlock()
	}
}
