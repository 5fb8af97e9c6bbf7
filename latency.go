package rtx

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// Latency sketches: what a quantile hedge delay is computed from.
const (
	latencyWindow     = time.Second // a sketch covers at most this long; the delay uses the last two
	latencyWindowMax  = 1000        // ... or this many samples, so busy upstreams adapt faster
	latencyMinSamples = 100         // below this, the policy's hedge_delay_seconds is the delay
	latencyAccuracy   = 0.02        // relative accuracy of the quantiles
	latencyMaxBins    = 256         // bounds a sketch's memory; the lowest bins collapse first
	latencyRefresh    = 16          // samples between recomputations of the delay
	hedgeLoadFactor   = 1.5         // hedges stay under this times (1 - hedge_quantile) of attempts
)

// latency keeps an upstream's recent latencies of answered attempts under
// one policy in DDSketch quantile sketches: the current window and the one
// before, so that a shift shows within two windows. The delay in force is
// computed from both every few samples and read without a lock.
//
// Attempts cancelled as losers are not latencies: they are counted as
// stragglers instead. Their share s shapes the quantile taken: with q the
// policy's hedge_quantile, an attempt unanswered at the q-quantile of
// answered ones is hedged, which with stragglers hedges s + (1-s)(1-q) of
// attempts; the quantile rises as needed to keep that under
// hedgeLoadFactor * (1-q).
type latency struct {
	mu           sync.Mutex
	cur, prev    *ddsketch.DDSketch
	scratch      *ddsketch.DDSketch
	started      int64  // when cur began, engine time (see engine.clock)
	firsts, lost [2]int // primaries landed and cancelled as losers: current, previous window
	sinceCalc    int

	quantile float64
	delay    atomic.Int64                   // the quantile, in nanoseconds; 0 until enough samples
	summary  atomic.Pointer[latencySummary] // for the debug page: read without a lock
}

// summaryQuantiles are the quantiles a latency summary holds.
var summaryQuantiles = []float64{0.5, 0.9, 0.95, 0.99}

// latencySummary is what the sketches said at the last recomputation.
type latencySummary struct {
	samples float64
	q       [4]float64 // summaryQuantiles, in seconds
}

func newLatency(q float64) *latency {
	mk := func() *ddsketch.DDSketch {
		s, _ := ddsketch.LogCollapsingLowestDenseDDSketch(latencyAccuracy, latencyMaxBins) // only fails on an invalid accuracy
		return s
	}
	return &latency{cur: mk(), prev: mk(), scratch: mk(), quantile: q}
}

// add records a landed primary (not hedge) attempt: its latency, or, when
// it was cancelled as a loser, that it straggled. Hedges that answered
// add their latency with primary false.
func (l *latency) add(d time.Duration, primary, cancelled bool, now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now-l.started > int64(latencyWindow) || l.cur.GetCount() >= latencyWindowMax {
		l.prev, l.cur = l.cur, l.prev
		l.cur.Clear()
		l.firsts[1], l.lost[1] = l.firsts[0], l.lost[0]
		l.firsts[0], l.lost[0] = 0, 0
		if now-l.started > 2*int64(latencyWindow) {
			l.prev.Clear() // nothing recent in it
			l.firsts[1], l.lost[1] = 0, 0
		}
		l.started = now
		l.sinceCalc = latencyRefresh
	}
	if primary {
		l.firsts[0]++
		if cancelled {
			l.lost[0]++
		}
	}
	if !cancelled {
		l.cur.Add(max(d.Seconds(), 1e-6))
	}
	if l.sinceCalc++; l.sinceCalc >= latencyRefresh {
		l.sinceCalc = 0
		l.recompute()
	}
}

// recompute sets the delay, and the summary, from both windows. Must be
// called with l.mu held.
func (l *latency) recompute() {
	l.scratch.Clear()
	l.scratch.MergeWith(l.prev)
	l.scratch.MergeWith(l.cur)
	n := l.scratch.GetCount()
	if n == 0 {
		l.summary.Store(nil)
	} else if vs, err := l.scratch.GetValuesAtQuantiles(summaryQuantiles); err == nil {
		sum := &latencySummary{samples: n}
		copy(sum.q[:], vs)
		l.summary.Store(sum)
	}
	if n < latencyMinSamples {
		l.delay.Store(0)
		return
	}
	if v, err := l.scratch.GetValueAtQuantile(l.effective()); err == nil {
		l.delay.Store(int64(v * float64(time.Second)))
	}
}

// effective returns the quantile of answered latencies to hedge at: the
// policy's, raised so that stragglers and hedged answers together stay
// under the load bound. Must be called with l.mu held.
func (l *latency) effective() float64 {
	q := l.quantile
	firsts := l.firsts[0] + l.firsts[1]
	if firsts == 0 {
		return q
	}
	s := float64(l.lost[0]+l.lost[1]) / float64(firsts)
	bound := hedgeLoadFactor * (1 - q)
	if s >= bound || s >= 1 {
		return q // stragglers alone pass the bound: hedging them is the point, the budget caps it
	}
	return max(q, 1-(bound-s)/(1-s))
}

// idle reports whether the sketch holds nothing recent.
func (l *latency) idle(now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now-l.started > 2*int64(latencyWindow)
}
