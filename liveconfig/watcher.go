package liveconfig

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/athomic-go/rtx/policy"
)

// A Source delivers versions of one settings document: a file, an etcd key,
// a Consul key.
//
// Watch reports the document's current state, then every change to it, by
// calling report, until ctx is done. It retries passing failures itself
// (reporting each one as a [Change] with Err set, so that operators see
// them) and returns only when ctx is done, with nil or ctx.Err(), or on a
// failure it cannot recover from. Calls to report are sequential, never
// after Watch has returned, and report does not keep the Change's Data
// after it returns; report may block while the change is applied.
//
// Sources need not deduplicate: the watcher skips a document identical to
// the last one it saw.
type Source interface {
	Watch(ctx context.Context, report func(Change)) error
}

// SourceFunc adapts a function to a [Source].
type SourceFunc func(ctx context.Context, report func(Change)) error

// Watch calls fn(ctx, report).
func (fn SourceFunc) Watch(ctx context.Context, report func(Change)) error { return fn(ctx, report) }

// Change is one report from a [Source]: a version of the settings document,
// or a failure to read it.
type Change struct {
	// Name names the document in errors and updates: a file path, an etcd or
	// Consul key.
	Name string
	// Data is the document's content. It is ignored when Err is set.
	Data []byte
	// Version is the source's own version of Data: an etcd mod revision, a
	// Consul modify index, a content hash. It is reported, never compared.
	Version string
	// Err reports that the document could not be read: an error wrapping
	// [ErrNotFound] when it does not exist, any other error when the source
	// failed. Either way the settings in force stay.
	Err error
}

// Update describes a document that was applied.
type Update struct {
	// Source names the document: a file path, an etcd or Consul key.
	Source string
	// Version is the source's version of the document (see [Change.Version]).
	Version string
	// Changed lists the policies whose effective values changed, sorted,
	// "default" for the default policy (see [policy.Snapshot.Changed]). It
	// is empty when only other settings changed (circuits, comments) or
	// the document matches what the factory already served.
	Changed []string
	// Snapshot is the snapshot now in force.
	Snapshot *policy.Snapshot
	// Initial is true for a document applied as the source's first answer,
	// before [Watch] or [WatchFile] returned. It often matches what the
	// factory already served (Changed is then empty).
	Initial bool
}

// ErrNotFound is wrapped by the errors that report a missing settings
// document (a deleted file, an absent key). The settings in force stay.
var ErrNotFound = errors.New("settings document not found")

// ErrEmpty is wrapped by the [*InvalidError] for an empty document. An
// empty document would parse as "every setting at its default"; it is far
// more often a file caught halfway through a write, or a wiped key, so it is
// rejected like any invalid document.
var ErrEmpty = errors.New("settings document is empty")

// InvalidError reports a document that was read but rejected: it did not
// parse or did not validate. The snapshot in force was left as it was.
type InvalidError struct {
	Source  string // the document's name
	Version string // the source's version of the rejected document
	Err     error  // the parse or validation error (it names the source, policy and field)
}

// Error names the source and what is wrong with the document.
func (e *InvalidError) Error() string {
	return "liveconfig: update rejected, settings in force kept: " + e.Err.Error()
}

// Unwrap returns Err.
func (e *InvalidError) Unwrap() error { return e.Err }

// Watcher applies a [Source]'s documents to a factory until it is closed.
// It is safe for concurrent use.
type Watcher struct {
	cancel    context.CancelFunc
	done      chan struct{}
	err       error // set before done is closed: why the source stopped
	closeOnce sync.Once
}

// Watch starts applying src's documents to f and returns once the source's
// first answer has been handled: its current document applied, skipped as
// unchanged or rejected (the error then goes to [OnError]; the watcher goes
// on), or its report that the document does not exist. Passing failures of
// the source before that answer go to [OnError] while Watch keeps waiting.
//
// ctx bounds only that wait, as in [net.Dialer.DialContext]: when it ends
// first, or the source gives up, Watch stops the source and returns an
// error. Once Watch has returned, the watcher runs until [Watcher.Close].
func Watch(ctx context.Context, src Source, f *policy.Factory, opts ...Option) (*Watcher, error) {
	if src == nil {
		return nil, errors.New("liveconfig: nil Source")
	}
	if f == nil {
		return nil, errors.New("liveconfig: nil *policy.Factory")
	}
	cfg := newConfig(opts)
	format := cfg.format
	if format == "" {
		format = f.Format()
	}
	return start(ctx, src, &applier{f: f, cfg: cfg, format: format}, isAnswer)
}

