package policy

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func noEnv() []string { return nil }

func TestDelay(t *testing.T) {
	def := Default()
	fast := &Policy{WaitMin: 100 * time.Millisecond, WaitMax: time.Second, Backoff: 1.5, Jitter: 1}
	fixed := &Policy{WaitMin: time.Second, WaitMax: 10 * time.Second, Backoff: 2, Jitter: 0}
	half := &Policy{WaitMin: time.Second, WaitMax: 10 * time.Second, Backoff: 2, Jitter: 0.5}
	tests := []struct {
		name string
		p    *Policy
		n    int
		r    float64
		want time.Duration
	}{
		{"no jitter 1", fixed, 1, 0.7, time.Second},
		{"no jitter 2", fixed, 2, 0.7, 2 * time.Second},
		{"no jitter 3", fixed, 3, 0.7, 4 * time.Second},
		{"no jitter capped", fixed, 5, 0.7, 10 * time.Second},
		{"huge retry stays capped", fixed, 10000, 0, 10 * time.Second},
		{"full jitter r=0 is the base", def, 3, 0, 4 * time.Second},
		{"full jitter floors at wait_min", def, 3, 0.99, time.Second},
		{"full jitter middle", def, 4, 0.5, 4 * time.Second},
		{"half jitter", half, 3, 0.5, 3 * time.Second},
		{"fast 2", fast, 2, 0, 150 * time.Millisecond},
		{"fast 7 capped", fast, 7, 0, time.Second},
		{"n < 1 is 1", fixed, 0, 0, time.Second},
		{"r > 1 clamps", half, 3, 5, 2 * time.Second},
		{"r < 0 clamps", half, 3, -1, 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Delay(tt.n, tt.r); got != tt.want {
				t.Errorf("Delay(%d, %v) = %v, want %v", tt.n, tt.r, got, tt.want)
			}
		})
	}
}

