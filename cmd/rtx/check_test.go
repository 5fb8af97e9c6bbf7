package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/athomic-go/rtx/policy"
)

func TestCheckExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"good", []string{"--config", "testdata/good.toml"}, 0, []string{"0 errors, 0 warnings"}},
		{"good strict", []string{"--config", "testdata/good.toml", "--strict"}, 0, nil},
		{"the examples' settings, strict", []string{"--config", "../../examples/settings.toml", "--strict"}, 0, []string{"0 errors, 0 warnings"}},
		{"the examples' settings, production", []string{"--config", "../../examples/settings.toml", "--env", "production", "--strict"}, 0, []string{"0 errors, 0 warnings"}},
		{"warnings", []string{"--config", "testdata/seed.toml"}, 0, []string{
			`warning: testdata/seed.toml: retry policy "long_retry": gives up after 20m15s of delays at worst`,
			"[no-timeout]", "[capped]", "0 errors, 2 warnings",
		}},
		{"warnings strict", []string{"--config", "testdata/seed.toml", "--strict"}, 1, []string{"2 warnings"}},
		{"warnings under a higher max-wait", []string{"--config", "testdata/seed.toml", "--strict", "--max-wait", "30m"}, 1, []string{"1 warning"}},
		{"broken", []string{"--config", "testdata/broken.toml"}, 1, []string{
			`error: testdata/broken.toml: retry policy "fast_retry": unknown key "max_attempts"`,
			`error: testdata/broken.toml: retry policy "fast_retry": attempts must be between 1 and 100, got 0`,
			`error: testdata/broken.toml: retry policy "fast_retry": exceptions: unknown class "Timeout"`,
			`error: testdata/broken.toml: retry policy "slow": wait_min_seconds (2) > wait_max_seconds (1)`,
			"4 errors, 0 warnings",
		}},
		{"missing", []string{"--config", "testdata/missing.toml"}, 1, []string{"testdata/missing.toml", "1 error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"check"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", r.code, tc.code, r.stdout, r.stderr)
			}
			flat := strings.Join(strings.Fields(r.stdout), " ")
			for _, w := range tc.want {
				if !strings.Contains(flat, w) {
					t.Errorf("missing %q in:\n%s", w, r.stdout)
				}
			}
			if r.stderr != "" {
				t.Errorf("stderr %q: findings belong on stdout", r.stderr)
			}
		})
	}
}

func TestLoadFindingsOnePerError(t *testing.T) {
	_, err := policy.LoadFile("testdata/broken.toml")
	if err == nil {
		t.Fatal("broken.toml loads")
	}
	fs := loadFindings(err)
	if len(fs) != 4 {
		t.Fatalf("%d findings, want 4: %v", len(fs), fs)
	}
	for _, f := range fs {
		if f.Severity != sevError || !strings.HasPrefix(f.Message, "testdata/broken.toml: retry policy ") {
			t.Errorf("finding %+v does not name file and policy", f)
		}
	}
}

