package main

import (
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/athomic-go/rtx/policy"
)

// seconds converts a hand-computed figure to a duration.
func seconds(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }

// figures are hand-computed from DESIGN's delay formula,
//
//	base_n  = min(wait_max, wait_min * backoff^(n-1))
//	delay_n = max(wait_min, base_n * (1 - jitter*U)),
//
// with U -> 1 for the minimum, 0.5 for the median and 0 for the maximum,
// and cumulative sums of them (no per-attempt timeout in the seed).
type figures struct {
	min, median, max     []float64 // per retry, seconds
	best, typical, worst []float64 // when each retry starts, seconds
	giveUp               [3]float64
}

var seedFigures = map[string]figures{
	// 3 attempts, 1..10 s, backoff 2, full jitter.
	// retry 1: base 1         -> min 1, median max(1, 0.5) = 1, max 1
	// retry 2: base 2         -> min 1, median max(1, 1)   = 1, max 2
	"default": {
		min: []float64{1, 1}, median: []float64{1, 1}, max: []float64{1, 2},
		best: []float64{1, 2}, typical: []float64{1, 2}, worst: []float64{1, 3},
		giveUp: [3]float64{2, 2, 3},
	},
	// 3 attempts, 0.1..1 s, backoff 1.5, full jitter.
	// retry 1: base 0.1       -> 0.1, 0.1, 0.1
	// retry 2: base 0.15      -> min 0.1, median max(0.1, 0.075) = 0.1, max 0.15
	"fast_retry": {
		min: []float64{0.1, 0.1}, median: []float64{0.1, 0.1}, max: []float64{0.1, 0.15},
		best: []float64{0.1, 0.2}, typical: []float64{0.1, 0.2}, worst: []float64{0.1, 0.25},
		giveUp: [3]float64{0.2, 0.2, 0.25},
	},
	// 10 attempts, 5..300 s, backoff 2, full jitter.
	// bases 5, 10, 20, 40, 80, 160, then 320 capped to 300 for retries 7-9;
	// min is always wait_min = 5; median = max(5, base/2).
	"long_retry": {
		min:     []float64{5, 5, 5, 5, 5, 5, 5, 5, 5},
		median:  []float64{5, 5, 10, 20, 40, 80, 150, 150, 150},
		max:     []float64{5, 10, 20, 40, 80, 160, 300, 300, 300},
		best:    []float64{5, 10, 15, 20, 25, 30, 35, 40, 45},
		typical: []float64{5, 10, 20, 40, 80, 160, 310, 460, 610},
		worst:   []float64{5, 15, 35, 75, 155, 315, 615, 915, 1215},
		giveUp:  [3]float64{45, 610, 1215},
	},
}

func loadSeed(t *testing.T) *policy.Snapshot {
	t.Helper()
	f, err := policy.LoadFile("testdata/seed.toml", policy.WithEnv(""))
	if err != nil {
		t.Fatal(err)
	}
	return f.Snapshot()
}

func near(got time.Duration, want float64) bool {
	d := got - seconds(want)
	return d > -time.Microsecond && d < time.Microsecond
}

func TestScheduleSeedFigures(t *testing.T) {
	snap := loadSeed(t)
	for name, want := range seedFigures {
		p, err := snap.Policy(name)
		if err != nil {
			t.Fatal(err)
		}
		s := newSchedule(name, p)
		if len(s.Steps) != len(want.max) {
			t.Fatalf("%s: %d retries, want %d", name, len(s.Steps), len(want.max))
		}
		for i, st := range s.Steps {
			check := func(what string, got time.Duration, w float64) {
				t.Helper()
				if !near(got, w) {
					t.Errorf("%s retry %d: %s = %v, want %vs", name, i+1, what, got, w)
				}
			}
			check("min", st.Min, want.min[i])
			check("median", st.Median, want.median[i])
			check("max", st.Max, want.max[i])
			check("best", st.Best, want.best[i])
			check("typical", st.Typical, want.typical[i])
			check("worst", st.Worst, want.worst[i])
		}
		for i, got := range []time.Duration{s.GiveUpBest, s.GiveUpTypical, s.GiveUpWorst} {
			if !near(got, want.giveUp[i]) {
				t.Errorf("%s: give up [%d] = %v, want %vs", name, i, got, want.giveUp[i])
			}
		}
		if !s.Unbounded {
			t.Errorf("%s: no timeout in the seed, want Unbounded", name)
		}
	}
}

func TestScheduleWithTimeout(t *testing.T) {
	// 3 attempts, 1..10 s, backoff 2, no jitter, 2.5 s per attempt:
	// delays 1, 2; worst: retry 1 at 2.5+1 = 3.5, retry 2 at 3.5+2.5+2 = 8,
	// gives up at 8+2.5 = 10.5; best and typical are the delays alone.
	p := policy.Default()
	p.Jitter, p.Timeout = 0, 2500*time.Millisecond
	s := newSchedule("t", p)
	if s.Unbounded {
		t.Error("Unbounded with a timeout")
	}
	for i, w := range []float64{3.5, 8} {
		if !near(s.Steps[i].Worst, w) {
			t.Errorf("retry %d worst = %v, want %vs", i+1, s.Steps[i].Worst, w)
		}
	}
	if !near(s.GiveUpWorst, 10.5) || !near(s.GiveUpBest, 3) || !near(s.GiveUpTypical, 3) {
		t.Errorf("give up = %v/%v/%v, want 3s/3s/10.5s", s.GiveUpBest, s.GiveUpTypical, s.GiveUpWorst)
	}
}