func TestSeedSettingsLoadUnchanged(t *testing.T) {
	f, err := LoadFile("testdata/seed.toml", WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	fast, err := f.Policy("fast_retry")
	if err != nil {
		t.Fatal(err)
	}
	if fast.Attempts != 3 || fast.WaitMin != 100*time.Millisecond || fast.WaitMax != time.Second || fast.Backoff != 1.5 || fast.Jitter != 1 {
		t.Errorf("fast_retry = %+v", fast)
	}
	long, _ := f.Policy("long_retry")
	if long.Attempts != 10 || long.WaitMax != 300*time.Second || !long.Retries(ConnectionError) || long.Retries(HTTPRequestError) || long.Retries(HTTPTimeoutError) {
		t.Errorf("long_retry = %+v", long)
	}
	for _, name := range []string{"", "default"} {
		def, err := f.Policy(name)
		if err != nil || def.Attempts != 3 || def.WaitMin != time.Second || !def.Retries(ConnectionError) || !def.Retries(HTTPTimeoutError) || def.Retries(HTTPException) {
			t.Errorf("Policy(%q) = %+v, %v", name, def, err)
		}
	}
	if !fast.Retries(ConnectionError) || !fast.Retries(HTTPTimeoutError) || fast.Retries("") {
		t.Error("HTTPException must cover every class")
	}
	if got := strings.Join(f.Snapshot().Names(), ","); got != "default,fast_retry,long_retry" {
		t.Errorf("Names = %s", got)
	}
	_, err = f.Policy("nope")
	if err == nil || !strings.Contains(err.Error(), `"nope"`) || !strings.Contains(err.Error(), "fast_retry, long_retry") {
		t.Errorf("unknown policy error = %v", err)
	}
}

func TestFullSettings(t *testing.T) {
	f, err := LoadFile("testdata/full.toml", WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	def, _ := f.Policy("")
	if def.Attempts != 4 || def.Jitter != 0.5 || def.WaitMin != time.Second {
		t.Errorf("default_policy = %+v", def)
	}
	posts, _ := f.Policy("posts")
	if !posts.RetryNonIdempotent || !posts.IdempotencyKey || posts.Timeout != 2500*time.Millisecond || posts.BudgetRatio != -1 {
		t.Errorf("posts = %+v", posts)
	}
	// A missing field takes the built-in default, not the file's default_policy.
	if posts.Jitter != 1 {
		t.Errorf("posts.Jitter = %v, want the built-in 1", posts.Jitter)
	}
	b := f.Snapshot().Breaker()
	if !b.Enabled || b.FailMax != 5 || b.ResetTimeout != 30*time.Second {
		t.Errorf("breaker = %+v", b)
	}
	if c := b.Circuit("api.example.com:443"); c.FailMax != 3 || c.ResetTimeout != 10*time.Second {
		t.Errorf("circuit with dots = %+v (circuits: %v)", c, b.Circuits)
	}
	if c := b.Circuit("other:80"); c.FailMax != 5 {
		t.Errorf("default circuit = %+v", c)
	}
}

func TestEnvironments(t *testing.T) {
	prod, err := LoadFile("testdata/full.toml", WithEnv("production"), WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := prod.Policy("fast_retry")
	if p.Attempts != 5 || p.WaitMin != 100*time.Millisecond {
		t.Errorf("production fast_retry = %+v, want attempts 5 over default's other fields", p)
	}
	// RTX_ENV names the environment when WithEnv is not given.
	staging, err := LoadFile("testdata/full.toml", WithEnviron(func() []string { return []string{"RTX_ENV=staging"} }))
	if err != nil {
		t.Fatal(err)
	}
	s := staging.Snapshot()
	if s.Mode() != Mesh || s.Breaker().Enabled {
		t.Errorf("staging: mode %q, breaker %v", s.Mode(), s.Breaker().Enabled)
	}
	for _, name := range s.Names() {
		if p, _ := s.Policy(name); p.Attempts != 1 {
			t.Errorf("mesh: %s has %d attempts", name, p.Attempts)
		}
	}
}

func TestEnvironmentVariables(t *testing.T) {
	env := []string{
		"RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS=7",
		"RTX_RESILIENCE__RETRY__DEFAULT_POLICY__EXCEPTIONS=ConnectionError, HTTPTimeoutError",
		"RTX_RESILIENCE__RETRY__POLICIES__NEW_ONE__WAIT_MIN_SECONDS=0.5",
		"RTX_RESILIENCE__CIRCUIT_BREAKER__DEFAULT_FAIL_MAX=9",
		"RTX_TOKEN=not-a-key",                   // other tools share the prefix
		"RTX_RESILIENCE__RETRY__MAX_ATTEMPTS=1", // names no key: ignored
		"HOME=/root",
	}
	f, err := LoadFile("testdata/full.toml", WithEnviron(func() []string { return env }))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Policy("fast_retry"); p.Attempts != 7 {
		t.Errorf("fast_retry attempts = %d", p.Attempts)
	}
	if p, _ := f.Policy(""); p.Retries(HTTPRequestError) || !p.Retries(ConnectionError) {
		t.Errorf("default exceptions = %v", p.Exceptions)
	}
	if p, err := f.Policy("new_one"); err != nil || p.WaitMin != 500*time.Millisecond {
		t.Errorf("new_one = %+v, %v", p, err)
	}
	if f.Snapshot().Breaker().FailMax != 9 {
		t.Errorf("fail max = %d", f.Snapshot().Breaker().FailMax)
	}
	_, err = LoadFile("testdata/full.toml", WithEnviron(func() []string {
		return []string{"RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS=many"}
	}))
	if err == nil || !strings.Contains(err.Error(), "RTX_RESILIENCE__RETRY__POLICIES__FAST_RETRY__ATTEMPTS") || !strings.Contains(err.Error(), `"many"`) {
		t.Errorf("bad env value error = %v", err)
	}
}

func TestDisabled(t *testing.T) {
	f := load(t, `
[default.resilience.retry]
enabled = false
[default.resilience.retry.policies.x]
attempts = 5
`)
	if p, _ := f.Policy("x"); p.Attempts != 1 {
		t.Errorf("disabled: attempts = %d", p.Attempts)
	}
}

func load(t *testing.T, body string) *Factory {
	t.Helper()
	f, err := LoadFile(write(t, "settings.toml", body), WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func write(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	const pfx = "[default.resilience.retry.policies.fast_retry]\n"
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"min above max", pfx + "wait_min_seconds = 2\nwait_max_seconds = 1", []string{`settings.toml: retry policy "fast_retry": wait_min_seconds (2) > wait_max_seconds (1)`}},
		{"unknown key", pfx + "max_attempts = 3", []string{`retry policy "fast_retry"`, `unknown key "max_attempts"`}},
		{"unknown class", pfx + `exceptions = ["HTTPError"]`, []string{`unknown class "HTTPError"`, "ConnectionError"}},
		{"zero attempts", pfx + "attempts = 0", []string{"attempts must be between 1 and 100, got 0"}},
		{"too many attempts", pfx + "attempts = 1000", []string{"attempts must be between 1 and 100"}},
		{"fractional attempts", pfx + "attempts = 2.5", []string{"attempts must be a whole number"}},
		{"string attempts", pfx + `attempts = "3"`, []string{`attempts must be a number, got "3"`}},
		{"backoff below one", pfx + "backoff = 0.5", []string{"backoff must be between 1 and 1000"}},
		{"jitter", pfx + "jitter = 1.5", []string{"jitter must be between 0 and 1"}},
		{"negative timeout", pfx + "timeout_seconds = -1", []string{"timeout_seconds must be >= 0"}},
		{"zero wait_min", pfx + "wait_min_seconds = 0", []string{"wait_min_seconds must be > 0"}},
		{"budget ratio", pfx + "budget_ratio = 1.5", []string{"budget_ratio must be between 0 and 1, or -1"}},
		{"budget ratio negative", pfx + "budget_ratio = -0.5", []string{"budget_ratio"}},
		{"budget floor", pfx + "budget_min_retries_per_sec = -1", []string{"budget_min_retries_per_sec must be >= 0"}},
		{"budget window", pfx + "budget_window_seconds = 0", []string{"budget_window_seconds must be > 0"}},
		{"exceptions not a list", pfx + `exceptions = "HTTPException"`, []string{"exceptions must be a list"}},
		{"unknown retry key", "[default.resilience.retry]\nenable = true", []string{"[resilience.retry]", `unknown key "enable"`}},
		{"reserved name", "[default.resilience.retry.policies.default]\nattempts = 2", []string{"reserved"}},
		{"mode", "[default]\ndeployment_mode = \"cloud\"", []string{"deployment_mode", `"cloud"`}},
		{"broken toml", "[default.resilience.retry\nattempts = ", []string{"settings.toml:1:26: toml: expected character ]"}},
		{"fail max", "[default.resilience.circuit_breaker]\ndefault_fail_max = 0", []string{"default_fail_max must be >= 1"}},
		{"circuit fail max", "[default.resilience.circuit_breaker.circuits.a]\nfail_max = -2", []string{`circuit "a"`, "fail_max must be >= 1"}},
		{"negative reset", "[default.resilience.circuit_breaker]\ndefault_reset_timeout_sec = -1", []string{"default_reset_timeout_sec must be >= 0"}},
		{"empty circuit", "[default.resilience.circuit_breaker.circuits.\"\"]\nfail_max = 2", []string{"circuit name must not be empty"}},
		{"unknown breaker key", "[default.resilience.circuit_breaker]\nfailmax = 2", []string{`unknown key "failmax"`}},
		{"two errors", pfx + "attempts = 0\njitter = 2", []string{"attempts must be", "jitter must be"}},
		{"every error at once", pfx + "attempts = 0\nwait_min_seconds = 2\nwait_max_seconds = 1", []string{"attempts must be", "wait_min_seconds (2) > wait_max_seconds (1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFile(write(t, "settings.toml", tt.body), WithEnviron(noEnv))
			if err == nil {
				t.Fatal("LoadFile succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n  does not contain %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "settings.toml") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFormats(t *testing.T) {
	yaml := "default:\n  resilience:\n    retry:\n      policies:\n        y:\n          attempts: 4\n          wait_min_seconds: 0.5\n"
	f, err := LoadFile(write(t, "s.yaml", yaml), WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Policy("y"); p.Attempts != 4 || p.WaitMin != 500*time.Millisecond {
		t.Errorf("yaml policy = %+v", p)
	}
	json := `{"default":{"resilience":{"retry":{"policies":{"j":{"attempts":2,"exceptions":["HTTPException"]}}}}}}`
	f, err = LoadFile(write(t, "s.json", json), WithEnviron(noEnv))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Policy("j"); p.Attempts != 2 || !p.Retries(HTTPTimeoutError) {
		t.Errorf("json policy = %+v", p)
	}
}

func TestUserClasses(t *testing.T) {
	never := func(*http.Response, error) bool { return false }
	path := write(t, "s.toml", "[default.resilience.retry.policies.q]\nexceptions = [\"QuotaError\"]\n[default.resilience.retry.policies.all]\nexceptions = [\"HTTPRequestError\"]\n")
	f, err := LoadFile(path, WithEnviron(noEnv), WithClass(Class{Name: "QuotaError", Parent: HTTPRequestError, Match: never}))
	if err != nil {
		t.Fatal(err)
	}
	q, _ := f.Policy("q")
	all, _ := f.Policy("all")
	if !q.Retries("QuotaError") || q.Retries(HTTPRequestError) || !all.Retries("QuotaError") {
		t.Error("user class must sit under its parent")
	}
	if len(f.Snapshot().Classes().User()) != 1 {
		t.Error("the snapshot must carry the user class")
	}
	if _, err := LoadFile(path, WithEnviron(noEnv)); err == nil || !strings.Contains(err.Error(), `unknown class "QuotaError"`) {
		t.Errorf("without the class: %v", err)
	}
	for _, bad := range []Class{
		{Name: "", Parent: HTTPException, Match: never},
		{Name: "X", Parent: "Nope", Match: never},
		{Name: HTTPRequestError, Parent: HTTPException, Match: never},
		{Name: "X", Parent: HTTPException},
	} {
		if _, err := LoadFile(path, WithEnviron(noEnv), WithClass(bad)); err == nil {
			t.Errorf("class %+v accepted", bad)
		}
	}
}

func TestFactoryUpdate(t *testing.T) {
	f := load(t, "[default.resilience.retry.policies.a]\nattempts = 2\n")
	before := f.Snapshot()
	changed, err := f.Update([]byte("[default.resilience.retry.policies.a]\nattempts = 3\n[default.resilience.retry.policies.b]\nattempts = 1\n"), "toml", "live")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(changed, ",") != "a,b" {
		t.Errorf("changed = %v", changed)
	}
	changed, err = f.Update([]byte("[default.resilience.retry.policies.a]\nattempts = 3\n[default.resilience.retry.policies.b]\nattempts = 1\n[default.resilience.circuit_breaker]\nenabled = true\n"), "toml", "live")
	if err != nil || strings.Join(changed, ",") != "circuit_breaker" {
		t.Errorf("breaker change: %v, %v", changed, err)
	}
	if p, _ := before.Policy("a"); p.Attempts != 2 {
		t.Error("an old snapshot must not change")
	}
	_, err = f.Update([]byte("[default.resilience.retry.policies.a]\nattempts = 0\n"), "toml", "live")
	if err == nil || !strings.Contains(err.Error(), "live: retry policy \"a\"") {
		t.Errorf("bad update: %v", err)
	}
	if p, _ := f.Policy("a"); p.Attempts != 3 {
		t.Errorf("a bad update must leave the last good snapshot, attempts = %d", p.Attempts)
	}
	var zero Factory
	if p, err := zero.Policy(""); err != nil || p.Attempts != 3 {
		t.Errorf("zero factory: %+v, %v", p, err)
	}
}

func TestNamesAreCaseInsensitiveAndHostsCoverPorts(t *testing.T) {
	f := load(t, `
[default.resilience.retry.policies.FastRetry]
attempts = 2
[default.resilience.circuit_breaker.circuits."API.example.com"]
fail_max = 1
[default.resilience.circuit_breaker.circuits."api.example.com:8443"]
fail_max = 7
`)
	if p, err := f.Policy("FastRetry"); err != nil || p.Attempts != 2 {
		t.Errorf("FastRetry: %+v, %v", p, err)
	}
	b := f.Snapshot().Breaker()
	for name, want := range map[string]uint32{"api.example.com:443": 1, "API.EXAMPLE.COM:80": 1, "api.example.com:8443": 7, "other:443": 5} {
		if got := b.Circuit(name).FailMax; got != want {
			t.Errorf("Circuit(%q).FailMax = %d, want %d", name, got, want)
		}
	}
}

func TestZeroAndNewFactory(t *testing.T) {
	var zero Factory
	if zero.Snapshot() != zero.Snapshot() {
		t.Error("a zero factory must keep the snapshot it made")
	}
	cls := Class{Name: "Mine", Parent: HTTPException, Match: func(*http.Response, error) bool { return false }}
	src, err := LoadFile(write(t, "s.toml", "[default.resilience.retry.policies.a]\nexceptions = [\"Mine\"]\n"), WithEnviron(noEnv), WithClass(cls))
	if err != nil {
		t.Fatal(err)
	}
	f := NewFactory(src.Snapshot())
	if _, err := f.Update([]byte("[default.resilience.retry.policies.b]\nexceptions = [\"Mine\"]\n"), "toml", "live"); err != nil {
		t.Errorf("NewFactory must keep the snapshot's classes for updates: %v", err)
	}
}
