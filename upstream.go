package rtx

import (
	"cmp"
	"hash/maphash"
	"math"
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

// table is a bounded map from upstream key to its state. Lookups take no
// lock: a shard is an open-addressed array of (hash, entry) slots that
// writers, serialized by the shard's lock, change one atomic word at a
// time and replace whole when it grows. Inserts past the bound evict
// within the shard.
//
// A lookup touches few cache lines, so that its cost stays flat with
// hundreds of thousands of upstreams: one slot, then the entry, which
// holds its key's bytes and its first lane inline and says whether the key
// is its own.
//
// The zero value is not usable: see newTable.
type table struct {
	seed   maphash.Seed
	max    int // entries per shard
	shards [tableShards]shard
}

type shard struct {
	slots atomic.Pointer[[]slot] // nil until the first insert; len a power of 2
	mu    sync.Mutex             // serializes writers
	n     int                    // entries; under mu
	used  int                    // entries and tombstones; under mu
}

// slot is one place of a shard's array. A writer stores the entry, then
// the hash; a reader loads the hash, then the entry, and checks the entry's
// key: a slot changed between the two loads is a miss, or a stale entry
// that pinning refuses.
type slot struct {
	hash atomic.Uint64 // slotEmpty, slotDeleted, or the entry's key hash (see table.hash)
	u    atomic.Pointer[upstream]
}

const (
	slotEmpty   = 0
	slotDeleted = 1
)

func newTable(limit int) *table {
	// A shard's array is made at its first insert: a one-shot rtx.Do uses
	// one shard.
	return &table{seed: maphash.MakeSeed(), max: max(limit/tableShards, 1)}
}

// hash returns key's hash, never slotEmpty nor slotDeleted. Its low bits
// pick the shard, the others the slot.
func (t *table) hash(key []byte) uint64 { return max(maphash.Bytes(t.seed, key), slotDeleted+1) }

// get returns the state of the upstream named by key, creating it if
// needed. key may be a view of a scratch buffer: it is copied before it is
// stored.
func (t *table) get(key []byte, now int64) *upstream { return t.lookup(key, origin{}, now, false) }

// acquire is get for a user of the entry that must not see it evicted: it
// comes back pinned (see pin).
func (t *table) acquire(key []byte, now int64) *upstream { return t.lookup(key, origin{}, now, true) }

// origin is the URL host and scheme an HTTP upstream's key was made from,
// which a new entry keeps (see engine.upstream).
type origin struct {
	host string
	tls  bool
}

// lookup is get, or acquire when pin is set; a new entry keeps from.
func (t *table) lookup(key []byte, from origin, now int64, pin bool) *upstream {
	h := t.hash(key)
	s := &t.shards[h%tableShards]
	u := s.find(h, key)
	if u == nil || pin && !u.pin() {
		u = t.insert(s, h, key, from, now, pin)
	}
	u.touch(now)
	return u
}

// find returns the live entry of key, or nil. It takes no lock.
func (s *shard) find(h uint64, key []byte) *upstream {
	p := s.slots.Load()
	if p == nil {
		return nil
	}
	slots := *p
	mask := uint64(len(slots) - 1)
	// An array always has empty slots (see insert): the probe ends.
	for i := (h / tableShards) & mask; ; i = (i + 1) & mask {
		switch sh := slots[i].hash.Load(); sh {
		case slotEmpty:
			return nil
		case h:
			if u := slots[i].u.Load(); u != nil && u.is(key) && u.calls.Load() >= 0 {
				return u
			}
		}
	}
}

func (t *table) insert(s *shard, h uint64, key []byte, from origin, now int64, pin bool) *upstream {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.find(h, key); u != nil && (!pin || u.pin()) { // a live entry is pinned: eviction needs the lock
		return u
	}
	if s.n >= t.max {
		s.evict(now, t.max)
	}
	u := newUpstream(string(key), h, now)
	u.host, u.tls = from.host, from.tls
	if pin {
		u.pin()
	}
	s.put(u)
	return u
}

// put adds u, growing the array (or rebuilding it without tombstones) to
// keep at least half of it empty. Must be called with s.mu held.
func (s *shard) put(u *upstream) {
	p := s.slots.Load()
	if p == nil || 2*(s.used+1) > len(*p) {
		size := 8
		for size < 3*(s.n+1) {
			size *= 2
		}
		grown := make([]slot, size)
		if p != nil {
			for i := range *p {
				if v := (*p)[i].u.Load(); v != nil {
					place(grown, v)
				}
			}
		}
		s.used = s.n
		p = &grown
		place(grown, u)
		s.slots.Store(p) // readers of the old array see what it held
	} else {
		place(*p, u)
	}
	s.n++
	s.used++
}

// place stores u in the first free slot of its probe. A slot stays
// deleted until the array is rebuilt, so that a reusing insert needs no
// care for probes in flight.
func place(slots []slot, u *upstream) {
	mask := uint64(len(slots) - 1)
	for i := (u.hash / tableShards) & mask; ; i = (i + 1) & mask {
		if slots[i].hash.Load() == slotEmpty {
			slots[i].u.Store(u)
			slots[i].hash.Store(u.hash)
			return
		}
	}
}

// remove deletes u, which eviction claimed, from the shard. Must be called
// with s.mu held.
func (s *shard) remove(u *upstream) {
	slots := *s.slots.Load()
	mask := uint64(len(slots) - 1)
	for i := (u.hash / tableShards) & mask; ; i = (i + 1) & mask {
		if slots[i].u.Load() == u {
			slots[i].hash.Store(slotDeleted)
			slots[i].u.Store(nil)
			s.n--
			return
		}
	}
}

// entries returns the shard's entries. Must be called with s.mu held.
func (s *shard) entries(buf []*upstream) []*upstream {
	if p := s.slots.Load(); p != nil {
		for i := range *p {
			if u := (*p)[i].u.Load(); u != nil {
				buf = append(buf, u)
			}
		}
	}
	return buf
}

// evict makes room in a full shard: first every entry that holds nothing a
// fresh one would not, then, if that freed less than an eighth, the least
// recently used eighth. Pinned entries are never evicted, and an evicted
// entry can no longer be pinned (see claim). Evicting a batch keeps the
// amortized cost of an insert constant. Must be called with s.mu held.
func (s *shard) evict(now int64, limit int) {
	all := s.entries(make([]*upstream, 0, s.n))
	kept := all[:0]
	for _, u := range all {
		switch {
		case u.calls.Load() != 0: // in use: never evicted
		case u.idle(now):
			if u.claim() {
				s.remove(u)
			}
		default:
			kept = append(kept, u)
		}
	}
	target := min(limit-limit/8, limit-1) // an eighth, and at least one: the insert that called needs room
	if s.n <= target {
		return
	}
	slices.SortFunc(kept, func(a, b *upstream) int { return cmp.Compare(a.used.Load(), b.used.Load()) })
	for _, u := range kept {
		if s.n <= target {
			return
		}
		if u.claim() {
			s.remove(u)
		}
	}
}

// len returns the number of entries (for tests and the debug page).
func (t *table) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.n
		s.mu.Unlock()
	}
	return n
}

