package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athomic-go/rtx/policy"
)

const hedgeSettings = `
[default.resilience.retry.policies.quantile]
attempts = 3
timeout_seconds = 2
hedge_delay_seconds = 0.05
hedge_quantile = 0.95

[default.resilience.retry.policies.fixed]
attempts = 4
timeout_seconds = 2
hedge_delay_seconds = 0.2
max_hedges = 2
budget_ratio = -1

[default.resilience.retry.policies.nofloor]
attempts = 2
timeout_seconds = 2
hedge_delay_seconds = 1.5
hedge_quantile = 0.99
budget_ratio = 0.1
budget_min_retries_per_sec = 0
budget_window_seconds = 5

[default.resilience.retry.policies.plain]
attempts = 3
timeout_seconds = 2
`

// flat joins a text's words with single spaces, so that wrapped lines
// compare as one.
func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestHedgeNotes(t *testing.T) {
	f, err := policy.LoadFile(writeSettings(t, hedgeSettings), policy.WithEnv(""))
	if err != nil {
		t.Fatal(err)
	}
	snap := f.Snapshot()
	for _, tc := range []struct {
		name      string
		want, not []string
	}{
		{"quantile", []string{
			"hedge after: the 0.95 quantile of the upstream's recent answered-attempt latencies, at least 50ms; 50ms until 100 samples",
			"hedges: up to 2 copies of a slow request at once and 3 in all (max_hedges 1)",
			// attempts 3: 3 copies in all, so 2 extra per request.
			"worst load: 2x extra attempts per request",
			"the retry budget caps them at 20% of the policy's first attempts to the upstream over any 10s, plus 10 a second",
			// 1 - 0.95 = 5%; 1.5 x 5% = 7.5%.
			"expected: about 5% of attempts hedged (1-0.95), kept under 7.5% (1.5 x (1-0.95))",
		}, nil},
		{"fixed", []string{
			"hedge after: 200ms without an answer",
			"up to 3 copies of a slow request at once and 4 in all (max_hedges 2)",
			"worst load: 3x extra attempts per request",
			"no retry budget (budget_ratio = -1): nothing caps them across requests",
			"expected: a hedge for each attempt unanswered after 200ms, another after each further 200ms, up to 2",
		}, []string{"quantile", "kept under"}},
		{"nofloor", []string{
			"the 0.99 quantile", "at least 1.5s; 1.5s until 100 samples",
			// attempts 2, max_hedges 1: both copies at once, 1 extra.
			"up to 2 copies of a slow request at once and 2 in all",
			"worst load: 1x extra attempts per request",
			"caps them at 10% of the policy's first attempts to the upstream over any 5s",
			"about 1% of attempts hedged (1-0.99), kept under 1.5% (1.5 x (1-0.99))",
		}, []string{"a second"}},
	} {
		p, err := snap.Policy(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, n := range hedgeNotes(p) {
			lines = append(lines, n.Key+": "+n.Text)
		}
		got := strings.Join(lines, "\n")
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: missing %q in:\n%s", tc.name, w, got)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(got, w) {
				t.Errorf("%s: has %q:\n%s", tc.name, w, got)
			}
		}
	}
	p, err := snap.Policy("plain")
	if err != nil {
		t.Fatal(err)
	}
	if n := hedgeNotes(p); n != nil {
		t.Errorf("a policy that does not hedge has notes %v", n)
	}
}

func TestPlanShowsHedging(t *testing.T) {
	path := writeSettings(t, hedgeSettings)
	svg := filepath.Join(t.TempDir(), "plan.svg")
	r := run(t, "plan", "--config", path, "--svg", svg)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	block := flat(planBlock(t, r.stdout, "quantile"))
	for _, w := range []string{
		"hedge after the 0.95 quantile of the upstream's recent answered-attempt latencies",
		"hedges up to 2 copies",
		"worst load 2x extra attempts per request",
		"expected about 5% of attempts hedged",
	} {
		if !strings.Contains(block, w) {
			t.Errorf("quantile: missing %q in:\n%s", w, block)
		}
	}
	for _, name := range []string{"default", "plain"} {
		if b := planBlock(t, r.stdout, name); strings.Contains(b, "hedge") {
			t.Errorf("%s does not hedge, yet plan says:\n%s", name, b)
		}
	}
	raw, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"hedge after: 200ms without an answer", "worst load: 3x extra attempts per request"} {
		if !strings.Contains(string(raw), w) {
			t.Errorf("SVG has no %q", w)
		}
	}

	// In mesh mode every policy is one attempt: nothing is hedged.
	mesh := writeSettings(t, "[default]\ndeployment_mode = \"mesh\"\n"+hedgeSettings)
	r = run(t, "plan", "--config", mesh, "--policy", "quantile")
	if r.code != 0 || strings.Contains(r.stdout, "hedge") {
		t.Errorf("mesh: exit %d, plan shows hedging:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
