package liveconfig_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

// A layout puts a settings file in dir and returns its path and a function
// that replaces its content the way some writer does.
type layout func(t *testing.T, dir string) (path string, write func(content string))

// inPlace truncates and rewrites the file.
func inPlace(t *testing.T, dir string) (string, func(string)) {
	path := filepath.Join(dir, "settings.toml")
	return path, func(content string) { writeFile(t, path, content) }
}

// renamed writes a temporary file and renames it over the file.
func renamed(t *testing.T, dir string) (string, func(string)) {
	path := filepath.Join(dir, "settings.toml")
	return path, func(content string) {
		if _, err := os.Stat(path); err != nil {
			writeFile(t, path, content) // first write
			return
		}
		renameOver(t, path, content)
	}
}

// configMap lays the file out as the kubelet does for a ConfigMap volume:
// settings.toml -> ..data/settings.toml, ..data -> ..<timestamp>, and an
// update writes a new timestamped directory, swaps ..data atomically and
// removes the old directory.
func configMap(t *testing.T, dir string) (string, func(string)) {
	path := filepath.Join(dir, "settings.toml")
	n := 0
	old := ""
	return path, func(content string) {
		t.Helper()
		n++
		ts := fmt.Sprintf("..2026_01_02_15_04_%02d.%09d", n, n)
		if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, ts, "settings.toml"), content)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if old != "" {
			if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Symlink(filepath.Join("..data", "settings.toml"), path); err != nil {
			t.Fatal(err)
		}
		old = ts
	}
}

// elsewhere makes the file a symlink to a file in another directory that is
// rewritten in place.
func elsewhere(t *testing.T, dir string) (string, func(string)) {
	path := filepath.Join(dir, "settings.toml")
	real := filepath.Join(t.TempDir(), "real.toml")
	return path, func(content string) {
		writeFile(t, real, content)
		if _, err := os.Lstat(path); err != nil {
			if err := os.Symlink(real, path); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestWatchFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layout layout
	}{
		{"in place", inPlace},
		{"rename over", renamed},
		{"configmap symlink swap", configMap},
		{"symlink to another directory", elsewhere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, write := tc.layout(t, t.TempDir())
			write(settings(3))
			f, err := policy.LoadFile(path, policy.WithEnviron(func() []string { return nil }))
			if err != nil {
				t.Fatal(err)
			}
			var rec recorder
			w, err := liveconfig.WatchFile(path, f, rec.Options()...)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := w.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			u := newUpstream(t, f)
			u.MustTry(t, 3, "before any update")
			stopReaders := readers(t, f, 3, 5, 4)
			stopRequests := u.Requests(t, 3, 5, 4)
			defer stopReaders()
			defer stopRequests()

			write(settings(5))
			eventually(t, time.Second, "fast_retry attempts = 5", func() bool { return attempts(t, f, "fast_retry") == 5 })
			u.MustTry(t, 5, "after the update")
			ups := rec.Updates()
			last := ups[len(ups)-1]
			if !slices.Equal(last.Changed, []string{"fast_retry"}) || last.Source != path || last.Version == "" || last.Snapshot == nil {
				t.Errorf("update = %+v, want fast_retry changed in %s", last, path)
			}

			// An invalid document changes nothing and is reported.
			write(invalidSettings)
			eventually(t, time.Second, "the invalid document reported", func() bool { return rec.Rejected("wait_min_seconds") })
			if got := attempts(t, f, "fast_retry"); got != 5 {
				t.Fatalf("after an invalid write: attempts %d, want 5 (the last good value)", got)
			}
			u.MustTry(t, 5, "after an invalid write")

			// The next good document is applied.
			write(settings(4))
			eventually(t, time.Second, "fast_retry attempts = 4", func() bool { return attempts(t, f, "fast_retry") == 4 })
			u.MustTry(t, 4, "after the fix")
		})
	}
}

func TestWatchFileDeleted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "settings.toml")
	f := load(t, path, 3)
	var rec recorder
	w, err := liveconfig.WatchFile(path, f, rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := readers(t, f, 3, 6)
	defer stop()

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "the deletion reported", func() bool { return rec.HasError(liveconfig.ErrNotFound) })
	if got := attempts(t, f, "fast_retry"); got != 3 {
		t.Fatalf("after deletion: attempts %d, want 3", got)
	}
	writeFile(t, path, settings(6))
	eventually(t, time.Second, "the recreated file applied", func() bool { return attempts(t, f, "fast_retry") == 6 })
}

func TestWatchFileMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := policy.NewFactory(nil)
	var rec recorder
	w, err := liveconfig.WatchFile(path, f, rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The first answer (missing) was handled before WatchFile returned.
	if !rec.HasError(liveconfig.ErrNotFound) {
		t.Fatalf("errors = %v, want ErrNotFound", rec.Errors())
	}
	writeFile(t, path, settings(7))
	eventually(t, time.Second, "the new file applied", func() bool {
		p, err := f.Policy("fast_retry")
		return err == nil && p.Attempts == 7
	})
}

