package hedge

import "math"

// Bound is the best p99 any single hedge could give on the scenario's
// distribution with no overhead: every attempt's latency exactly as drawn
// (Config.Latency's law), each request hedged once after a delay chosen
// with perfect knowledge of that law, per phase, so that the extra
// attempts stay within maxExtra. It is what the targets can be held
// against: a measured p99 also pays the client's and server's own time.
type Bound struct {
	Steady, Shift, Run float64 // p99 in seconds: steady phase, after the shift, both phases
	SteadyDelay        float64 // the delay that gives Steady, in seconds
}

// Bounds computes the Bound of c at maxExtra (0.08 for the 8%).
func (c Config) Bounds(maxExtra float64) Bound {
	steady := phaseLaw{median: c.Median.Seconds(), sigma: c.Sigma, slowShare: c.SlowShare, slowExtra: c.SlowExtra.Seconds()}
	shifted := steady
	shifted.median *= c.Shift
	var b Bound
	d := steady.delayFor(maxExtra)
	b.SteadyDelay = d
	b.Steady = solve(func(x float64) float64 { return steady.hedgedTail(d, x) }, 0.01)
	b.Shift = solve(func(x float64) float64 { return shifted.hedgedTail(shifted.delayFor(maxExtra), x) }, 0.01)
	// The run, half at each median: the load may be spent unevenly between
	// the halves, as long as it averages maxExtra.
	b.Run = math.Inf(1)
	for i := 1; i < 400; i++ {
		ls := 2 * maxExtra * float64(i) / 400 // the steady half's share
		if ls < steady.tail(math.Inf(1))+1e-9 || 2*maxExtra-ls < shifted.tail(math.Inf(1))+1e-9 {
			continue // a half cannot hedge less than its stragglers need... nor that little
		}
		ds, dh := steady.delayFor(ls), shifted.delayFor(2*maxExtra-ls)
		x := solve(func(x float64) float64 { return (steady.hedgedTail(ds, x) + shifted.hedgedTail(dh, x)) / 2 }, 0.01)
		b.Run = min(b.Run, x)
	}
	return b
}

// phaseLaw is the law of an attempt's latency in one phase: lognormal
// around median, plus slowExtra for a slowShare of attempts.
type phaseLaw struct{ median, sigma, slowShare, slowExtra float64 }

// tail is P(latency > x).
func (p phaseLaw) tail(x float64) float64 {
	logn := func(x float64) float64 {
		if x <= 0 {
			return 1
		}
		return 0.5 * math.Erfc(math.Log(x/p.median)/p.sigma/math.Sqrt2)
	}
	return (1-p.slowShare)*logn(x) + p.slowShare*logn(x-p.slowExtra)
}

// hedgedTail is P(answer > x) when a hedge goes after d: both copies must
// be later than x.
func (p phaseLaw) hedgedTail(d, x float64) float64 {
	if x <= d {
		return p.tail(x)
	}
	return p.tail(x) * p.tail(x-d)
}

// delayFor is the shortest delay that hedges at most a share extra of
// requests.
func (p phaseLaw) delayFor(extra float64) float64 {
	lo, hi := 0.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if p.tail(mid) > extra {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// solve returns the x where the decreasing tail crosses share.
func solve(tail func(float64) float64, share float64) float64 {
	lo, hi := 0.0, 10.0
	for range 100 {
		mid := (lo + hi) / 2
		if tail(mid) > share {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}
