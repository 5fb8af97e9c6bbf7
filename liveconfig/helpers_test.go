package liveconfig_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/athomic-go/rtx/liveconfig/internal/livetest"
	"github.com/athomic-go/rtx/policy"
)

var (
	settings        = livetest.Settings
	invalidSettings = livetest.Invalid
	eventually      = livetest.Eventually
	attempts        = livetest.Attempts
	readers         = livetest.Readers
	newUpstream     = livetest.NewUpstream
)

type recorder = livetest.Recorder

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver writes content to a temporary file beside path and renames it
// over path, as editors and config agents do.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// load writes settings(n) to path and loads a factory from it.
func load(t *testing.T, path string, n int) *policy.Factory {
	t.Helper()
	writeFile(t, path, settings(n))
	f, err := policy.LoadFile(path, policy.WithEnviron(func() []string { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	return f
}
