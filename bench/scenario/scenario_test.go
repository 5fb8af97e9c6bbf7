package scenario

import (
	"context"
	"testing"

	"github.com/athomic-go/rtx/bench"
	"github.com/athomic-go/rtx/bench/internal/faultserver"
)

// expect works out, from a scenario's deterministic faults, what a library
// that makes cfg.Policy.Attempts tries and stops at the first healthy answer
// must achieve: logical successes and server hits.
func expect(sc Scenario, cfg Config) (ok int, hits int64) {
	for id := range cfg.Requests {
		for n := 1; n <= cfg.Policy.Attempts; n++ {
			hits++
			if sc.Fault(id, n, unit(cfg.Seed, uint64(id), uint64(n))) == faultserver.None {
				ok++
				break
			}
		}
	}
	return ok, hits
}

// TestScenarios runs every scenario, small, through every retrying library:
// each must make exactly the attempts the policy allows, succeed exactly when
// some attempt was healthy, and, when it drains what it discards, reuse its
// connections.
func TestScenarios(t *testing.T) {
	cfg := Config{Requests: 40, Workers: 4, Policy: bench.DefaultPolicy, Seed: 7}
	for _, sc := range Scenarios {
		wantOK, wantHits := expect(sc, cfg)
		for _, lib := range libs() {
			t.Run(sc.Name+"/"+lib.Name, func(t *testing.T) {
				r, err := Run(context.Background(), lib, sc, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("ok %d/%d hits %d conns %d p50 %v p99 %v", r.OK, r.Requests, r.Hits, r.Conns, r.P50, r.P99)
				if r.OK != wantOK || r.Hits != wantHits {
					t.Errorf("ok %d, hits %d; want ok %d, hits %d", r.OK, r.Hits, wantOK, wantHits)
				}
				if lib.Name != "rtx" {
					// failsafe-go leaves discarded responses open and
					// go-retryablehttp closes the idle connections of a
					// transport it does not own when it gives up: their
					// connection counts are findings, not checks.
					return
				}
				// Each healthy or drained answer leaves its connection reusable;
				// a reset or a timed-out attempt costs one. A connection that
				// goes back to the pool just after the next request asked
				// for one costs an extra dial, hence the slack.
				lost := int64(0)
				if sc.Name == "20% conn reset" || sc.Name == "20% slow (300ms)" {
					lost = wantHits - int64(wantOK)
				}
				if max := 2*int64(cfg.Workers) + lost; r.Conns > max {
					t.Errorf("%d TCP connections, want at most %d", r.Conns, max)
				}
			})
		}
	}
}

// libs is bench.Retrying without the libraries that are not built.
func libs() []bench.Library {
	var out []bench.Library
	for _, l := range bench.Retrying() {
		if _, err := l.New(bench.NewBase(), bench.DefaultPolicy); err == nil {
			out = append(out, l)
		}
	}
	return out
}
