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
	tagBits   = 22 // slices apart from the current: 2^22 of them (97 days of 2 s slices) before two alias
	countBits = 21
	countMax  = 1<<countBits - 1
	tagMask   = 1<<tagBits - 1
)

// budget counts first attempts and retries over a sliding window, in
// buckets, as Finagle's and Linkerd's retry budgets do: a retry is allowed
// while retries in the window stay under ratio * first attempts plus
// minPerSec * window. Times are engine times (see engine.clock).
type budget struct {
	slice int64 // nanoseconds a bucket counts: the window / budgetBuckets, at least 1 ms
	b     [budgetBuckets]atomic.Uint64
}

// enabled reports whether the policy uses a budget at all: MESH and
// single-attempt policies never retry, so they never spend one.
func budgetEnabled(p *policy.Policy) bool {
	return p.BudgetRatio >= 0 && p.Attempts > 1 && p.BudgetWindow > 0
}

func (b *budget) init(window time.Duration) {
	b.slice = max(int64(window)/budgetBuckets, int64(time.Millisecond))
}

func bucketWord(tag, firsts, retries uint64) uint64 {
	return tag | firsts<<tagBits | retries<<(tagBits+countBits)
}

// inWindow returns the counts of bucket word w if the slice it counts is
// one of the window that ends with slice epoch.
func inWindow(w, epoch uint64) (firsts, retries uint64, ok bool) {
	if (epoch-w)&tagMask >= budgetBuckets {
		return 0, 0, false
	}
	return w >> tagBits & countMax, w >> (tagBits + countBits), true
}

// add adds to the counts of the bucket of now, which it clears first if
// it counted an older slice; retries never go below zero.
func (b *budget) add(now int64, firsts, retries int64) {
	epoch := uint64(now / b.slice)
	bk := &b.b[epoch%budgetBuckets]
	for {
		old := bk.Load()
		var f, r uint64
		if old&tagMask == epoch&tagMask {
			f, r = old>>tagBits&countMax, old>>(tagBits+countBits)
		}
		f = uint64(min(max(int64(f)+firsts, 0), countMax))
		r = uint64(min(max(int64(r)+retries, 0), countMax))
		if bk.CompareAndSwap(old, bucketWord(epoch&tagMask, f, r)) {
			return
		}
	}
}

// empty reports whether the window holds nothing at now: the budget then
// allows what a fresh one would.
func (b *budget) empty(now int64) bool {
	firsts, retries := b.counts(now)
	return firsts == 0 && retries == 0
}

// first counts a logical request's first attempt.
func (b *budget) first(now int64) { b.add(now, 1, 0) }

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
	epoch := uint64(now / b.slice)
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