// each calls fn for every entry, one shard at a time, outside the locks.
func (t *table) each(fn func(*upstream)) {
	var batch []*upstream
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		batch = s.entries(batch[:0])
		s.mu.Unlock()
		for _, u := range batch {
			fn(u)
		}
	}
}

// shortKey is how many bytes of its key an entry holds inline.
const shortKey = 32

// upstream is the state kept for one upstream (a host:port, or a Retrier's
// operation name): its circuit and, per policy, its budget.
//
// What a first try reads (the key, the last use, the circuit, the first
// policy's budget) fills the first 128 bytes, and the entry is 256 bytes:
// a size class whose objects are 256-byte aligned, so that those two cache
// lines are a pair that the hardware fetches together. With hundreds of
// thousands of upstreams out of cache, a first try then costs the table's
// slot and one fetch of the entry.
type upstream struct {
	calls   atomic.Int32 // calls and attempts pinning the entry (see pin); evicted once negative
	n       uint8        // len(key), or 0 when longer than shortKey
	tls     bool         // with host: the URL the key was made from (see origin); set before the entry is published
	host    string
	used    atomic.Int64                  // engine time (see engine.clock) of the last use, coarse
	pol     atomic.Pointer[policy.Policy] // the policy last found to be the first lane's
	circuit atomic.Pointer[circuit]
	short   [shortKey]byte
	budget  budget // the first lane's

	// The rest: read when a policy or its window changed, and by writers.
	ready atomic.Bool             // first is set
	first lane                    // the first policy's lane
	more  atomic.Pointer[[]*lane] // other policies' (and replaced) lanes: copy-on-write
	mu    sync.Mutex              // serializes writers of circuit, first and more
	hash  uint64
	key   string
	_     [upstreamPad]byte
}

