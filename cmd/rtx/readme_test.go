package main

import (
	"os"
	"strings"
	"testing"
)

// TestReadmePlanIsCurrent keeps the plan output pasted in the README section
// equal to what plan prints for the seed's settings.
func TestReadmePlanIsCurrent(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	const start = "go run . plan --config testdata/seed.toml`):\n\n```text\n"
	i := strings.Index(doc, start)
	if i < 0 {
		t.Fatal("README.md has no pasted plan output")
	}
	pasted := doc[i+len(start):]
	pasted = pasted[:strings.Index(pasted, "```")]
	r := run(t, "plan", "--config", "testdata/seed.toml", "--env", "default")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if pasted != r.stdout {
		t.Errorf("README.md's plan output is stale; paste the output of\n"+
			"  go run . plan --config testdata/seed.toml\ngot:\n%s", r.stdout)
	}
}
