package rtx

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// Concurrency stress tests of the per-upstream table (lock-free lookups,
// evictions, array rebuilds, tombstones) and of the entry the engine
// remembers. They are meant to run under -race: each raises GOMAXPROCS to
// at least 4 for its duration.

// stressFor is how long each stress phase runs.
const stressFor = 700 * time.Millisecond

// stressProcs raises GOMAXPROCS to at least 4 until the test ends, so that
// goroutines are preempted in the middle of lookups even on 2 cores.
func stressProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(0)
	if prev < 4 {
		runtime.GOMAXPROCS(4)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

// stressRun runs goroutines until a deadline or the first failures.
type stressRun struct {
	t        *testing.T
	deadline time.Time
	stop     atomic.Bool
	fails    atomic.Int32
	wg       sync.WaitGroup
}

func newStressRun(t *testing.T, d time.Duration) *stressRun {
	return &stressRun{t: t, deadline: time.Now().Add(d)}
}

// failf reports a failure (the first few only) and stops the run.
func (r *stressRun) failf(format string, args ...any) {
	r.t.Helper()
	if r.fails.Add(1) <= 8 {
		r.t.Errorf(format, args...)
	}
	r.stop.Store(true)
}

func (r *stressRun) done() bool { return r.stop.Load() || time.Now().After(r.deadline) }

// goN starts n goroutines running fn(id) in a loop until the run is done.
func (r *stressRun) goN(n int, fn func(id int)) {
	for id := range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for !r.done() {
				fn(id)
			}
		}()
	}
}

func (r *stressRun) wait() { r.wg.Wait() }

// holder records, for one key, the entry the test's goroutines hold pinned
// at the moment: two goroutines holding pins on the same key at the same
// time must hold the same entry.
type holder struct {
	mu sync.Mutex
	u  *upstream
	n  int
}

// enter records u as held; it returns the other entry held for the key
// instead, if there is one (u is then not recorded).
func (h *holder) enter(u *upstream) *upstream {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n > 0 && h.u != u {
		return h.u
	}
	h.u = u
	h.n++
	return nil
}

// leave is called before the pin is released.
func (h *holder) leave() {
	h.mu.Lock()
	h.n--
	h.mu.Unlock()
}

// shardOf returns the index of key's shard in tb.
func shardOf(tb *table, key []byte) int { return int(tb.hash(key) % tableShards) }

// keysIn returns n keys of the form prefix<i>:80 whose shard is sh.
func keysIn(tb *table, sh, n int, prefix string) [][]byte {
	var keys [][]byte
	for i := 0; len(keys) < n; i++ {
		k := fmt.Appendf(nil, "%s%d:80", prefix, i)
		if shardOf(tb, k) == sh {
			keys = append(keys, k)
		}
	}
	return keys
}

// checkShard verifies the invariants of shard i's array under its lock: a
// non-empty slot for every entry and tombstone (used), an entry for each of
// n, at least half of the array empty, a live entry of the shard in every
// slot that holds one, tombstones holding none, every entry found by a
// probe from its hash, and no key held twice.
func checkShard(tb *table, i int) error {
	s := &tb.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.slots.Load()
	if p == nil {
		if s.n != 0 || s.used != 0 {
			return fmt.Errorf("shard %d: no array, n=%d used=%d", i, s.n, s.used)
		}
		return nil
	}
	slots := *p
	used, n := 0, 0
	keys := map[string]bool{}
	for j := range slots {
		h := slots[j].hash.Load()
		u := slots[j].u.Load()
		switch {
		case h == slotEmpty:
			if u != nil {
				return fmt.Errorf("shard %d slot %d: empty slot holds %q", i, j, u.key)
			}
			continue
		case h == slotDeleted:
			if u != nil {
				return fmt.Errorf("shard %d slot %d: tombstone holds %q", i, j, u.key)
			}
		default:
			if u == nil {
				return fmt.Errorf("shard %d slot %d: hash %x without entry", i, j, h)
			}
			if u.hash != h || int(h%tableShards) != i {
				return fmt.Errorf("shard %d slot %d: hash %x, entry %q has %x", i, j, h, u.key, u.hash)
			}
			if c := u.calls.Load(); c < 0 {
				return fmt.Errorf("shard %d slot %d: evicted entry %q (calls %d) still in the array", i, j, u.key, c)
			}
			if keys[u.key] {
				return fmt.Errorf("shard %d: key %q held twice", i, u.key)
			}
			keys[u.key] = true
			if got := s.find(h, []byte(u.key)); got != u {
				return fmt.Errorf("shard %d: a probe for %q finds %p, want %p", i, u.key, got, u)
			}
			n++
		}
		used++
	}
	if n != s.n || used != s.used {
		return fmt.Errorf("shard %d: %d entries and %d used slots, counted n=%d used=%d", i, n, used, s.n, s.used)
	}
	if 2*used > len(slots) {
		return fmt.Errorf("shard %d: %d of %d slots used, more than half", i, used, len(slots))
	}
	return nil
}

