package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHedgingAndMinimums(t *testing.T) {
	const pfx = "[default.resilience.retry.policies.h]\n"
	f := load(t, pfx+"attempts = 3\nhedge_delay_seconds = 0.05\nhedge_quantile = 0.95\n"+
		"[default.resilience.retry.policies.plain]\nattempts = 3\n")
	h, _ := f.Policy("h")
	if !h.Hedges() || h.HedgeDelay != 50*time.Millisecond || h.HedgeQuantile != 0.95 || h.MaxHedges != 1 {
		t.Errorf("h = %+v, want hedging every 50ms, q 0.95, 1 hedge by default", h)
	}
	if p, _ := f.Policy("plain"); p.Hedges() || p.MaxHedges != 0 {
		t.Errorf("plain hedges: %+v", p)
	}
	changed, err := f.Update([]byte(pfx+"attempts = 3\nhedge_delay_seconds = 0.05\nhedge_quantile = 0.9\n[default.resilience.retry.policies.plain]\nattempts = 3\n"), "toml", "live")
	if err != nil || !slices.Equal(changed, []string{"h"}) {
		t.Errorf("a hedging change: %v, %v", changed, err)
	}
	mesh := load(t, "[default]\ndeployment_mode = \"mesh\"\n"+pfx+"attempts = 3\nhedge_delay_seconds = 0.05\n")
	if p, _ := mesh.Policy("h"); p.Hedges() || p.Attempts != 1 {
		t.Errorf("mesh must not hedge: %+v", p)
	}
	for _, tc := range []struct{ body, want string }{
		{"timeout_seconds = 1e-10", "timeout_seconds (1e-10) is below 1ns"},
		{"timeout_seconds = 0.0005", "timeout_seconds must be 0 (off) or at least 0.001 (1 ms), got 0.0005"},
		{"wait_min_seconds = 1e-12", "wait_min_seconds (1e-12) is below 1ns"},
		{"hedge_delay_seconds = 0.0001", "hedge_delay_seconds must be 0 (off) or at least 0.001"},
		{"hedge_quantile = 0.9", "hedge_quantile needs hedge_delay_seconds > 0"},
		{"max_hedges = 2", "max_hedges needs hedge_delay_seconds > 0"},
		{"hedge_delay_seconds = 0.1\nhedge_quantile = 1", "hedge_quantile must be 0 (off) or between 0 and 1"},
		{"attempts = 3\nhedge_delay_seconds = 0.1\nmax_hedges = 3", "max_hedges must be between 1 and attempts-1 (2)"},
		{"attempts = 1\nhedge_delay_seconds = 0.1", "max_hedges must be between 1 and attempts-1 (0)"},
		{"hedge_delays = 1", `unknown key "hedge_delays"`},
	} {
		_, err := LoadFile(write(t, "settings.toml", pfx+tc.body), WithEnviron(noEnv))
		if err == nil || !strings.Contains(err.Error(), `settings.toml: retry policy "h": `+tc.want) {
			t.Errorf("%q: error %v, want %q", tc.body, err, tc.want)
		}
	}
	for _, ok := range []string{"timeout_seconds = 0", "timeout_seconds = 0.001", "hedge_quantile = 0\nmax_hedges = 0"} {
		if _, err := LoadFile(write(t, "settings.toml", pfx+ok), WithEnviron(noEnv)); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
}

func TestExceptionClass(t *testing.T) {
	f := load(t, "[default.resilience.retry.policies.all]\nexceptions = [\"Exception\"]\n")
	p, _ := f.Policy("all")
	for _, c := range []string{Exception, HTTPException, HTTPRequestError, ConnectionError, HTTPTimeoutError} {
		if !p.Retries(c) {
			t.Errorf("Exception must cover %s", c)
		}
	}
	cl := f.Snapshot().Classes()
	if !cl.Is(HTTPException, Exception) || cl.Is(Exception, HTTPException) {
		t.Error("HTTPException's parent must be Exception")
	}
	if def, _ := f.Policy(""); def.Retries(Exception) {
		t.Error("the default policy must not retry every error")
	}
}

func TestSeedLayoutsAndEnvironments(t *testing.T) {
	root := load(t, "deployment_mode = \"mesh\"\n[resilience.retry.policies.fast_retry]\nattempts = 4\n[production.resilience.retry.policies.fast_retry]\nattempts = 6\n")
	if p, err := root.Policy("fast_retry"); err != nil || p.Attempts != 1 {
		t.Errorf("[resilience] layout: %+v, %v (mesh at the top level must apply)", p, err)
	}
	if l := root.Snapshot().Layout(); !slices.Equal(l.Layers, []string{"top level"}) || !l.Resilience || !slices.Equal(l.Tables, []string{"production", "resilience"}) {
		t.Errorf("Layout = %+v", l)
	}
	prod, err := LoadFile(write(t, "s.toml", "[resilience.retry.policies.fast_retry]\nattempts = 4\n[production.resilience.retry.policies.fast_retry]\nattempts = 6\n"), WithEnv("production"), WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := prod.Policy("fast_retry"); p.Attempts != 6 {
		t.Errorf("production over the top level: %d attempts", p.Attempts)
	}
	if l := prod.Snapshot().Layout(); !slices.Equal(l.Layers, []string{"top level", "[production]"}) || l.Env != "production" {
		t.Errorf("Layout = %+v", l)
	}

	none := load(t, "[database]\nurl = \"x\"\n[server]\nport = 1\n")
	if p, err := none.Policy(""); err != nil || p.Attempts != 3 {
		t.Errorf("the default policy of a file with no resilience table: %+v, %v", p, err)
	}
	_, err = none.Policy("fast_retry")
	if !errors.Is(err, ErrUnknownPolicy) || !strings.Contains(err.Error(), "has no [default.resilience] or [resilience] table (top-level tables: database, server)") {
		t.Errorf("named policy of a file with no resilience table: %v", err)
	}

	_, err = LoadFile(write(t, "s.toml", "[default.resilience.retry]\nenabled = true\n[resilience.retry]\nenabled = false\n"), WithEnviron(noEnv))
	if err == nil || !strings.Contains(err.Error(), "both [default.resilience] and a top-level [resilience]") {
		t.Errorf("both layouts: %v", err)
	}
	_, err = LoadFile("testdata/full.toml", WithEnv("prod"), WithEnviron(noEnv))
	if err == nil || !strings.Contains(err.Error(), `testdata/full.toml: environment "prod" (from WithEnv) has no table in the file (environments: default, production, staging)`) {
		t.Errorf("unknown environment: %v", err)
	}
	_, err = LoadFile("testdata/full.toml", WithEnviron(func() []string { return []string{"RTX_ENV=qa"} }))
	if err == nil || !strings.Contains(err.Error(), `"qa" (from RTX_ENV)`) {
		t.Errorf("unknown RTX_ENV: %v", err)
	}
	env, err := LoadFile("testdata/full.toml", WithEnv("production"), WithEnviron(func() []string { return []string{"RTX_RESILIENCE__RETRY__ENABLED=true"} }))
	if err != nil {
		t.Fatal(err)
	}
	if l := env.Snapshot().Layout(); !slices.Equal(l.Layers, []string{"[default]", "[production]", "environment variables"}) || !slices.Equal(l.EnvVars, []string{"RTX_RESILIENCE__RETRY__ENABLED"}) {
		t.Errorf("Layout = %+v", l)
	}
}

func TestShortErrors(t *testing.T) {
	var b strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&b, "[default.resilience.retry.policies.p%04d]\nattempts = 2\n", i)
	}
	f := load(t, b.String())
	_, err := f.Policy("nope")
	if !errors.Is(err, ErrUnknownPolicy) || len(err.Error()) > 300 ||
		!strings.HasSuffix(err.Error(), "(known: default, p0000, p0001, p0002, p0003, p0004, p0005, p0006, p0007, p0008 and 1991 more)") {
		t.Errorf("unknown policy among 2000: %d bytes: %v", len(err.Error()), err)
	}
	_, err = LoadFile(write(t, "settings.toml", strings.ReplaceAll(b.String(), "attempts = 2", "attempts = 0")), WithEnviron(noEnv))
	if err == nil || len(err.Error()) > 4000 || !strings.Contains(err.Error(), "settings.toml: and 1980 more problems") {
		t.Errorf("2000 invalid policies: %d bytes", len(fmtErr(err)))
	}
}

