package policy

import (
	"errors"
	"os"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary documents to the settings decoder: it must
// never panic, and whatever it accepts must hold the validated invariants.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/seed.toml", "testdata/full.toml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, "toml")
		}
	}
	for _, doc := range []string{
		"[default.resilience.retry.policies.fast_retry]\nwait_min_seconds = 2\nwait_max_seconds = 1",
		"[default.resilience.retry.policies.fast_retry]\nattempts = 2.5",
		"[default.resilience.circuit_breaker.circuits.\"a.b:1\"]\nfail_max = 2",
		"[default]\ndeployment_mode = \"mesh\"",
		"[default.resilience.retry\nattempts = ",
	} {
		f.Add([]byte(doc), "toml")
	}
	f.Add([]byte("default:\n  resilience:\n    retry:\n      policies:\n        y:\n          attempts: 4\n"), "yaml")
	f.Add([]byte(`{"default":{"resilience":{"retry":{"policies":{"j":{"attempts":2}}}}}}`), "json")
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		switch format {
		case "toml", "yaml", "json":
		default:
			format = "toml"
		}
		fac := NewFactory(nil)
		fac.load.environ = func() []string { return nil }
		s, err := fac.Parse(data, format, "fuzz")
		if err != nil {
			return
		}
		for _, name := range s.Names() {
			p, err := s.Policy(name)
			if err != nil {
				t.Fatalf("listed policy %q: %v", name, err)
			}
			if p.Attempts < 1 || p.Attempts > MaxAttempts || p.WaitMin <= 0 || p.WaitMin > p.WaitMax ||
				p.Backoff < 1 || p.Jitter < 0 || p.Jitter > 1 || p.Timeout < 0 {
				t.Fatalf("accepted an invalid policy %q: %+v", name, p)
			}
			for n := 1; n <= p.Attempts; n++ {
				if d := p.Delay(n, 0.5); d < p.WaitMin || d > p.WaitMax+time.Nanosecond {
					t.Fatalf("%q: Delay(%d) = %v outside [%v, %v]", name, n, d, p.WaitMin, p.WaitMax)
				}
			}
		}
		if b := s.Breaker(); b.Enabled && (b.FailMax < 1 || b.ResetTimeout <= 0) {
			t.Fatalf("accepted invalid breaker settings %+v", b)
		}
	})
}

// FuzzGuard feeds arbitrary documents to the guard: it must never panic,
// and a document it accepts must reach the decoder and come back, with a
// snapshot or an error, rather than crash the process.
func FuzzGuard(f *testing.F) {
	for _, tc := range guardCases {
		if len(tc.doc) <= 4096 {
			f.Add([]byte(tc.doc), tc.format)
		}
	}
	for _, p := range []string{"testdata/seed.toml", "testdata/full.toml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b, "toml")
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		switch format {
		case "toml", "yaml", "json":
		default:
			format = "toml"
		}
		err := guard(data, format, "fuzz")
		if err != nil {
			if !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrTooManyKeys) && !errors.Is(err, ErrTooManyValues) {
				t.Fatalf("guard error wraps no limit: %v", err)
			}
			return
		}
		lc := &loadConfig{environ: func() []string { return nil }}
		s, err := parse(data, format, "fuzz", lc)
		if (s == nil) == (err == nil) {
			t.Fatalf("parse = %v, %v: want a snapshot xor an error", s, err)
		}
	})
}