// Many goroutines acquire and get keys of a small key space while a bound
// of 4 entries per shard evicts and rebuilds the arrays all the time.
// acquire must return a pinned live entry of the key, the same one to all
// goroutines holding the key at once, and get the very entry pinned; get
// must never return an entry already evicted when it began. A shard holds
// no more than its bound, or its pinned entries and the one inserted. With
// every pin released, an insert brings each shard back under the bound.
func TestStressTableAcquireUnderEvictions(t *testing.T) {
	stressProcs(t)
	const perShard, nkeys, hot, workers, hold = 4, 512, 16, 8, 3
	tb := newTable(tableShards * perShard)
	keys := make([][]byte, nkeys)
	shard := make([]int, nkeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "k%d.test:80", i)
		shard[i] = shardOf(tb, keys[i])
	}
	holders := make([]holder, nkeys)
	// intent counts, per shard, the test's pins, from before acquire to
	// after unpin: at any moment it covers the shard's pinned entries.
	// peak is its high-water mark.
	var intent, peak [tableShards]atomic.Int32
	var acquires, gets, fresh atomic.Int64

	r := newStressRun(t, 2*stressFor)
	type pinned struct {
		i int
		u *upstream
	}
	held := make([][]pinned, workers)
	release := func(id int, p pinned) {
		if c := p.u.calls.Load(); c <= 0 {
			r.failf("key %s: entry pinned by the test has calls %d before unpin", keys[p.i], c)
		}
		if id%2 == 0 {
			holders[p.i].leave()
		}
		p.u.unpin()
		intent[shard[p.i]].Add(-1)
	}
	last := make([]map[int]*upstream, workers) // per worker: the entry last got per key
	for id := range last {
		last[id] = map[int]*upstream{}
	}
	now := make([]int64, workers)
	r.goN(workers, func(id int) {
		now[id] += int64(time.Millisecond)
		i := rand.IntN(nkeys)
		if rand.IntN(2) == 0 {
			i = rand.IntN(hot) // contention on a few keys
		}
		key := keys[i]
		if rand.IntN(4) == 0 {
			prev := last[id][i]
			dead := prev != nil && prev.calls.Load() < 0
			u := tb.get(key, now[id])
			gets.Add(1)
			if !u.is(key) || u.key != string(key) || u.hash != tb.hash(key) {
				r.failf("get(%s) returned the entry of %q", key, u.key)
			}
			if dead && u == prev {
				r.failf("get(%s) returned an entry evicted before it began", key)
			}
			if u != prev {
				fresh.Add(1)
			}
			last[id][i] = u
			return
		}
		n := intent[shard[i]].Add(1)
		for p := peak[shard[i]].Load(); n > p && !peak[shard[i]].CompareAndSwap(p, n); p = peak[shard[i]].Load() {
		}
		u := tb.acquire(key, now[id])
		acquires.Add(1)
		if c := u.calls.Load(); c <= 0 {
			r.failf("acquire(%s) returned an entry with calls %d: evicted or not pinned", key, c)
		}
		if !u.is(key) || u.key != string(key) || u.hash != tb.hash(key) {
			r.failf("acquire(%s) returned the entry of %q", key, u.key)
		}
		if id%2 == 0 { // the other half checks nothing shared, not to order the goroutines
			if other := holders[i].enter(u); other != nil {
				r.failf("key %s: two live entries pinned at once (%p and %p)", key, u, other)
				u.unpin()
				intent[shard[i]].Add(-1)
				return
			}
		}
		if g := tb.get(key, now[id]); g != u {
			r.failf("key %s: get returned %p while %p is pinned", key, g, u)
		}
		held[id] = append(held[id], pinned{i, u})
		if len(held[id]) > rand.IntN(hold+1) {
			release(id, held[id][0])
			held[id] = held[id][1:]
		}
	})

	// A monitor checks the arrays and the bound while the workers run.
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for !r.done() {
			for i := range tableShards {
				if err := checkShard(tb, i); err != nil {
					r.failf("%v", err)
					return
				}
				s := &tb.shards[i]
				s.mu.Lock()
				n := s.n
				s.mu.Unlock()
				if p := int(peak[i].Load()); n > max(tb.max, p+1) {
					r.failf("shard %d holds %d entries: bound %d, at most %d pinned at once", i, n, tb.max, p)
					return
				}
			}
			runtime.Gosched()
		}
	}()
	r.wait()
	for id := range held {
		for _, p := range held[id] {
			release(id, p)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("%d acquires, %d gets (%d gave another entry than the worker's last), %d entries", acquires.Load(), gets.Load(), fresh.Load(), tb.len())

	tb.each(func(u *upstream) {
		if c := u.calls.Load(); c != 0 {
			t.Errorf("entry %q has calls %d with every pin released", u.key, c)
		}
	})
	// One insert per shard: the shard is full (everything goes, all
	// being idle and unpinned) or under its bound.
	for i := range tableShards {
		k := keysIn(tb, i, 1, fmt.Sprintf("after%d-", i))[0]
		if u := tb.acquire(k, 1<<62); u.calls.Load() != 1 {
			t.Errorf("fresh entry %s: calls %d after acquire", k, u.calls.Load())
		} else {
			u.unpin()
		}
		if err := checkShard(tb, i); err != nil {
			t.Error(err)
		}
	}
	if n := tb.len(); n > tableShards*perShard {
		t.Errorf("%d entries after every pin was released and each shard took an insert, bound %d", n, tableShards*perShard)
	}
}

// collidingKeys returns n keys of shard sh whose probes all start at the
// same slot of any array of up to 256 slots.
func collidingKeys(tb *table, sh, n int, prefix string) [][]byte {
	var keys [][]byte
	var start uint64
	for i := 0; len(keys) < n; i++ {
		k := fmt.Appendf(nil, "%s%d:80", prefix, i)
		h := tb.hash(k)
		if int(h%tableShards) != sh {
			continue
		}
		if len(keys) == 0 {
			start = (h / tableShards) & 255
		}
		if (h/tableShards)&255 == start {
			keys = append(keys, k)
		}
	}
	return keys
}

// removeKey evicts key's live entry as eviction does (claim, then remove,
// under the shard's lock), and returns it, or nil when there was none or
// it was pinned.
func removeKey(tb *table, key []byte) *upstream {
	h := tb.hash(key)
	s := &tb.shards[h%tableShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.find(h, key); u != nil && u.claim() {
		s.remove(u)
		return u
	}
	return nil
}

// Keys whose probes start at the same slot form one cluster: removing
// some leaves tombstones in it that a probe for the others crosses,
// lock-free, while a writer removes and re-inserts keys (a removed key's
// slot stays a tombstone, the re-inserted entry goes past the cluster)
// until the array is rebuilt without tombstones, again and again. The
// keys never removed are always found, as the same entry; the others are
// found as an entry of their own key, or not at all; a pin keeps a removal
// off; the arrays stay consistent.
func TestStressTableProbesAcrossTombstones(t *testing.T) {
	stressProcs(t)
	tb := newTable(tableShards * 64) // no eviction: removals are the test's
	const sh = 5
	keys := collidingKeys(tb, sh, 24, "c")
	var stable, churn [][]byte
	for i, k := range keys {
		if i%3 == 2 {
			stable = append(stable, k)
		} else {
			churn = append(churn, k)
		}
	}
	s := &tb.shards[sh]

	// Sequentially first: the cluster, with stable keys behind churn keys.
	stableU := make([]*upstream, len(stable))
	for i, k := range keys {
		u := tb.get(k, 1)
		if i%3 == 2 {
			stableU[i/3] = u
		}
	}
	for _, k := range churn[:len(churn)/2] {
		if removeKey(tb, k) == nil {
			t.Fatalf("%s: not removed", k)
		}
	}
	if err := checkShard(tb, sh); err != nil {
		t.Fatal(err)
	}
	for i, k := range stable {
		if u := s.find(tb.hash(k), k); u != stableU[i] {
			t.Fatalf("%s: the probe across tombstones finds %p, want %p", k, u, stableU[i])
		}
	}
	for _, k := range churn[:len(churn)/2] {
		if u := s.find(tb.hash(k), k); u != nil {
			t.Fatalf("%s: removed, yet found (calls %d)", k, u.calls.Load())
		}
	}
	// Remove then re-insert one key: a new entry, the old one stays evicted.
	k := churn[len(churn)-1]
	old := tb.get(k, 1)
	if removeKey(tb, k) != old {
		t.Fatalf("%s: not removed", k)
	}
	renewed := tb.acquire(k, 2)
	if renewed == old || !renewed.is(k) || renewed.calls.Load() != 1 {
		t.Fatalf("%s re-inserted: %p (old %p), calls %d", k, renewed, old, renewed.calls.Load())
	}
	if old.pin() {
		t.Fatalf("%s: the removed entry could be pinned again", k)
	}
	if removeKey(tb, k) != nil {
		t.Fatalf("%s: a pinned entry was removed", k)
	}
	renewed.unpin()
	if err := checkShard(tb, sh); err != nil {
		t.Fatal(err)
	}

	// Then concurrently.
	holders := make([]holder, len(churn))
	var rebuilds, removals, reinserts atomic.Int64
	r := newStressRun(t, stressFor)
	r.goN(1, func(int) { // the writer
		i := rand.IntN(len(churn))
		before := s.slots.Load()
		if removeKey(tb, churn[i]) != nil {
			removals.Add(1)
		}
		if rand.IntN(3) != 0 {
			tb.get(churn[rand.IntN(len(churn))], 1)
			reinserts.Add(1)
		}
		if s.slots.Load() != before {
			rebuilds.Add(1)
		}
		if rand.IntN(64) == 0 {
			if err := checkShard(tb, sh); err != nil {
				r.failf("%v", err)
			}
		}
	})
	r.goN(3, func(id int) { // readers
		for i, k := range stable {
			if u := s.find(tb.hash(k), k); u != stableU[i] {
				r.failf("%s: a lock-free probe finds %p, want %p", k, u, stableU[i])
			}
		}
		i := rand.IntN(len(churn))
		k := churn[i]
		if u := s.find(tb.hash(k), k); u != nil && !u.is(k) {
			r.failf("a probe for %s found the entry of %q", k, u.key)
		}
		if id == 0 {
			if u := tb.get(k, 1); !u.is(k) {
				r.failf("get(%s) returned the entry of %q", k, u.key)
			}
			return
		}
		u := tb.acquire(k, 1)
		if c := u.calls.Load(); c <= 0 || !u.is(k) {
			r.failf("acquire(%s): entry of %q with calls %d", k, u.key, c)
		}
		if other := holders[i].enter(u); other != nil {
			r.failf("%s: two live entries pinned at once", k)
		} else {
			for range rand.IntN(4) {
				runtime.Gosched()
			}
			if g := tb.get(k, 1); g != u {
				r.failf("%s: get returned %p while %p is pinned", k, g, u)
			}
			if c := u.calls.Load(); c <= 0 {
				r.failf("%s: a pinned entry was claimed (calls %d)", k, c)
			}
			holders[i].leave()
		}
		u.unpin()
	})
	r.wait()
	t.Logf("%d removals, %d re-inserts, %d arrays published", removals.Load(), reinserts.Load(), rebuilds.Load())
	if err := checkShard(tb, sh); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	if rebuilds.Load() == 0 {
		t.Error("the writer never caused an array rebuild")
	}
	for i, u := range stableU {
		if c := u.calls.Load(); c != 0 {
			t.Errorf("%s: calls %d", stable[i], c)
		}
	}
	tb.each(func(u *upstream) {
		if c := u.calls.Load(); c != 0 {
			t.Errorf("entry %q has calls %d with every pin released", u.key, c)
		}
	})
}

// One key is acquired, held and released by several goroutines while
// another runs the real eviction of its shard and fills the shard with
// other keys: each time nobody holds it, the key's entry is evicted and the
// next acquire makes a new one. No acquire may get an evicted entry, and
// holders at the same time hold one entry, the one get returns.
func TestStressTableEvictReinsertSameKey(t *testing.T) {
	stressProcs(t)
	tb := newTable(tableShards * 4)
	key := []byte("hot.test:80")
	sh := shardOf(tb, key)
	s := &tb.shards[sh]
	fill := keysIn(tb, sh, 32, "fill")
	var h holder
	var gens, evictions atomic.Int64
	var latest atomic.Pointer[upstream]
	r := newStressRun(t, stressFor)
	r.goN(1, func(int) { // the evictor
		if rand.IntN(2) == 0 {
			tb.get(fill[rand.IntN(len(fill))], 1) // evicts when the shard is full
			return
		}
		s.mu.Lock()
		before := s.n
		s.evict(1, tb.max)
		if s.n < before {
			evictions.Add(1)
		}
		s.mu.Unlock()
	})
	r.goN(4, func(id int) {
		if id == 3 { // gets only
			prev := latest.Load()
			dead := prev != nil && prev.calls.Load() < 0
			u := tb.get(key, 1)
			if !u.is(key) {
				r.failf("get returned the entry of %q", u.key)
			}
			if dead && u == prev {
				r.failf("get returned an entry evicted before it began")
			}
			return
		}
		u := tb.acquire(key, 1)
		if c := u.calls.Load(); c <= 0 || !u.is(key) {
			r.failf("acquire: entry of %q with calls %d", u.key, c)
			return
		}
		if prev := latest.Swap(u); prev != u {
			gens.Add(1)
		}
		if other := h.enter(u); other != nil {
			r.failf("two live entries pinned at once (%p and %p)", u, other)
			u.unpin()
			return
		}
		if g := tb.get(key, 1); g != u {
			r.failf("get returned %p while %p is pinned", g, u)
		}
		runtime.Gosched()
		if c := u.calls.Load(); c <= 0 {
			r.failf("a pinned entry was evicted (calls %d)", c)
		}
		h.leave()
		u.unpin()
		for range rand.IntN(3) { // let the evictor in
			runtime.Gosched()
		}
	})
	r.wait()
	t.Logf("%d entries made for the key, %d evictions", gens.Load(), evictions.Load())
	if err := checkShard(tb, sh); err != nil {
		t.Error(err)
	}
	if !t.Failed() && gens.Load() < 2 {
		t.Errorf("the key's entry was never evicted and made anew (%d entries)", gens.Load())
	}
}

// The bound holds for entries that are not idle (a budget in use) and not
// pinned: a shard never keeps more than its share. With fewer than 8
// entries per shard the least-recently-used pass evicts nothing (its
// target, limit - limit/8, is the limit itself) and each shard keeps one
// more entry than its share.
func TestStressTableBoundWithBusyEntries(t *testing.T) {
	stressProcs(t)
	p := &policy.Policy{Name: "p", Attempts: 3, BudgetRatio: 0.2, BudgetMinRetriesPerSec: 10, BudgetWindow: time.Hour}
	for _, perShard := range []int{1, 4, 8, 16} {
		t.Run(fmt.Sprint(perShard), func(t *testing.T) {
			tb := newTable(tableShards * perShard)
			var next atomic.Int64
			r := newStressRun(t, stressFor/4)
			r.goN(4, func(int) {
				i := next.Add(1)
				now := int64(time.Hour) + i*int64(time.Millisecond)
				u := tb.get(fmt.Appendf(nil, "busy%d.test:80", i), now)
				u.lane(p).budget.add(now, 1, 0) // no longer idle
			})
			r.goN(1, func(int) {
				for i := range tableShards {
					s := &tb.shards[i]
					s.mu.Lock()
					n := s.n
					s.mu.Unlock()
					if n > tb.max {
						r.failf("shard %d holds %d entries, none pinned: bound %d per shard (table bound %d)", i, n, tb.max, tableShards*perShard)
						return
					}
				}
				runtime.Gosched()
			})
			r.wait()
			if n := tb.len(); !t.Failed() && n > tableShards*perShard {
				t.Errorf("%d entries, none pinned, bound %d", n, tableShards*perShard)
			}
		})
	}
}

// The engine's remembered entry, under a bound of one entry per shard and
// a flood of other hosts (half of them in the shards of the remembered
// host's keys) that evicts it and replaces it: every call to the host gets
// an entry of its own key and scheme, never one already evicted when the
// call began (the remembered one or the call's last); a pinned call gets
// a live entry, the one the table holds for the key, the same for every
// call pinning it at once.
func TestStressEngineRememberedUpstream(t *testing.T) {
	stressProcs(t)
	e := newEngine(policy.NewFactory(nil), "", "http", []Option{withMaxUpstreams(tableShards)})
	type target struct {
		req  *http.Request
		key  []byte
		host string
		tls  bool
	}
	hot := []target{
		{mustGet(t, "http://hot.test/a"), []byte("hot.test:80"), "hot.test", false},
		{mustGet(t, "https://hot.test/b"), []byte("hot.test:443"), "hot.test", true},
	}
	var flood []target
	near, far := 0, 0
	for i := 0; near < 64 || far < 64; i++ {
		host := fmt.Sprintf("f%d.test", i)
		tgt := target{mustGet(t, "http://"+host+"/"), []byte(host + ":80"), host, false}
		if sh := shardOf(e.ups, tgt.key); sh == shardOf(e.ups, hot[0].key) || sh == shardOf(e.ups, hot[1].key) {
			if near < 64 {
				flood, near = append(flood, tgt), near+1
			}
		} else if far < 64 {
			flood, far = append(flood, tgt), far+1
		}
	}
	holders := make([]holder, len(hot))
	var calls, pinnedCalls, staleLast, gens atomic.Int64
	var latest [2]atomic.Pointer[upstream]
	check := func(tgt target, u *upstream, pin bool) bool {
		if !u.is(tgt.key) || u.key != string(tgt.key) || u.host != tgt.host || u.tls != tgt.tls {
			return false
		}
		return !pin || u.calls.Load() > 0
	}
	r := newStressRun(t, stressFor)
	prevs := make([][2]*upstream, 3)
	r.goN(3, func(id int) { // calls to the host
		var buf keyBuf
		j := 0
		if rand.IntN(4) == 0 {
			j = 1 // the same host over TLS: another key
		}
		tgt := hot[j]
		pin := rand.IntN(2) == 0
		prev := prevs[id][j]
		prevDead := prev != nil && prev.calls.Load() < 0
		last := e.last.Load()
		lastDead := last != nil && last.calls.Load() < 0
		if lastDead && last.host == tgt.host && last.tls == tgt.tls {
			staleLast.Add(1)
		}
		u := e.upstream(tgt.req, &buf, e.clock(), pin)
		calls.Add(1)
		prevs[id][j] = u
		if latest[j].Swap(u) != u {
			gens.Add(1)
		}
		if !check(tgt, u, pin) {
			r.failf("%s (pin %v): entry of %q (host %q, tls %v), calls %d", tgt.req.URL, pin, u.key, u.host, u.tls, u.calls.Load())
			if pin {
				u.unpin()
			}
			return
		}
		if prevDead && u == prev {
			r.failf("%s (pin %v): the call's last entry, evicted before the call began, was returned", tgt.req.URL, pin)
		}
		if lastDead && u == last {
			r.failf("%s (pin %v): the remembered entry, evicted before the call began, was returned", tgt.req.URL, pin)
		}
		if !pin {
			return
		}
		pinnedCalls.Add(1)
		if other := holders[j].enter(u); other != nil {
			r.failf("%s: two live entries pinned at once (%p and %p)", tgt.req.URL, u, other)
			u.unpin()
			return
		}
		if g := e.ups.get(tgt.key, e.clock()); g != u {
			r.failf("%s: the table holds %p while the call pinned %p", tgt.req.URL, g, u)
		}
		runtime.Gosched()
		if c := u.calls.Load(); c <= 0 {
			r.failf("%s: the call's pinned entry was evicted (calls %d)", tgt.req.URL, c)
		}
		holders[j].leave()
		u.unpin()
	})
	r.goN(2, func(int) { // the flood
		var buf keyBuf
		tgt := flood[rand.IntN(len(flood))]
		pin := rand.IntN(2) == 0
		u := e.upstream(tgt.req, &buf, e.clock(), pin)
		if !check(tgt, u, pin) {
			r.failf("%s (pin %v): entry of %q (host %q, tls %v), calls %d", tgt.req.URL, pin, u.key, u.host, u.tls, u.calls.Load())
		}
		if pin {
			u.unpin()
		}
	})
	r.wait()
	t.Logf("%d calls to the host (%d pinned), %d entries made for it, %d calls found the remembered entry evicted",
		calls.Load(), pinnedCalls.Load(), gens.Load(), staleLast.Load())
	if t.Failed() {
		return
	}
	if gens.Load() < 4 {
		t.Errorf("the host's entries were made only %d times: the flood did not evict them", gens.Load())
	}
	e.ups.each(func(u *upstream) {
		if c := u.calls.Load(); c != 0 {
			t.Errorf("entry %q has calls %d after every call ended", u.key, c)
		}
	})
}

// Through RoundTrip: with circuits on, a call pins its entry for its whole
// length, the remembered one included. While calls to one host are in
// flight, a flood of other hosts of its shard (one entry per shard) cannot
// evict the entry: the table holds one live, pinned entry for the host,
// with the circuit the calls go through, the same for every call in
// flight.
func TestStressTransportPinnedCallsKeepTheirEntry(t *testing.T) {
	stressProcs(t)
	const doc = `
[default.resilience.retry.policies.once]
attempts = 1
[default.resilience.circuit_breaker]
default_fail_max = 3
default_reset_timeout_sec = 60
`
	var r *stressRun
	var tr *Transport
	var h holder
	hotKey := []byte("hot.test:80")
	var checked, gens atomic.Int64
	var latest atomic.Pointer[upstream]
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Host == "hot.test" {
			u := tr.e.ups.get(hotKey, tr.e.clock())
			if latest.Swap(u) != u {
				gens.Add(1)
			}
			if c := u.calls.Load(); c <= 0 {
				r.failf("a call in flight to hot.test: its entry has calls %d", c)
			} else if u.circuit.Load() == nil {
				r.failf("a call in flight to hot.test: its entry has no circuit")
			} else if other := h.enter(u); other != nil {
				r.failf("two calls in flight to hot.test hold different entries (%p and %p)", u, other)
			} else {
				runtime.Gosched()
				if c := u.calls.Load(); c <= 0 {
					r.failf("the entry of a call in flight was evicted (calls %d)", c)
				}
				h.leave()
				checked.Add(1)
			}
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
	})
	tr = New(testFactory(t, doc), "once", WithBase(base), withMaxUpstreams(tableShards))
	sh := shardOf(tr.e.ups, hotKey)
	var flood []*http.Request
	for _, k := range keysIn(tr.e.ups, sh, 32, "f") {
		flood = append(flood, mustGet(t, "http://"+string(k[:len(k)-3])+"/"))
	}
	hot := mustGet(t, "http://hot.test/")
	r = newStressRun(t, stressFor)
	send := func(req *http.Request) {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			r.failf("%s: %v", req.URL, err)
			return
		}
		resp.Body.Close()
	}
	r.goN(3, func(int) { send(hot) })
	r.goN(2, func(int) { send(flood[rand.IntN(len(flood))]) })
	r.wait()
	t.Logf("%d calls to hot.test checked in flight, %d entries made for it", checked.Load(), gens.Load())
	tr.e.ups.each(func(u *upstream) {
		if c := u.calls.Load(); c != 0 {
			t.Errorf("entry %q has calls %d after every call ended", u.key, c)
		}
	})
}