func TestWatchFileUnreadable(t *testing.T) {
	// A directory where the file should be: reading it fails with an error
	// other than "not found". WatchFile reports it and returns.
	path := filepath.Join(t.TempDir(), "settings.toml")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	f := policy.NewFactory(nil)
	var rec recorder
	w, err := liveconfig.WatchFile(path, f, rec.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if errs := rec.Errors(); len(errs) != 1 || errors.Is(errs[0], liveconfig.ErrNotFound) {
		t.Fatalf("errors = %v, want one read error", errs)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, settings(4))
	eventually(t, time.Second, "the file applied", func() bool {
		p, err := f.Policy("fast_retry")
		return err == nil && p.Attempts == 4
	})
}

func TestWatchFileMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "settings.toml")
	if w, err := liveconfig.WatchFile(path, policy.NewFactory(nil)); err == nil {
		w.Close()
		t.Fatal("WatchFile in a missing directory: no error")
	}
}

func TestWatchFileAppliesCurrentContent(t *testing.T) {
	// The file changed between LoadFile and WatchFile: WatchFile applies it.
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := load(t, path, 3)
	writeFile(t, path, settings(8))
	w, err := liveconfig.WatchFile(path, f)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := attempts(t, f, "fast_retry"); got != 8 {
		t.Fatalf("attempts %d right after WatchFile, want 8", got)
	}
}

func TestWatchFileFormat(t *testing.T) {
	yamlDoc := func(n int) string {
		return fmt.Sprintf("default:\n  resilience:\n    retry:\n      policies:\n        fast_retry:\n          attempts: %d\n", n)
	}
	t.Run("from the extension", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "settings.yaml")
		writeFile(t, path, yamlDoc(2))
		f, err := policy.LoadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		w, err := liveconfig.WatchFile(path, f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		renameOver(t, path, yamlDoc(9))
		eventually(t, time.Second, "yaml update applied", func() bool { return attempts(t, f, "fast_retry") == 9 })
	})
	t.Run("from the factory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "settings.conf")
		writeFile(t, path, yamlDoc(2))
		f, err := policy.LoadFile(path, policy.WithFormat("yaml"))
		if err != nil {
			t.Fatal(err)
		}
		w, err := liveconfig.WatchFile(path, f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		renameOver(t, path, yamlDoc(9))
		eventually(t, time.Second, "yaml update applied", func() bool { return attempts(t, f, "fast_retry") == 9 })
	})
	t.Run("from the option", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "settings.conf")
		writeFile(t, path, `{"default": {"resilience": {"retry": {"policies": {"fast_retry": {"attempts": 4}}}}}}`)
		f := policy.NewFactory(nil)
		w, err := liveconfig.WatchFile(path, f, liveconfig.WithFormat("json"))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if got := attempts(t, f, "fast_retry"); got != 4 {
			t.Fatalf("attempts %d, want 4", got)
		}
	})
}

func TestWatchFileBurst(t *testing.T) {
	// A burst of writes ends with the last one applied, through far fewer
	// updates than writes.
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := load(t, path, 3)
	var rec recorder
	w, err := liveconfig.WatchFile(path, f, append(rec.Options(), liveconfig.WithDebounce(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 50 {
		writeFile(t, path, settings(1+i%10))
	}
	writeFile(t, path, settings(11))
	eventually(t, 2*time.Second, "the last write applied", func() bool { return attempts(t, f, "fast_retry") == 11 })
	if n := len(rec.Updates()); n > 10 {
		t.Errorf("%d updates for a burst of 51 writes, want it debounced", n)
	}
}

func TestWatchFileLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := load(t, path, 3)
	var buf lockedBuffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	w, err := liveconfig.WatchFile(path, f, liveconfig.WithLogger(l))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	renameOver(t, path, settings(5))
	eventually(t, time.Second, "update logged", func() bool { return strings.Contains(buf.String(), "changed=[fast_retry]") })
	renameOver(t, path, invalidSettings)
	eventually(t, time.Second, "rejection logged", func() bool {
		s := buf.String()
		return strings.Contains(s, "level=WARN") && strings.Contains(s, "wait_min_seconds")
	})
}

func TestWatchFileNilSafeOptions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "settings.toml")
	f := load(t, path, 3)
	w, err := liveconfig.WatchFile(path, f, nil, liveconfig.OnError(nil), liveconfig.OnUpdate(nil),
		liveconfig.WithLogger(nil), liveconfig.WithFormat(""), liveconfig.WithDebounce(0))
	if err != nil {
		t.Fatal(err)
	}
	renameOver(t, path, invalidSettings) // reported nowhere: must not panic
	renameOver(t, path, settings(5))
	eventually(t, time.Second, "update applied", func() bool { return attempts(t, f, "fast_retry") == 5 })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := liveconfig.WatchFile(path, nil); err == nil {
		t.Fatal("WatchFile with a nil factory: no error")
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
