package rtx

import (
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// maxUpstreams bounds the per-upstream state of one Transport or Retrier.
// Past it the least recently used entries go, after the ones that hold
// nothing a fresh entry would not (see [upstream.idle]).
const maxUpstreams = 1 << 17

// tableShards spreads a table over independently locked maps, so that
// lookups of different upstreams do not contend and an eviction scan
// touches one shard only.
const tableShards = 64

// table is a bounded map from upstream key to its state. Lookups take a
// shard's read lock; inserts past the bound evict within the shard.
// The zero value is not usable: see newTable.
type table struct {
	seed   maphash.Seed
	max    int // entries per shard
	shards [tableShards]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[string]*upstream
}

func newTable(limit int) *table {
	t := &table{seed: maphash.MakeSeed(), max: max(limit/tableShards, 1)}
	for i := range t.shards {
		t.shards[i].m = map[string]*upstream{}
	}
	return t
}

// get returns the state of the upstream named by key, creating it if
// needed. key may be a view of a scratch buffer: it is copied before it is
// stored.
func (t *table) get(key []byte, now int64) *upstream {
	s := &t.shards[maphash.Bytes(t.seed, key)%tableShards]
	s.mu.RLock()
	u := s.m[string(key)] // no allocation: the compiler looks up without converting
	s.mu.RUnlock()
	if u == nil {
		u = t.insert(s, string(key), now)
	}
	u.touch(now)
	return u
}

func (t *table) insert(s *shard, key string, now int64) *upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.m[key]; u != nil {
		return u
	}
	if len(s.m) >= t.max {
		s.evict(now, t.max)
	}
	u := &upstream{key: key}
	u.used.Store(now)
	s.m[key] = u
	return u
}

// evict makes room in a full shard: first every entry that holds nothing a
// fresh one would not, then, if that freed less than an eighth, the least
// recently used eighth. Evicting a batch keeps the amortized cost of an
// insert constant. Must be called with s.mu held.
func (s *shard) evict(now int64, limit int) {
	for k, u := range s.m {
		if u.idle(now) {
			delete(s.m, k)
		}
	}
	target := limit - limit/8
	if len(s.m) <= target {
		return
	}
	used := make([]int64, 0, len(s.m))
	for _, u := range s.m {
		used = append(used, u.used.Load())
	}
	slices.Sort(used)
	cut := used[len(used)-target-1]
	for k, u := range s.m {
		if len(s.m) <= target {
			break
		}
		if u.used.Load() <= cut {
			delete(s.m, k)
		}
	}
}

// len returns the number of entries (for tests and the debug page).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// each calls fn for every entry, one shard at a time, outside the locks.
func (t *table) each(fn func(*upstream)) {
	var batch []*upstream
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		for _, u := range s.m {
			batch = append(batch, u)
		}
		s.mu.RUnlock()
		for _, u := range batch {
			fn(u)
		}
	}
}

// upstream is the state kept for one upstream (a host:port, or a Retrier's
// operation name): its circuit and, per policy, its budget.
type upstream struct {
	key     string
	used    atomic.Int64 // unix nanoseconds of the last use, coarse
	circuit atomic.Pointer[circuit]
	lanes   atomic.Pointer[[]*lane] // copy-on-write: read without locks
	mu      sync.Mutex              // serializes writers of circuit and lanes
}

// touchGrain is how stale a last-use time may get before it is written
// again: concurrent requests to one upstream then rarely write the line.
const touchGrain = int64(50 * time.Millisecond)

func (u *upstream) touch(now int64) {
	if now-u.used.Load() > touchGrain {
		u.used.Store(now)
	}
}

// lane returns the upstream's state under a policy, made anew when the
// policy's budget window changed.
func (u *upstream) lane(p *policy.Policy) *lane {
	if ls := u.lanes.Load(); ls != nil {
		for _, l := range *ls {
			if l.policy == p.Name && l.budget.window == p.BudgetWindow {
				return l
			}
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	var next []*lane
	if ls := u.lanes.Load(); ls != nil {
		for _, l := range *ls {
			if l.policy == p.Name {
				if l.budget.window == p.BudgetWindow {
					return l
				}
				continue // the window changed: start afresh
			}
			next = append(next, l)
		}
	}
	l := &lane{policy: p.Name}
	l.budget.init(p.BudgetWindow)
	next = append(next, l)
	u.lanes.Store(&next)
	return l
}

// idle reports whether the entry holds nothing that a fresh one would not:
// no circuit, or a closed one with no failure counted, or an open one past
// its reset timeout; and budgets whose windows hold nothing.
func (u *upstream) idle(now int64) bool {
	if c := u.circuit.Load(); c != nil && !c.idle(now) {
		return false
	}
	if ls := u.lanes.Load(); ls != nil {
		for _, l := range *ls {
			if !l.budget.empty(now) {
				return false
			}
			if s := l.latency.Load(); s != nil && !s.idle(now) {
				return false
			}
		}
	}
	return true
}

// lane is an upstream's state under one policy.
type lane struct {
	policy  string
	budget  budget
	latency atomic.Pointer[latency] // made at the first hedged attempt under a quantile
}

// sketch returns the lane's latency sketch for quantile q, made anew when
// q changed.
func (l *lane) sketch(q float64) *latency {
	if s := l.latency.Load(); s != nil && s.quantile == q {
		return s
	}
	old := l.latency.Load()
	if s := newLatency(q); l.latency.CompareAndSwap(old, s) {
		return s
	}
	return l.latency.Load()
}

// keyBuf is scratch space for an upstream key built without allocating.
type keyBuf [96]byte

// eachCircuit calls fn for every circuit the engine keeps.
func (e *engine) eachCircuit(fn func(*circuit)) {
	visit := func(u *upstream) {
		if c := u.circuit.Load(); c != nil {
			fn(c)
		}
	}
	e.ups.each(visit)
	if e.named != nil {
		e.named.each(visit)
	}
}
