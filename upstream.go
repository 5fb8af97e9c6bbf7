package rtx

import (
	"cmp"
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
//
// A lookup touches few cache lines, so that its cost stays flat with
// hundreds of thousands of upstreams: maps are keyed by the key's hash, and
// the entry, which holds its key's bytes and its first lane inline, says
// whether the key is its own.
//
// The zero value is not usable: see newTable.
type table struct {
	seed   maphash.Seed
	max    int // entries per shard
	shards [tableShards]shard
}

type shard struct {
	mu       sync.RWMutex
	m        map[uint64]*upstream
	collided map[string]*upstream // keys whose hash an entry of m already has
}

func newTable(limit int) *table {
	// A shard's map is made at its first insert: a one-shot rtx.Do uses
	// one shard, and a nil map reads as empty.
	return &table{seed: maphash.MakeSeed(), max: max(limit/tableShards, 1)}
}

// get returns the state of the upstream named by key, creating it if
// needed. key may be a view of a scratch buffer: it is copied before it is
// stored.
func (t *table) get(key []byte, now int64) *upstream { return t.lookup(key, now, false) }

// acquire is get for a user of the entry: it comes back pinned (see pin),
// pinned under the shard's lock, so that no eviction can come between.
func (t *table) acquire(key []byte, now int64) *upstream { return t.lookup(key, now, true) }

func (t *table) lookup(key []byte, now int64, pin bool) *upstream {
	h := maphash.Bytes(t.seed, key)
	s := &t.shards[h%tableShards]
	s.mu.RLock()
	u := s.m[h]
	if u != nil && !u.is(key) {
		u = s.collided[string(key)] // no allocation: the compiler looks up without converting
	}
	if u != nil && pin {
		u.pin()
	}
	s.mu.RUnlock()
	if u == nil {
		u = t.insert(s, h, key, now, pin)
	}
	u.touch(now)
	return u
}

func (t *table) insert(s *shard, h uint64, key []byte, now int64, pin bool) *upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.m[h]
	if u != nil && !u.is(key) {
		u = s.collided[string(key)]
	}
	if u != nil {
		if pin {
			u.pin()
		}
		return u
	}
	if s.len() >= t.max {
		s.evict(now, t.max)
	}
	u = newUpstream(string(key), h, now)
	if pin {
		u.pin()
	}
	if s.m == nil {
		s.m = map[uint64]*upstream{}
	}
	if other := s.m[h]; other == nil {
		s.m[h] = u
	} else {
		if s.collided == nil {
			s.collided = map[string]*upstream{}
		}
		s.collided[u.key] = u
	}
	return u
}

func (s *shard) len() int { return len(s.m) + len(s.collided) }

// remove deletes u from the shard. Must be called with s.mu held.
func (s *shard) remove(u *upstream) {
	if s.m[u.hash] != u {
		delete(s.collided, u.key)
		return
	}
	delete(s.m, u.hash)
	for k, o := range s.collided { // a key under the same hash takes the place
		if o.hash == u.hash {
			delete(s.collided, k)
			s.m[u.hash] = o
			return
		}
	}
}

// evict makes room in a full shard: first every entry that holds nothing a
// fresh one would not, then, if that freed less than an eighth, the least
// recently used eighth. Evicting a batch keeps the amortized cost of an
// insert constant. Must be called with s.mu held.
func (s *shard) evict(now int64, limit int) {
	all := make([]*upstream, 0, s.len())
	for _, u := range s.m {
		all = append(all, u)
	}
	for _, u := range s.collided {
		all = append(all, u)
	}
	kept := all[:0]
	for _, u := range all {
		switch {
		case u.idle(now):
			s.remove(u)
		case u.calls.Load() == 0: // in use: never evicted
			kept = append(kept, u)
		}
	}
	target := limit - limit/8
	if s.len() <= target {
		return
	}
	slices.SortFunc(kept, func(a, b *upstream) int { return cmp.Compare(a.used.Load(), b.used.Load()) })
	for _, u := range kept[:min(s.len()-target, len(kept))] {
		s.remove(u)
	}
}

// len returns the number of entries (for tests and the debug page).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		n += s.len()
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
		for _, u := range s.collided {
			batch = append(batch, u)
		}
		s.mu.RUnlock()
		for _, u := range batch {
			fn(u)
		}
	}
}

// shortKey is how many bytes of its key an entry holds inline.
const shortKey = 48

// upstream is the state kept for one upstream (a host:port, or a Retrier's
// operation name): its circuit and, per policy, its budget. What a
// first-try request reads sits together: the key's bytes, the last use,
// the circuit pointer and the first policy's lane.
type upstream struct {
	// The first cache line: what every request reads or writes.
	n     uint8        // len(key), or 0 when longer than shortKey
	calls atomic.Int32 // calls and attempts using the entry: it is not evicted meanwhile
	short [shortKey]byte
	used  atomic.Int64 // engine time (see engine.clock) of the last use, coarse

	circuit atomic.Pointer[circuit]
	ready   atomic.Bool             // first is set
	first   lane                    // the first policy's lane, inline
	more    atomic.Pointer[[]*lane] // other policies' (and replaced) lanes: copy-on-write
	mu      sync.Mutex              // serializes writers of circuit, first and more
	hash    uint64
	key     string
}

// pin keeps the entry from eviction until unpin: a call still using it
// must not see its state split from a new entry's for the same key.
func (u *upstream) pin()   { u.calls.Add(1) }
func (u *upstream) unpin() { u.calls.Add(-1) }

func newUpstream(key string, hash uint64, now int64) *upstream {
	u := &upstream{key: key, hash: hash}
	if len(key) <= shortKey {
		u.n = uint8(len(key))
		copy(u.short[:], key)
	}
	u.used.Store(now)
	return u
}

// is reports whether key is the entry's own.
func (u *upstream) is(key []byte) bool {
	if u.n != 0 {
		return int(u.n) == len(key) && string(u.short[:u.n]) == string(key)
	}
	return u.key == string(key)
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
	if u.ready.Load() && u.first.policy == p.Name && u.first.budget.window == p.BudgetWindow {
		return &u.first
	}
	if ls := u.more.Load(); ls != nil {
		for _, l := range *ls {
			if l.policy == p.Name && l.budget.window == p.BudgetWindow {
				return l
			}
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.ready.Load() {
		u.first.policy = p.Name
		u.first.budget.init(p.BudgetWindow)
		u.ready.Store(true)
		return &u.first
	}
	if u.first.policy == p.Name && u.first.budget.window == p.BudgetWindow {
		return &u.first
	}
	var next []*lane
	if ls := u.more.Load(); ls != nil {
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
	u.more.Store(&next)
	return l
}

// lanes calls fn for each lane in use.
func (u *upstream) lanes(fn func(*lane)) {
	if u.ready.Load() {
		fn(&u.first)
	}
	if ls := u.more.Load(); ls != nil {
		for _, l := range *ls {
			fn(l)
		}
	}
}

// idle reports whether the entry holds nothing that a fresh one would not:
// no circuit, or a closed one with no failure counted, or an open one past
// its reset timeout; budgets whose windows hold nothing; no recent latency.
func (u *upstream) idle(now int64) bool {
	if u.calls.Load() > 0 {
		return false
	}
	if c := u.circuit.Load(); c != nil && !c.idle(now) {
		return false
	}
	idle := true
	u.lanes(func(l *lane) {
		if !l.budget.empty(now) {
			idle = false
		} else if s := l.latency.Load(); s != nil && !s.idle(now) {
			idle = false
		}
	})
	return idle
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
