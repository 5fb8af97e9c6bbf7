package hedge

import (
	"math"
	"testing"
)

// The law's p99 without hedging is the no-hedging client's (measured
// 43.7 ms steady and 47.4 ms over the run with the overhead of the
// loopback), and the bound moves the right way with the load.
func TestBounds(t *testing.T) {
	cfg := DefaultConfig()
	law := phaseLaw{median: cfg.Median.Seconds(), sigma: cfg.Sigma, slowShare: cfg.SlowShare, slowExtra: cfg.SlowExtra.Seconds()}
	p99 := solve(law.tail, 0.01)
	if math.Abs(p99-0.0430) > 0.0005 {
		t.Errorf("unhedged steady p99 = %.4f s, want about 0.0430", p99)
	}
	b8, b20 := cfg.Bounds(0.08), cfg.Bounds(0.20)
	t.Logf("at 8%%: steady %.1f ms (delay %.1f ms), after the shift %.1f ms, run %.1f ms; at 20%%: %.1f / %.1f / %.1f ms",
		1e3*b8.Steady, 1e3*b8.SteadyDelay, 1e3*b8.Shift, 1e3*b8.Run, 1e3*b20.Steady, 1e3*b20.Shift, 1e3*b20.Run)
	if !(b20.Steady < b8.Steady && b20.Shift < b8.Shift && b20.Run < b8.Run) {
		t.Error("more load must allow a lower p99")
	}
	if b8.Steady < cfg.Median.Seconds() || b8.Run < b8.Steady {
		t.Errorf("bounds out of order: %+v", b8)
	}
}
