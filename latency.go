package rtx

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/DataDog/sketches-go/ddsketch"
)

// Latency sketches: what a quantile hedge delay is computed from.
const (
	latencyWindow     = time.Second // each sketch covers this long; the delay uses the last two
	latencyMinSamples = 100         // below this, the policy's hedge_delay_seconds is the delay
	latencyAccuracy   = 0.02        // relative accuracy of the quantiles
	latencyMaxBins    = 256         // bounds a sketch's memory; the lowest bins collapse first
	latencyRefresh    = 16          // samples between recomputations of the delay
)

// latency keeps an upstream's recent attempt latencies under one policy in
// DDSketch quantile sketches: the current window and the one before, so
// that a shift shows within two windows. The delay in force is computed
// from both every few samples and read without a lock.
type latency struct {
	mu        sync.Mutex
	cur, prev *ddsketch.DDSketch
	scratch   *ddsketch.DDSketch
	started   int64 // when cur began, unix nanoseconds
	sinceCalc int

	quantile float64
	delay    atomic.Int64 // the quantile, in nanoseconds; 0 until enough samples
}

func newLatency(q float64) *latency {
	mk := func() *ddsketch.DDSketch {
		s, _ := ddsketch.LogCollapsingLowestDenseDDSketch(latencyAccuracy, latencyMaxBins) // only fails on an invalid accuracy
		return s
	}
	return &latency{cur: mk(), prev: mk(), scratch: mk(), quantile: q}
}

// add records one attempt's latency at now.
func (l *latency) add(d time.Duration, now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now-l.started > int64(latencyWindow) {
		l.prev, l.cur = l.cur, l.prev
		l.cur.Clear()
		if now-l.started > 2*int64(latencyWindow) {
			l.prev.Clear() // nothing recent in it
		}
		l.started = now
		l.sinceCalc = latencyRefresh
	}
	l.cur.Add(max(d.Seconds(), 1e-6))
	if l.sinceCalc++; l.sinceCalc >= latencyRefresh {
		l.sinceCalc = 0
		l.recompute()
	}
}

// recompute sets the delay from both windows. Must be called with l.mu held.
func (l *latency) recompute() {
	l.scratch.Clear()
	l.scratch.MergeWith(l.prev)
	l.scratch.MergeWith(l.cur)
	if l.scratch.GetCount() < latencyMinSamples {
		l.delay.Store(0)
		return
	}
	v, err := l.scratch.GetValueAtQuantile(l.quantile)
	if err != nil {
		return
	}
	l.delay.Store(int64(v * float64(time.Second)))
}

// quantiles returns the given quantiles of the recent window, for the
// debug page, and how many samples they rest on.
func (l *latency) quantiles(qs []float64) ([]float64, float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.scratch.Clear()
	l.scratch.MergeWith(l.prev)
	l.scratch.MergeWith(l.cur)
	n := l.scratch.GetCount()
	if n == 0 {
		return nil, 0
	}
	vs, err := l.scratch.GetValuesAtQuantiles(qs)
	if err != nil {
		return nil, 0
	}
	return vs, n
}

// idle reports whether the sketch holds nothing recent.
func (l *latency) idle(now int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now-l.started > 2*int64(latencyWindow)
}