// upstreamPad brings an upstream to 256 bytes (see upstream): a test
// checks the size.
const upstreamPad = 40

// pin keeps the entry from eviction until unpin, and reports whether it
// could: an evicted entry cannot be pinned. A call whose circuit is the
// entry's must not see its state split from a new entry's for the same
// key. Pinning an entry already pinned always succeeds.
func (u *upstream) pin() bool { return u.calls.Add(1) > 0 }
func (u *upstream) unpin()    { u.calls.Add(-1) }

// hold pins the entry if pin is set (see pin), else checks that it was not
// evicted, and reports whether the entry may be used.
func (u *upstream) hold(pin bool) bool {
	if pin {
		return u.pin()
	}
	return u.calls.Load() >= 0
}

// evicted is the pin count of an evicted entry: no number of failed pins
// brings it back to zero.
const evicted = math.MinInt32 / 2

// claim marks an unpinned entry evicted, and reports whether it was
// unpinned.
func (u *upstream) claim() bool { return u.calls.CompareAndSwap(0, evicted) }

func newUpstream(key string, hash uint64, now int64) *upstream {
	u := &upstream{key: key, hash: hash}
	u.first.budget = &u.budget
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

// budgetFor returns the upstream's budget under p: the first lane's, from
// the entry's first lines, when p is the policy last found to be its.
func (u *upstream) budgetFor(p *policy.Policy) *budget {
	if u.pol.Load() == p {
		return &u.budget
	}
	return u.lane(p).budget
}

// lane returns the upstream's state under a policy, made anew when the
// policy's budget window changed.
func (u *upstream) lane(p *policy.Policy) *lane {
	if l := u.find(p); l != nil {
		return l
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if l := u.find(p); l != nil {
		return l
	}
	if !u.ready.Load() {
		u.first.policy, u.first.window = p.Name, p.BudgetWindow
		u.budget.init(p.BudgetWindow)
		u.ready.Store(true)
		u.pol.Store(p)
		return &u.first
	}
	var next []*lane
	if ls := u.more.Load(); ls != nil {
		for _, l := range *ls {
			if l.policy != p.Name {
				next = append(next, l)
			} // else the window changed: start afresh
		}
	}
	l := newLane(p)
	next = append(next, l)
	u.more.Store(&next)
	return l
}

// find returns the lane of p, if there is one.
func (u *upstream) find(p *policy.Policy) *lane {
	if u.ready.Load() && u.first.is(p) {
		u.pol.Store(p) // the snapshot changed, not the lane
		return &u.first
	}
	if ls := u.more.Load(); ls != nil {
		for _, l := range *ls {
			if l.is(p) {
				return l
			}
		}
	}
	return nil
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
	if u.calls.Load() != 0 {
		return false
	}
	if c := u.circuit.Load(); c != nil && !c.idle(now) {
		return false
	}
	idle := true
	u.lanes(func(l *lane) {
		if l.window > 0 && !l.budget.empty(now) {
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
	window  time.Duration           // the policy's budget window when the lane was made
	budget  *budget                 // the first lane's is its upstream's; the others' own
	latency atomic.Pointer[latency] // made at the first hedged attempt under a quantile
}

// newLane makes a lane for p that is not an upstream's first.
func newLane(p *policy.Policy) *lane {
	l := &struct {
		lane
		b budget
	}{lane: lane{policy: p.Name, window: p.BudgetWindow}}
	l.b.init(p.BudgetWindow)
	l.budget = &l.b
	return &l.lane
}

// is reports whether the lane is p's.
func (l *lane) is(p *policy.Policy) bool { return l.policy == p.Name && l.window == p.BudgetWindow }

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
