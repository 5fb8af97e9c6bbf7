package liveconfig

import (
	"log/slog"
	"time"
)

// Option configures [Watch] and [WatchFile]. A nil Option is ignored.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultDebounce is how long [WatchFile] waits for a burst of file events
// to settle before it reads the file.
const DefaultDebounce = 100 * time.Millisecond

type config struct {
	onError  func(error)
	onUpdate func(Update)
	logger   *slog.Logger
	format   string
	debounce time.Duration
}

func newConfig(opts []Option) *config {
	c := &config{debounce: DefaultDebounce}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	return c
}

// OnError sets a function called with every error the watcher meets: a
// document that was rejected (an [*InvalidError]: the settings in force
// stay), a document that is missing ([ErrNotFound]), or a failure of the
// source itself. It runs on the watcher's goroutine, one call at a time, and
// should return quickly. A nil fn is ignored.
func OnError(fn func(error)) Option {
	return optionFunc(func(c *config) {
		if fn != nil {
			c.onError = fn
		}
	})
}

// OnUpdate sets a function called after each new document has been swapped
// in. It runs on the watcher's goroutine, one call at a time, and should
// return quickly. A nil fn is ignored.
func OnUpdate(fn func(Update)) Option {
	return optionFunc(func(c *config) {
		if fn != nil {
			c.onUpdate = fn
		}
	})
}

// WithLogger logs each applied update at Info level and each error at Warn
// level. Without a logger (or with a nil one) the watcher is silent.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = l })
}

// WithFormat sets the documents' format: "toml", "yaml" or "json". By
// default [Watch] uses the factory's ([policy.Factory.Format]) and
// [WatchFile] the file's extension when it is .toml, .yaml, .yml or .json,
// else the factory's. An empty format is ignored.
func WithFormat(format string) Option {
	return optionFunc(func(c *config) {
		if format != "" {
			c.format = format
		}
	})
}

// WithDebounce sets how long [WatchFile] lets a burst of file events settle
// before it reads the file (default [DefaultDebounce]). Each new event
// restarts the wait, up to ten times d after the first event of the burst,
// so that a file written continuously is still read. d <= 0 keeps the
// default. Sources other than the file ignore it.
func WithDebounce(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.debounce = d
		}
	})
}