func TestParseErrorPositions(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"s.toml", "[default]\nx = 1\ny = [1, 2\n", "s.toml:4:1: toml: expected character ]"},
		{"s.toml", "[default.resilience.retry\n", "s.toml:1:26: toml: expected character ]"},
		{"s.json", "{\n  \"default\": {,}\n}", "s.json:2:15: json: "},
		{"s.yaml", "a:\n  b: [\n", "s.yaml: cannot parse yaml: yaml: line 2:"},
	} {
		_, err := LoadFile(write(t, tc.name, tc.body), WithEnviron(noEnv))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q: %v, want %q", tc.name, tc.body, err, tc.want)
		}
	}
}

func TestStatus(t *testing.T) {
	var zero Factory
	if st := zero.Status(); st.Version != 0 || st.Source != "built-in defaults" || st.Rejected != nil {
		t.Errorf("zero factory: %+v", st)
	}
	start := time.Now()
	f := load(t, "[default.resilience.retry.policies.a]\nattempts = 2\n")
	st := f.Status()
	if st.Version != 1 || !strings.HasSuffix(st.Source, "settings.toml") || st.Applied.Before(start) || st.Rejected != nil {
		t.Errorf("after LoadFile: %+v", st)
	}
	if _, err := f.Update([]byte("[default.resilience.retry.policies.a]\nattempts = 0\n"), "toml", "bad"); err == nil {
		t.Fatal("bad update accepted")
	}
	st = f.Status()
	if st.Version != 1 || st.Rejected == nil || st.Rejected.Source != "bad" || !strings.Contains(st.Rejected.Err, "attempts must be") {
		t.Errorf("after a rejected update: %+v %+v", st, st.Rejected)
	}
	if _, err := f.Update([]byte("[default.resilience.retry.policies.a]\nattempts = 3\n"), "toml", "good"); err != nil {
		t.Fatal(err)
	}
	if st = f.Status(); st.Version != 2 || st.Source != "good" || st.Rejected == nil {
		t.Errorf("after a good update: %+v", st)
	}
	f.Swap(Builtin())
	if st = f.Status(); st.Version != 3 || st.Source != "built-in defaults" {
		t.Errorf("after Swap: %+v", st)
	}
	if st := NewFactory(nil).Status(); st.Version != 1 {
		t.Errorf("NewFactory: %+v", st)
	}
}
