package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/athomic-go/rtx/policy"
)

// readme returns the repository's README.md.
func readme(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// fenced returns the bodies of the README's fenced blocks whose info
// string is exactly info ("go", "sh run", ...).
func fenced(doc, info string) []string {
	var blocks []string
	open := "```" + info + "\n"
	for rest := doc; ; {
		i := strings.Index(rest, open)
		if i < 0 {
			return blocks
		}
		if i > 0 && rest[i-1] != '\n' {
			rest = rest[i+len(open):]
			continue
		}
		rest = rest[i+len(open):]
		j := strings.Index(rest, "\n```")
		if j < 0 {
			return blocks
		}
		blocks = append(blocks, rest[:j+1])
		rest = rest[j+4:]
	}
}

// pasted returns the text block that follows marker in the README.
func pasted(t *testing.T, marker string) string {
	t.Helper()
	doc := readme(t)
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	out := doc[i+len(marker):]
	return out[:strings.Index(out, "```")]
}

// TestReadmePlanIsCurrent keeps the plan output pasted in the README section
// equal to what plan prints for the seed's settings.
func TestReadmePlanIsCurrent(t *testing.T) {
	got := pasted(t, "go run . plan --config testdata/seed.toml`):\n\n```text\n")
	r := run(t, "plan", "--config", "testdata/seed.toml", "--env", "default")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got != r.stdout {
		t.Errorf("README.md's plan output is stale; paste the output of\n"+
			"  go run . plan --config testdata/seed.toml\ngot:\n%s", r.stdout)
	}
}

// TestReadmeHedgePlanIsCurrent does the same for the hedging policy's plan.
func TestReadmeHedgePlanIsCurrent(t *testing.T) {
	got := pasted(t, "go run . plan --config testdata/hedge.toml --policy search`):\n\n```text\n")
	r := run(t, "plan", "--config", "testdata/hedge.toml", "--env", "default", "--policy", "search")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if got != r.stdout {
		t.Errorf("README.md's hedging plan output is stale; paste the output of\n"+
			"  go run . plan --config testdata/hedge.toml --policy search\ngot:\n%s", r.stdout)
	}
}

// TestReadmeCheckIsCurrent does the same for check's output.
func TestReadmeCheckIsCurrent(t *testing.T) {
	got := pasted(t, "$ cd cmd/rtx && go run . check --config testdata/seed.toml\n")
	r := run(t, "check", "--config", "testdata/seed.toml", "--env", "default")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := strings.Replace(r.stdout, "environment default (RTX_ENV)", "environment default", 1); got != want {
		t.Errorf("README.md's check output is stale; paste the output of\n"+
			"  go run . check --config testdata/seed.toml\ngot:\n%s", r.stdout)
	}
}

// readmeSettings returns the settings file of the README's "Settings
// reference": the first TOML block after that heading.
func readmeSettings(t *testing.T) string {
	t.Helper()
	doc := readme(t)
	i := strings.Index(doc, "## Settings reference")
	if i < 0 {
		t.Fatal("README.md has no Settings reference")
	}
	blocks := fenced(doc[i:], "toml")
	if len(blocks) == 0 {
		t.Fatal("README.md's Settings reference has no TOML block")
	}
	return blocks[0]
}

// snippetPolicy finds the policy names that Go snippets pass to rtx.
var snippetPolicy = regexp.MustCompile(`rtx\.(?:New|NewRetrier)\(\w+, "([^"]+)"|rtx\.Do\(\w+, \w+, "([^"]+)"|rtx\.WithPolicy\(\w+(?:\.\w+\(\))?, "([^"]+)"`)

// TestReadmeSnippetsUseDefinedPolicies checks that every policy a Go
// snippet of the README names is defined by the README's settings file,
// so that the snippets run against the settings they are shown with.
func TestReadmeSnippetsUseDefinedPolicies(t *testing.T) {
	settings := readmeSettings(t)
	defined := []string{"default"}
	for _, m := range regexp.MustCompile(`(?m)^\s*\[default\.resilience\.retry\.policies\.(\w+)\]`).FindAllStringSubmatch(settings, -1) {
		defined = append(defined, m[1])
	}
	var used []string
	for _, block := range fenced(readme(t), "go") {
		for _, m := range snippetPolicy.FindAllStringSubmatch(block, -1) {
			used = append(used, m[1]+m[2]+m[3])
		}
	}
	// The first request, the per-request override, the function retrier.
	for _, want := range []string{"fast_retry", "long_retry", "jobs"} {
		if !slices.Contains(used, want) {
			t.Errorf("no Go snippet uses %q: the README's snippets or this test's patterns changed (found %v)", want, used)
		}
	}
	for _, name := range used {
		if !slices.Contains(defined, name) {
			t.Errorf("a Go snippet uses policy %q, which the README's settings do not define (they define %v)", name, defined)
		}
	}
}

// TestReadmeSettingsPassCheck loads the README's settings file as check
// does, --strict.
func TestReadmeSettingsPassCheck(t *testing.T) {
	settings := readmeSettings(t)
	if strings.Contains(settings, `"Exception"`) && !policy.Builtin().Classes().Known("Exception") {
		t.Skip("the policy package does not know the Exception class yet")
	}
	r := run(t, "check", "--strict", "--config", writeSettings(t, settings))
	if r.code != 0 {
		t.Errorf("check --strict on the README's settings: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestReadmeShellBlocks runs the README's shell blocks marked to run
// (fenced as "```sh run"), each in a new bash from the repository root, as
// a reader would type them: go install puts rtx in a temporary GOBIN that
// is first on PATH. The environment is the test's minus GOWORK, which
// .ci/cmd.sh sets for this module only.
func TestReadmeShellBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the examples and the command")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command on PATH")
	}
	blocks := fenced(readme(t), "sh run")
	if len(blocks) < 3 {
		t.Fatalf("README.md has %d runnable shell blocks, want the examples, the install and the rtx commands", len(blocks))
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	gobin := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOWORK=") && !strings.HasPrefix(kv, "GOBIN=") && !strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GOBIN="+gobin, "PATH="+gobin+string(os.PathListSeparator)+os.Getenv("PATH"), "TMPDIR="+t.TempDir())
	for i, block := range blocks {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
		cmd.Dir = root
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("README shell block %d failed: %v\n%s\noutput:\n%s", i+1, err, block, out)
		}
		t.Logf("README shell block %d:\n%s", i+1, block)
	}
}