func TestLints(t *testing.T) {
	for _, tc := range []struct {
		name    string
		policy  string // the body of [default.resilience.retry.policies.p]
		maxWait time.Duration
		want    []string // checks, in order
	}{
		{"long, no timeout", "attempts = 10\nwait_min_seconds = 5.0\nwait_max_seconds = 300.0", time.Minute, []string{"no-timeout", "capped"}},
		{"long, timeout", "attempts = 10\nwait_min_seconds = 5.0\nwait_max_seconds = 300.0\ntimeout_seconds = 10", time.Minute, []string{"capped"}},
		{"long, higher threshold", "attempts = 10\nwait_min_seconds = 5.0\nwait_max_seconds = 300.0", 30 * time.Minute, []string{"capped"}},
		// delays 1 + 2 + 4 + 8 + 10 (capped) = 25 s: over 20 s, under 60 s.
		{"threshold", "attempts = 6\nwait_max_seconds = 16.0", 20 * time.Second, []string{"no-timeout"}},
		{"under threshold", "attempts = 6\nwait_max_seconds = 16.0", time.Minute, nil},
		{"no jitter", "jitter = 0", time.Minute, []string{"no-jitter"}},
		{"backoff unused", "wait_min_seconds = 2.0\nwait_max_seconds = 2.0\nbackoff = 2.0", time.Minute, []string{"backoff-unused"}},
		{"constant by intent", "wait_min_seconds = 2.0\nwait_max_seconds = 2.0\nbackoff = 1.0\nattempts = 5", time.Minute, nil},
		// bases 1, 2, 4, 4, 4: the cap is reached at retry 3 of 5.
		{"capped", "attempts = 6\nwait_max_seconds = 4.0", time.Minute, []string{"capped"}},
		// bases 1, 2, 4: reached at the last retry only.
		{"capped at the last retry", "attempts = 4\nwait_max_seconds = 4.0", time.Minute, nil},
		{"POST on everything", "retry_non_idempotent = true\nexceptions = [\"HTTPException\"]", time.Minute, []string{"non-idempotent-all"}},
		{"POST on connection errors", "retry_non_idempotent = true\nexceptions = [\"ConnectionError\"]", time.Minute, nil},
		{"one attempt", "attempts = 1\njitter = 0\nretry_non_idempotent = true\nexceptions = [\"HTTPException\"]", time.Minute, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeSettings(t, "[default.resilience.retry.policies.p]\n"+tc.policy+"\n")
			f, err := policy.LoadFile(path, policy.WithEnv(""))
			if err != nil {
				t.Fatal(err)
			}
			fs, err := lintSnapshot(f.Snapshot(), []string{"p"}, lintOptions{MaxWait: tc.maxWait})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.Check)
				if f.Severity != sevWarning || !strings.Contains(f.Where, `retry policy "p"`) {
					t.Errorf("finding %+v: want a warning naming the policy", f)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("checks %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLintMeshIsQuiet(t *testing.T) {
	path := writeSettings(t, "[default]\ndeployment_mode = \"mesh\"\n[default.resilience.retry.policies.p]\njitter = 0\n")
	r := run(t, "check", "--config", path, "--strict")
	if r.code != 0 {
		t.Errorf("mesh mode: exit %d\n%s", r.code, r.stdout)
	}
}

func TestCheckSaysWhichTablesItRead(t *testing.T) {
	const envs = `
[default.resilience.retry.policies.fast_retry]
attempts = 2
timeout_seconds = 1
[default.resilience.circuit_breaker]
enabled = true
  [default.resilience.circuit_breaker.circuits."api.example.com"]
  fail_max = 3
[production.resilience.retry.policies.fast_retry]
attempts = 3
[staging.resilience.retry.policies.fast_retry]
attempts = 0
[app]
port = 8080
`
	for _, tc := range []struct {
		name, toml string
		env        string
		vars       []string // KEY=value
		want       []string
	}{
		{"environments", envs, "", nil, []string{
			"environment default: read: [default]",
			"policies: default (built-in values), fast_retry",
			"circuit breaker: opens after 5 failures in a row, for 30s; circuits api.example.com",
			"not read: [production] (changes fast_retry), [staging] (does not load: 1 error; see rtx check --env staging)",
			"other tables, which change nothing: [app]",
		}},
		{"environment selected", envs, "production", nil, []string{
			"environment production: read: [default], then [production]",
			"not read: [staging] (does not load: 1 error", "other tables, which change nothing: [app]",
		}},
		{"environment variables", envs, "", []string{"RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS=4"}, []string{
			"read: [default], then environment variables RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS",
		}},
		{"seed layout", `
[resilience.retry.default_policy]
attempts = 2
`, "", nil, []string{"read: the top-level [resilience] tables, as [default]", "policies: default circuit breaker: off"}},
		{"mesh", `
[default]
deployment_mode = "mesh"
[default.resilience.retry.policies.p]
attempts = 4
[default.resilience.circuit_breaker]
`, "", nil, []string{
			`policies: default, p (deployment_mode = "mesh": one attempt each)`,
			"circuit breaker: passes everything through (mesh)",
		}},
		{"nothing to read", `
[server]
port = 8080
[database]
url = "x"
`, "", nil, []string{"no [default.resilience.*] or [resilience.*] tables (the file has tables [database], [server])"}},
		{"only an environment has tables", `
[server]
port = 8080
[production.resilience.retry.policies.p]
attempts = 4
`, "", nil, []string{"no [default.resilience.*]", "not read: [production] (changes p)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.vars {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			args := []string{"check", "--config", writeSettings(t, tc.toml)}
			if tc.env != "" {
				args = append(args, "--env", tc.env)
			}
			r := run(t, args...)
			flat := strings.Join(strings.Fields(r.stdout), " ")
			for _, w := range tc.want {
				if !strings.Contains(flat, w) {
					t.Errorf("missing %q in:\n%s", w, r.stdout)
				}
			}
		})
	}
}