// planBlock returns one policy's block of plan's output.
func planBlock(t *testing.T, out, name string) string {
	t.Helper()
	i := strings.Index(out, "\n"+name+": ")
	if i < 0 {
		t.Fatalf("no block for %s in:\n%s", name, out)
	}
	block := out[i+1:]
	// The block ends where the next policy's starts: a blank line
	// followed by an unindented one.
	for j := strings.Index(block, "\n\n"); j >= 0; {
		if j+2 < len(block) && block[j+2] != ' ' {
			block = block[:j]
			break
		}
		k := strings.Index(block[j+2:], "\n\n")
		if k < 0 {
			break
		}
		j += 2 + k
	}
	return block
}

func TestPlanSeedOutput(t *testing.T) {
	r := run(t, "plan", "--config", "testdata/seed.toml", "--env", "default")
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stderr, r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("line of %d columns: %q", n, line)
		}
	}
	// The table rows, hand-formatted from seedFigures.
	rows := map[string][]string{
		"default": {
			"1 1s 1s 1s 1s 1s 1s*",
			"2 1s 1s 2s 2s 2s 3s*",
			"gives up after 2s 2s 3s*",
		},
		"fast_retry": {
			"1 100ms 100ms 100ms 100ms 100ms 100ms*",
			"2 100ms 100ms 150ms 200ms 200ms 250ms*",
			"gives up after 200ms 200ms 250ms*",
		},
		"long_retry": {
			"1 5s 5s 5s 5s 5s 5s*",
			"2 5s 5s 10s 10s 10s 15s*",
			"3 5s 10s 20s 15s 20s 35s*",
			"4 5s 20s 40s 20s 40s 1m15s*",
			"5 5s 40s 1m20s 25s 1m20s 2m35s*",
			"6 5s 1m20s 2m40s 30s 2m40s 5m15s*",
			"7 5s 2m30s 5m 35s 5m10s 10m15s*",
			"8 5s 2m30s 5m 40s 7m40s 15m15s*",
			"9 5s 2m30s 5m 45s 10m10s 20m15s*",
			"gives up after 45s 10m10s 20m15s*",
		},
	}
	for name, want := range rows {
		block := planBlock(t, r.stdout, name)
		var got []string
		for _, line := range strings.Split(block, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && (strings.HasSuffix(line, "*") || strings.HasPrefix(strings.TrimSpace(line), "gives up")) {
				got = append(got, strings.Join(f, " "))
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s rows:\n%s\nwant:\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if !strings.Contains(block, "attempt time not counted") {
			t.Errorf("%s: no timeout, but the block does not flag it:\n%s", name, block)
		}
		if !strings.Contains(strings.Join(strings.Fields(block), " "), "POST, PATCH retried only when never sent") {
			t.Errorf("%s: POST rule missing:\n%s", name, block)
		}
	}
	flat := func(name string) string { return strings.Join(strings.Fields(planBlock(t, r.stdout, name)), " ") }
	for name, want := range map[string][]string{
		"fast_retry": {"retries HTTPException (every class: HTTPRequestError, ConnectionError, HTTPTimeoutError)"},
		"default":    {"retries HTTPRequestError (with ConnectionError); HTTPTimeoutError", "408, 429, 5xx (not 501, 505): retried"},
		"long_retry": {
			"retries ConnectionError",
			"not retried HTTPRequestError other than ConnectionError; HTTPTimeoutError",
			"408, 429, 5xx: not retried",
			"[no-timeout]", "[capped]", "retries 7-9 all wait up to 5m",
		},
	} {
		for _, w := range want {
			if !strings.Contains(flat(name), w) {
				t.Errorf("%s: missing %q in:\n%s", name, w, planBlock(t, r.stdout, name))
			}
		}
	}
}

func TestPlanOnePolicyAndEnv(t *testing.T) {
	path := writeSettings(t, `
[default.resilience.retry.policies.fast_retry]
attempts = 3
wait_min_seconds = 0.1
wait_max_seconds = 1.0
backoff = 1.5
[default.resilience.retry.policies.other]
attempts = 2
[production.resilience.retry.policies.fast_retry]
attempts = 5
timeout_seconds = 1
`)
	r := run(t, "plan", "--config", path, "--env", "production", "--policy", "fast_retry")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "other:") || strings.Contains(r.stdout, "default:") {
		t.Errorf("--policy shows other policies:\n%s", r.stdout)
	}
	// production: 5 attempts, timeout 1 s. Retry 3: base 0.225, median
	// max(0.1, 0.1125) = 0.1125; retry 4: base 0.3375, median 0.16875.
	// Worst gives up at 5*1 + 0.1 + 0.15 + 0.225 + 0.3375 = 5.8125 s.
	for _, w := range []string{
		"fast_retry: 5 attempts", "timeout 1s",
		"3 100ms 112.5ms 225ms", "4 100ms 168.75ms 337.5ms",
		"gives up after 400ms 481.25ms 5.8125s",
	} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), w) {
			t.Errorf("missing %q in:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "*") {
		t.Errorf("timeout set, but attempt time is flagged:\n%s", r.stdout)
	}
}

