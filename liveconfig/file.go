package liveconfig

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/athomic-go/rtx/policy"
)

// WatchFile applies the settings file at path to f now and again each time
// the file changes, until [Watcher.Close]. It returns once the file has been
// read (or found missing or unreadable) and handled; an invalid file goes
// to [OnError] and leaves f as it was, and the watcher goes on watching.
//
// It watches the file's directory, and the directory of the file a symlink
// at path resolves to, re-resolving the symlink on every event: it follows
// in-place writes, renames over the file, and Kubernetes ConfigMap volumes,
// whose "..data" symlink is swapped on each update. A deleted file leaves
// the settings in force until the file comes back. The directory holding
// path must exist and stay.
//
// The format comes from [WithFormat], else the file's extension (.toml,
// .yaml, .yml, .json), else the factory ([policy.Factory.Format]).
func WatchFile(path string, f *policy.Factory, opts ...Option) (*Watcher, error) {
	if f == nil {
		return nil, errors.New("liveconfig: nil *policy.Factory")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("liveconfig: %w", err)
	}
	cfg := newConfig(opts)
	format := cfg.format
	if format == "" {
		switch strings.ToLower(filepath.Ext(abs)) {
		case ".toml", ".yaml", ".yml", ".json":
			format = policy.FormatOf(abs)
		default:
			format = f.Format()
		}
	}
	src := &fileSource{path: abs, name: path, debounce: cfg.debounce}
	// Any outcome of the first read answers: a file that cannot be read
	// now is reported, and watched like one that does not exist.
	return start(context.Background(), src, &applier{f: f, cfg: cfg, format: format}, func(Change) bool { return true })
}

// fileSource reports a file's content on every change.
type fileSource struct {
	path     string // absolute, cleaned
	name     string // as the caller gave it, for messages
	debounce time.Duration
}

func (s *fileSource) Watch(ctx context.Context, report func(Change)) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.name, err)
	}
	defer fw.Close()

	dir := filepath.Dir(s.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watching %s: %w", s.name, err)
	}
	// target is where path resolves to; its directory is watched too, so an
	// in-place write through a symlink is seen.
	var target, targetDir string
	retarget := func() {
		t, err := filepath.EvalSymlinks(s.path)
		if err != nil {
			t = ""
		}
		if t == target {
			return
		}
		target = t
		td := ""
		if t != "" {
			td = filepath.Dir(t)
		}
		if td == targetDir {
			return
		}
		if targetDir != "" && targetDir != dir {
			_ = fw.Remove(targetDir) // fails when the directory is gone: its watch went with it
		}
		targetDir = ""
		if td != "" && td != dir && fw.Add(td) == nil {
			targetDir = td
		}
	}
	read := func() {
		retarget()
		// No more than one byte past the limit: a huge file is rejected
		// by the factory's guard without being held in memory.
		data, err := policy.ReadLimited(s.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			report(Change{Name: s.name, Err: fmt.Errorf("liveconfig: %s: %w", s.name, ErrNotFound)})
		case err != nil:
			report(Change{Name: s.name, Err: fmt.Errorf("liveconfig: %w", err)})
		default:
			report(Change{Name: s.name, Data: data, Version: hashVersion(data)})
		}
	}
	read()

	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	var burst time.Time // when the pending burst began; zero: none pending
	arm := func() {
		now := time.Now()
		if burst.IsZero() {
			burst = now
		}
		wait := s.debounce
		if limit := burst.Add(10 * s.debounce); now.Add(wait).After(limit) {
			wait = max(limit.Sub(now), 0)
		}
		timer.Reset(wait)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			// Every operation counts, Chmod included: a file that could not
			// be read may have become readable.
			if name := filepath.Clean(ev.Name); name == s.path || name == target || s.retargeted(target) {
				arm()
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			report(Change{Name: s.name, Err: fmt.Errorf("liveconfig: watching %s: %w", s.name, err)})
			arm() // events may have been lost (queue overflow): read again
		case <-timer.C:
			burst = time.Time{}
			read()
		}
	}
}

// retargeted reports whether path no longer resolves to target (a swapped
// symlink, as in a ConfigMap update).
func (s *fileSource) retargeted(target string) bool {
	t, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		t = ""
	}
	return t != target
}
