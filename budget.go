package rtx

import (
	"sync/atomic"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// budgetBuckets is how many slices a budget's window is counted in.
const budgetBuckets = 5

// A bucket is one word: the slice of time it counts (the low tagBits of
// its number), and the first attempts and retries in it, each saturating
// at countMax. One word keeps a budget within 48 bytes, next to the rest
// of what a first try reads (see upstream).
const (
	tagBits   = 22
	countBits = 21
	countMax  = 1<<countBits - 1
	tagMask   = 1<<tagBits - 1
)

// budget counts first attempts and retries over a sliding window, in
// buckets, as Finagle's and Linkerd's retry budgets do: a retry is allowed
// while retries in the window stay under ratio * first attempts plus
// minPerSec * window. Times are engine times (see engine.clock).
//
// Its head word holds the slice's length and the number (low 32 bits) of
// the latest slice counted in. Moving to a new slice clears the buckets
// that left the window, all of them after a gap of a whole window, so a
// bucket never outlives its window long enough for its tag to come round
// again, and a window after a gap reads empty. (A budget unused for a
// whole multiple of 2^32 slices, to within the window, would read its old
// counts: at the 1 ms shortest slice, 49.7 days to the millisecond.)
type budget struct {
	head atomic.Uint64 // slice length in ms << 32 | latest slice counted in (low 32 bits)
	b    [budgetBuckets]atomic.Uint64
}

// enabled reports whether the policy uses a budget at all: MESH and
// single-attempt policies never retry, so they never spend one.
func budgetEnabled(p *policy.Policy) bool {
	return p.BudgetRatio >= 0 && p.Attempts > 1 && p.BudgetWindow > 0
}

// init sets the window; the budget must not be in use yet.
func (b *budget) init(window time.Duration) {
	ms := min(max(window/budgetBuckets/time.Millisecond, 1), 1<<32-1)
	b.head.Store(uint64(ms) << 32)
}

// slice returns the slice number of now and the head it was read with.
func (b *budget) slice(now int64) (epoch, head uint64) {
	head = b.head.Load()
	return uint64(now / (int64(head>>32) * int64(time.Millisecond))), head
}

func bucketWord(tag, firsts, retries uint64) uint64 {
	return tag | firsts<<tagBits | retries<<(tagBits+countBits)
}

// since returns how many slices epoch is after the latest slice counted in
// (head's), or 0 when it is not after it.
func since(epoch, head uint64) uint32 {
	if d := uint32(epoch) - uint32(head); d < 1<<31 {
		return d
	}
	return 0
}

// inWindow returns the counts of bucket word w if the slice it counts is
// one of the window that ends with slice epoch.
func inWindow(w, epoch uint64) (firsts, retries uint64, ok bool) {
	if (epoch-w)&tagMask >= budgetBuckets {
		return 0, 0, false
	}
	return w >> tagBits & countMax, w >> (tagBits + countBits), true
}

// add adds to the counts of the slice of now; retries never go below zero.
func (b *budget) add(now int64, firsts, retries int64) {
	epoch, head := b.slice(now)
	if since(epoch, head) > 0 {
		b.advance(epoch, head)
	}
	bk := &b.b[epoch%budgetBuckets]
	for {
		old := bk.Load()
		var f, r uint64
		if old&tagMask == epoch&tagMask {
			f, r = old>>tagBits&countMax, old>>(tagBits+countBits)
		} else if d := (old - epoch) & tagMask; old != 0 && d < 1<<(tagBits-1) {
			return // a late add (its clock read before the latest slice began) whose bucket moved on: dropped, not written over a newer slice's counts
		}
		f = uint64(min(max(int64(f)+firsts, 0), countMax))
		r = uint64(min(max(int64(r)+retries, 0), countMax))
		if bk.CompareAndSwap(old, bucketWord(epoch&tagMask, f, r)) {
			return
		}
	}
}

// advance makes epoch the latest slice counted in and clears the buckets
// that left the window: all of them when a whole window passed since the
// latest slice, else those whose slices are older than the window (their
// tags are then at most two windows old, so they cannot be mistaken).
// A concurrent add in the new slice keeps its count: buckets are cleared
// only from the values read before the head moved.
func (b *budget) advance(epoch, head uint64) {
	for since(epoch, head) > 0 {
		var seen [budgetBuckets]uint64
		for i := range b.b {
			seen[i] = b.b[i].Load()
		}
		if !b.head.CompareAndSwap(head, head&^(1<<32-1)|uint64(uint32(epoch))) {
			head = b.head.Load()
			continue
		}
		gap := since(epoch, head) >= budgetBuckets
		for i, w := range seen {
			if _, _, ok := inWindow(w, epoch); w != 0 && (gap || !ok) {
				b.b[i].CompareAndSwap(w, 0)
			}
		}
		return
	}
}

// empty reports whether the window holds nothing at now: the budget then
// allows what a fresh one would.
func (b *budget) empty(now int64) bool {
	firsts, retries := b.counts(now)
	return firsts == 0 && retries == 0
}

// withdraw takes one retry from the budget if it allows one.
func (b *budget) withdraw(p *policy.Policy, now int64) bool {
	firsts, retries := b.counts(now)
	if float64(retries)+1 > b.allowed(p, firsts) {
		return false
	}
	b.add(now, 0, 1)
	return true
}

// refund gives back a retry withdrawn at now that was not made (in the
// slice of now: a retry withdrawn in an earlier one stays counted).
func (b *budget) refund(now int64) { b.add(now, 0, -1) }

// counts sums the first attempts and retries of the window ending at now.
func (b *budget) counts(now int64) (firsts, retries int64) {
	epoch, head := b.slice(now)
	if since(epoch, head) >= budgetBuckets {
		return 0, 0 // nothing counted for a whole window
	}
	for i := range b.b {
		if f, r, ok := inWindow(b.b[i].Load(), epoch); ok {
			firsts += int64(f)
			retries += int64(r)
		}
	}
	return firsts, retries
}

// allowed is how many retries the window allows p for firsts first
// attempts.
func (b *budget) allowed(p *policy.Policy, firsts int64) float64 {
	return p.BudgetRatio*float64(firsts) + p.BudgetMinRetriesPerSec*p.BudgetWindow.Seconds()
}
