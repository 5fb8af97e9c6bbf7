package hedge

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestLatency checks the draw: deterministic per (seed, request, attempt),
// different between attempts, and the distribution the scenario promises.
func TestLatency(t *testing.T) {
	cfg := DefaultConfig()
	if a, b := cfg.Latency(cfg.Median, 7, 1), cfg.Latency(cfg.Median, 7, 1); a != b {
		t.Fatalf("same draw gave %v and %v", a, b)
	}
	if a, b := cfg.Latency(cfg.Median, 7, 1), cfg.Latency(cfg.Median, 7, 2); a == b {
		t.Fatalf("attempts 1 and 2 drew the same latency %v", a)
	}
	other := cfg
	other.Seed++
	if a, b := cfg.Latency(cfg.Median, 7, 1), other.Latency(cfg.Median, 7, 1); a == b {
		t.Fatalf("seeds %d and %d drew the same latency %v", cfg.Seed, other.Seed, a)
	}
	const n = 100000
	fast := make([]time.Duration, 0, n)
	slow := 0
	for id := range n {
		d := cfg.Latency(cfg.Median, id, 1)
		if d >= cfg.SlowExtra {
			slow++
			d -= cfg.SlowExtra
		}
		fast = append(fast, d)
	}
	slices.Sort(fast)
	if med := fast[n/2]; math.Abs(float64(med-cfg.Median)) > 0.02*float64(cfg.Median) {
		t.Errorf("median %v, want %v", med, cfg.Median)
	}
	// Under a lognormal, the 84th percentile is the median times exp(sigma).
	want := time.Duration(float64(cfg.Median) * math.Exp(cfg.Sigma))
	if p84 := fast[n*8413/10000]; math.Abs(float64(p84-want)) > 0.03*float64(want) {
		t.Errorf("p84 %v, want %v", p84, want)
	}
	if share := float64(slow) / n; math.Abs(share-cfg.SlowShare) > 0.003 {
		t.Errorf("straggler share %.4f, want %.2f", share, cfg.SlowShare)
	}
}

// TestRun runs the whole harness, small, for every kind: it must not rot.
// The rtx kinds are reported unavailable until rtx knows the hedge_* keys;
// once it does, they are held to the same checks as the others.
func TestRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Requests, cfg.Workers, cfg.OutageRequests = 300, 8, 40
	if testing.Short() {
		cfg.Requests, cfg.OutageRequests = 120, 24
	}
	ctx := context.Background()
	var results []Result
	for _, kind := range Kinds() {
		r, err := Run(ctx, kind, cfg)
		if err != nil {
			t.Fatalf("%s: %v", kind.Name, err)
		}
		if r.Err != nil {
			if !strings.HasPrefix(kind.Name, "rtx") {
				t.Fatalf("%s: %v", kind.Name, r.Err)
			}
			t.Logf("%s unavailable: %v", kind.Name, r.Err)
			results = append(results, r)
			continue
		}
		if r.Outage, err = RunOutage(ctx, kind, cfg); err != nil {
			t.Fatalf("%s: outage: %v", kind.Name, err)
		}
		r.OutageMeasured = true
		results = append(results, r)

		for name, p := range map[string]Phase{"steady": r.Steady, "shift": r.Shift} {
			if p.Failed > 0 {
				t.Errorf("%s, %s: %d of %d requests failed, first: %v", kind.Name, name, p.Failed, p.Requests, p.FirstErr)
			}
			if p.Attempts < int64(p.Requests) {
				t.Errorf("%s, %s: %d attempts at the server for %d requests", kind.Name, name, p.Attempts, p.Requests)
			}
			if p.P99 < cfg.Median {
				t.Errorf("%s, %s: p99 %v under the median %v", kind.Name, name, p.P99, cfg.Median)
			}
		}
		o := r.Outage
		if o.Failed != o.Requests {
			t.Errorf("%s, outage: %d of %d requests succeeded", kind.Name, o.Requests-o.Failed, o.Requests)
		}
		if a := o.Amplification(); a < 1 || a > 2*attempts {
			t.Errorf("%s, outage: %.2f attempts per request", kind.Name, a)
		}
		if o.Cancelled != o.Attempts {
			t.Errorf("%s, outage: the server saw %d of %d attempts cancelled", kind.Name, o.Cancelled, o.Attempts)
		}
		switch kind.Name {
		case NoHedging.Name:
			if r.Steady.Attempts != int64(r.Steady.Requests) || r.Shift.Attempts != int64(r.Shift.Requests) || r.Cancelled != 0 {
				t.Errorf("no hedging: %d+%d attempts for %d+%d requests, %d cancelled",
					r.Steady.Attempts, r.Shift.Attempts, r.Steady.Requests, r.Shift.Requests, r.Cancelled)
			}
			if o.Amplification() != 1 {
				t.Errorf("no hedging, outage: %.2f attempts per request", o.Amplification())
			}
		case FailsafeFixed.Name:
			// 5% stragglers alone outlast the 4 ms delay: hedges are sent,
			// and the losers' cancellations reach the server.
			if r.Steady.Extra() < 0.03 || r.Cancelled == 0 {
				t.Errorf("%s: %.1f%% extra attempts, %d cancelled at the server", kind.Name, 100*r.Steady.Extra(), r.Cancelled)
			}
		}
	}
	var md strings.Builder
	Markdown(&md, results)
	t.Logf("\n%s", md.String())
	for _, r := range results {
		if !strings.Contains(md.String(), "| "+r.Kind+" |") {
			t.Errorf("table has no row for %s", r.Kind)
		}
	}
}
