// Package consulsource is a [liveconfig.Source] that reads the settings
// document from a Consul KV key and follows it with blocking queries.
//
//	cli, err := api.NewClient(api.DefaultConfig()) // CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...
//	...
//	w, err := liveconfig.Watch(ctx, consulsource.New(cli, "config/rtx/settings.toml"), factory)
//
// The key's value is the whole settings document, in the factory's format
// unless [liveconfig.WithFormat] says otherwise. The source long-polls the
// key: each query carries the X-Consul-Index of the previous answer and
// Consul holds it until the key changes or the wait time passes. As
// Consul's documentation asks of clients, an index that goes backwards (a
// snapshot restore, a new cluster) restarts the loop from index 0, an index
// of 0 is taken as 1, queries are spaced by at least a minimum interval,
// and failed queries are retried with a jittered exponential backoff.
//
// The package is separate from liveconfig so that programs that do not use
// Consul do not link its client.
package consulsource

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/liveconfig/internal/retry"
)

// DefaultWaitTime is how long Consul holds each blocking query when no
// change comes (Consul caps it at 10 minutes).
const DefaultWaitTime = 5 * time.Minute

// Source follows one Consul KV key. It is safe for concurrent use, though
// one watcher per Source is the usual way.
type Source struct {
	client      *api.Client
	key         string
	query       api.QueryOptions
	wait        time.Duration
	minInterval time.Duration
	min, max    time.Duration
}

var _ liveconfig.Source = (*Source)(nil)

// Option configures a [Source]. A nil Option is ignored.
type Option interface {
	apply(*Source)
}

type optionFunc func(*Source)

func (f optionFunc) apply(s *Source) { f(s) }

// WithWaitTime sets how long Consul holds each blocking query (default
// [DefaultWaitTime]). d <= 0 keeps the default.
func WithWaitTime(d time.Duration) Option {
	return optionFunc(func(s *Source) {
		if d > 0 {
			s.wait = d
		}
	})
}

// WithQueryOptions sets the options every query starts from: Datacenter,
// Token, Namespace, Partition, AllowStale, RequireConsistent and so on. Its
// WaitIndex and WaitTime are ignored (the source manages them) and so is its
// context (Watch's is used).
func WithQueryOptions(q api.QueryOptions) Option {
	return optionFunc(func(s *Source) { s.query = q })
}

// WithBackoff sets the wait after a failed query: it starts at min and
// doubles up to max, with jitter (default 100 ms to 10 s). Values <= 0 keep
// the defaults.
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(s *Source) {
		if min > 0 {
			s.min = min
		}
		if max > 0 {
			s.max = max
		}
	})
}

// WithMinInterval sets the least time between the starts of two queries
// (default 100 ms), so that a key written many times a second, or a server
// that answers blocking queries at once, cannot make the source spin. d < 0
// keeps the default; 0 turns the limit off.
func WithMinInterval(d time.Duration) Option {
	return optionFunc(func(s *Source) {
		if d >= 0 {
			s.minInterval = d
		}
	})
}

// New returns a source that follows key through client. The caller keeps
// ownership of client.
func New(client *api.Client, key string, opts ...Option) *Source {
	s := &Source{client: client, key: key, wait: DefaultWaitTime, minInterval: 100 * time.Millisecond,
		min: 100 * time.Millisecond, max: 10 * time.Second}
	for _, o := range opts {
		if o != nil {
			o.apply(s)
		}
	}
	return s
}

// Name is how the source names the document in updates and errors:
// "consul:" followed by the key.
func (s *Source) Name() string { return "consul:" + s.key }

// Watch implements [liveconfig.Source]. It returns nil when ctx is done.
func (s *Source) Watch(ctx context.Context, report func(liveconfig.Change)) error {
	if s.client == nil {
		return errors.New("consulsource: nil client")
	}
	if s.key == "" {
		return errors.New("consulsource: empty key")
	}
	kv := s.client.KV()
	b := retry.Backoff{Min: s.min, Max: s.max}
	var index uint64 // X-Consul-Index of the last answer; 0: none yet, do not block
	for {
		start := time.Now()
		q := s.query
		q.WaitIndex, q.WaitTime = index, s.wait
		pair, meta, err := kv.Get(s.key, q.WithContext(ctx))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			report(liveconfig.Change{Name: s.Name(), Err: fmt.Errorf("consulsource: reading %q: %w", s.key, err)})
			if retry.Sleep(ctx, b.Next()) != nil {
				return nil
			}
			continue
		}
		b.Reset()
		next := max(meta.LastIndex, 1) // an index of 0 would never block
		switch {
		case next < index:
			// The index went backwards: start over without blocking, so
			// that no later change is missed.
			index = 0
			continue
		case next == index:
			// The wait passed with no change (or an idempotent write).
		default:
			index = next
			if pair == nil {
				report(liveconfig.Change{Name: s.Name(), Err: fmt.Errorf("consulsource: key %q: %w", s.key, liveconfig.ErrNotFound)})
			} else {
				report(liveconfig.Change{Name: s.Name(), Data: pair.Value, Version: strconv.FormatUint(pair.ModifyIndex, 10)})
			}
		}
		if wait := s.minInterval - time.Since(start); wait > 0 {
			if retry.Sleep(ctx, wait) != nil {
				return nil
			}
		}
	}
}