func TestPlanMeshAndOneAttempt(t *testing.T) {
	path := writeSettings(t, `
[default]
deployment_mode = "mesh"
[default.resilience.retry.policies.fast_retry]
jitter = 0
`)
	r := run(t, "plan", "--config", path)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, w := range []string{"mesh", "fast_retry: 1 attempt", "one attempt: no retries"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("missing %q in:\n%s", w, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "warning") {
		t.Errorf("a one-attempt policy has nothing to warn about:\n%s", r.stdout)
	}
}

func TestPlanDefaultConfigInWorkingDir(t *testing.T) {
	seed, err := os.ReadFile("testdata/seed.toml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "settings.toml"), seed, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	r := run(t, "plan")
	if r.code != 0 || !strings.Contains(r.stdout, "settings settings.toml") {
		t.Errorf("exit %d, stdout:\n%s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

func TestPlanErrors(t *testing.T) {
	r := run(t, "plan", "--config", "testdata/broken.toml")
	if r.code != 1 {
		t.Errorf("broken file: exit %d, want 1", r.code)
	}
	if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), `testdata/broken.toml: retry policy "slow": wait_min_seconds (2) > wait_max_seconds (1)`) {
		t.Errorf("load error does not name file, policy and field:\n%s", r.stdout)
	}
	r = run(t, "plan", "--config", "testdata/seed.toml", "--policy", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, "fast_retry") {
		t.Errorf("unknown policy: exit %d, stderr %q: want 1 and the known names", r.code, r.stderr)
	}
	r = run(t, "plan", "--config", "testdata/missing.toml")
	if r.code != 1 || !strings.Contains(r.stdout, "testdata/missing.toml") {
		t.Errorf("missing file: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestPlanSVGAndPNG(t *testing.T) {
	dir := t.TempDir()
	svgPath, pngPath := filepath.Join(dir, "plan.svg"), filepath.Join(dir, "plan.png")
	r := run(t, "plan", "--config", "testdata/seed.toml", "--svg", svgPath)
	if r.code != 0 || !strings.Contains(r.stderr, "wrote "+svgPath) {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// One policy only for the PNG: rasterizing text is slow under -race.
	r = run(t, "plan", "--config", "testdata/seed.toml", "--policy", "fast_retry", "--png", pngPath)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	f, err := os.Open(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	var root string
	texts := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "text" {
				texts++
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	if texts == 0 {
		t.Error("SVG has no text: titles and labels missing")
	}
	raw, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"rtx plan: settings testdata/seed.toml, environment default",
		"default: 3 attempts, wait 1s..10s",
		"fast_retry: 3 attempts, wait 100ms..1s",
		"long_retry: 10 attempts, wait 5s..5m",
		"(here the same as best)",                           // default and fast_retry: typical = best, and the legend says so
		"warning: gives up after 20m15s of delays at worst", // the warnings are on the picture
		"[capped]",
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("SVG has no %q", want)
		}
	}

	pf, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	img, err := png.Decode(pf)
	if err != nil {
		t.Fatalf("PNG does not decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 250 {
		t.Errorf("PNG is %v, too small to read", b)
	}
}

func TestChartUnknownFormat(t *testing.T) {
	snap := loadSeed(t)
	p, _ := snap.Policy("")
	if err := writeChart(io.Discard, "gif", "x", []chartRow{{Schedule: newSchedule("default", p)}}); err == nil {
		t.Error("gif: no error")
	}
	one := *p
	one.Attempts = 1
	if err := writeChart(io.Discard, "svg", "x", []chartRow{{Schedule: newSchedule("one", &one)}}); err != nil {
		t.Errorf("one-attempt policy: %v", err)
	}
}

func TestDurationTicks(t *testing.T) {
	for _, tc := range []struct {
		lo, hi float64
		want   string
	}{
		{0.06, 0.4, "100ms 200ms"},
		{0.6, 4.8, "1s 2s"},
		{3, 1900, "5s 10s 30s 1m 2m 5m 10m 30m"},
	} {
		var labels []string
		minor := 0
		for _, tk := range (durationTicks{}).Ticks(tc.lo, tc.hi) {
			if tk.Value < tc.lo || tk.Value > tc.hi {
				t.Errorf("%v..%v: tick %v outside the axis", tc.lo, tc.hi, tk.Value)
			}
			if tk.Label != "" {
				labels = append(labels, tk.Label)
			} else {
				minor++
			}
		}
		if got := strings.Join(labels, " "); got != tc.want {
			t.Errorf("%v..%v: labels %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
		if minor == 0 {
			t.Errorf("%v..%v: no minor ticks", tc.lo, tc.hi)
		}
	}
}
