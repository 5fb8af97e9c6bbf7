package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// result is what one in-process run of the command printed and returned.
type result struct {
	stdout, stderr string
	code           int
	err            error
}

// run executes rtx with args in-process, as main would, and returns what
// it printed and its exit code.
func run(t *testing.T, args ...string) result {
	t.Helper()
	return runIn(t, "", args...)
}

// runIn is run with stdin.
func runIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	err := cmd.ExecuteContext(context.Background())
	code := report(err, &errb)
	return result{stdout: out.String(), stderr: errb.String(), code: code, err: err}
}

// writeSettings writes a settings file into a temporary directory and
// returns its path.
func writeSettings(t *testing.T, toml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "settings.toml")
	if err := os.WriteFile(path, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHelpHasExamples(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"plan", "--help"}, {"check", "--help"}, {"get", "--help"}} {
		r := run(t, args...)
		if r.code != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "rtx ") {
			t.Errorf("%v: help has no example:\n%s", args, r.stdout)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"check", "--bogus"},
		{"plan", "extra"},
		{"get"},
		{"get", "--config", "testdata/seed.toml", "not a url"},
		{"get", "--config", "testdata/seed.toml", "-H", "no colon", "http://127.0.0.1:1/"},
		{"nosuchcommand"},
	} {
		r := run(t, args...)
		if r.code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, r.code, exitUsage, r.stderr)
		}
		if !strings.Contains(r.stderr, "rtx --help") {
			t.Errorf("%v: stderr %q does not point to --help", args, r.stderr)
		}
	}
}

func TestFmtDur(t *testing.T) {
	for _, tc := range []struct {
		in   float64 // seconds
		want string
	}{
		{0, "0s"}, {0.1, "100ms"}, {0.15, "150ms"}, {0.1125, "112.5ms"}, {1, "1s"},
		{1.5, "1.5s"}, {59, "59s"}, {60, "1m"}, {300, "5m"}, {1215, "20m15s"},
		{3600, "1h"}, {3725.5, "1h2m5.5s"}, {0.0000005, "1µs"},
	} {
		if got := fmtDur(seconds(tc.in)); got != tc.want {
			t.Errorf("fmtDur(%vs) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aaa bbb ccc ddd", "> ", "  ", 9)
	want := "> aaa bbb\n  ccc ddd\n"
	if got != want {
		t.Errorf("wrap = %q, want %q", got, want)
	}
}