// isAnswer reports whether c answers the question "what is the document
// now?": a document, or word that there is none.
func isAnswer(c Change) bool { return c.Err == nil || errors.Is(c.Err, ErrNotFound) }

// start runs src on its own goroutine and waits, within ctx, for the first
// change that answer accepts.
func start(ctx context.Context, src Source, a *applier, answer func(Change) bool) (*Watcher, error) {
	wctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{cancel: cancel, done: make(chan struct{})}
	first := make(chan struct{})
	var firstOnce sync.Once
	go func() {
		defer close(w.done)
		err := src.Watch(wctx, func(c Change) {
			if wctx.Err() != nil {
				return // closing: the factory is no longer touched
			}
			a.handle(wctx, c)
			if answer(c) {
				a.answered = true
				firstOnce.Do(func() { close(first) })
			}
		})
		if wctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("source stopped")
		}
		w.err = fmt.Errorf("liveconfig: %w", err)
		a.fail(wctx, w.err)
	}()
	select {
	case <-first:
	case <-w.done:
	case <-ctx.Done():
	}
	select {
	case <-first: // answered, whatever else happened meanwhile
		return w, nil
	case <-w.done:
		return nil, w.err
	default:
		w.Close()
		return nil, fmt.Errorf("liveconfig: no settings document from the source yet: %w", context.Cause(ctx))
	}
}

// Close stops the watcher and waits for it to finish: once Close returns the
// factory is no longer touched. It returns the error that stopped the source
// early, if one did. Close may be called more than once.
func (w *Watcher) Close() error {
	w.closeOnce.Do(w.cancel)
	<-w.done
	return w.err
}

// applier turns changes into snapshot swaps. It is used by one goroutine.
type applier struct {
	f      *policy.Factory
	cfg    *config
	format string
	last   [sha256.Size]byte // hash of the last document seen, applied or not
	seen   bool
	// answered is set once the source's first answer was handled.
	answered bool
}

func (a *applier) handle(ctx context.Context, c Change) {
	if c.Err != nil {
		a.fail(ctx, c.Err)
		return
	}
	sum := sha256.Sum256(c.Data)
	if a.seen && sum == a.last {
		return
	}
	a.last, a.seen = sum, true
	if len(bytes.TrimSpace(c.Data)) == 0 {
		err := fmt.Errorf("%s: %w", c.Name, ErrEmpty)
		a.f.Reject(c.Name, err)
		a.fail(ctx, &InvalidError{Source: c.Name, Version: c.Version, Err: err})
		return
	}
	// Apply runs the size and depth guard before any parser, and records
	// the outcome, applied or rejected, in the factory's Status.
	s, old, err := a.f.Apply(c.Data, a.format, c.Name)
	if err != nil {
		a.fail(ctx, &InvalidError{Source: c.Name, Version: c.Version, Err: err})
		return
	}
	u := Update{Source: c.Name, Version: c.Version, Changed: s.Changed(old), Snapshot: s, Initial: !a.answered}
	if l := a.cfg.logger; l != nil {
		l.LogAttrs(ctx, slog.LevelInfo, "rtx: settings updated",
			slog.String("source", u.Source), slog.String("version", u.Version), slog.Any("changed", u.Changed))
	}
	if a.cfg.onUpdate != nil {
		a.cfg.onUpdate(u)
	}
}

func (a *applier) fail(ctx context.Context, err error) {
	if l := a.cfg.logger; l != nil {
		l.LogAttrs(ctx, slog.LevelWarn, "rtx: settings not updated", slog.Any("error", err))
	}
	if a.cfg.onError != nil {
		a.cfg.onError(err)
	}
}

// hashVersion is the version of a document that has none of its own: the
// first 12 hex digits of its SHA-256.
func hashVersion(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:6])
}
