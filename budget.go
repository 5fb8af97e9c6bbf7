package rtx

import (
	"sync/atomic"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// budgetBuckets is how many slices a budget's window is counted in.
const budgetBuckets = 10

// budget counts first attempts and retries over a sliding window, in
// buckets, as Finagle's and Linkerd's retry budgets do: a retry is allowed
// while retries in the window stay under ratio * first attempts plus
// minPerSec * window.
type budget struct {
	window time.Duration
	slice  time.Duration
	b      [budgetBuckets]bucket
}

type bucket struct {
	epoch   atomic.Int64 // which slice of time the counts belong to
	firsts  atomic.Int64
	retries atomic.Int64
}

// enabled reports whether the policy uses a budget at all: MESH and
// single-attempt policies never retry, so they never spend one.
func budgetEnabled(p *policy.Policy) bool {
	return p.BudgetRatio >= 0 && p.Attempts > 1 && p.BudgetWindow > 0
}

func (b *budget) init(window time.Duration) {
	b.window = window
	b.slice = max(window/budgetBuckets, time.Millisecond)
}

// empty reports whether the window holds nothing at now: the budget then
// allows what a fresh one would.
func (b *budget) empty(now int64) bool {
	epoch := now / int64(b.slice)
	for i := range b.b {
		bk := &b.b[i]
		if e := bk.epoch.Load(); e > epoch-budgetBuckets && (bk.firsts.Load() != 0 || bk.retries.Load() != 0) {
			return false
		}
	}
	return true
}

// current returns the bucket for now, cleared if it held an older slice.
func (b *budget) current(now int64) *bucket {
	epoch := now / int64(b.slice)
	bk := &b.b[epoch%budgetBuckets]
	if old := bk.epoch.Load(); old != epoch && bk.epoch.CompareAndSwap(old, epoch) {
		bk.firsts.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// first counts a logical request's first attempt.
func (b *budget) first(now int64) { b.current(now).firsts.Add(1) }

// withdraw takes one retry from the budget if it allows one.
func (b *budget) withdraw(p *policy.Policy, now int64) bool {
	cur := b.current(now)
	firsts, retries := b.counts(cur.epoch.Load())
	if float64(retries)+1 > b.allowed(p, firsts) {
		return false
	}
	cur.retries.Add(1)
	return true
}

// refund gives back a retry withdrawn at now that was not made.
func (b *budget) refund(now int64) { b.current(now).retries.Add(-1) }

// counts sums the first attempts and retries of the window ending in the
// slice epoch.
func (b *budget) counts(epoch int64) (firsts, retries int64) {
	for i := range b.b {
		bk := &b.b[i]
		if e := bk.epoch.Load(); e > epoch-budgetBuckets && e <= epoch {
			firsts += bk.firsts.Load()
			retries += bk.retries.Load()
		}
	}
	return firsts, retries
}

// allowed is how many retries the window allows for firsts first attempts.
func (b *budget) allowed(p *policy.Policy, firsts int64) float64 {
	return p.BudgetRatio*float64(firsts) + p.BudgetMinRetriesPerSec*b.window.Seconds()
}
