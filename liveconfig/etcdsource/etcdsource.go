// Package etcdsource is a [liveconfig.Source] that reads the settings
// document from an etcd v3 key and follows it with an etcd watch.
//
//	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}})
//	...
//	w, err := liveconfig.Watch(ctx, etcdsource.New(cli, "/config/rtx/settings.toml"), factory)
//
// The key's value is the whole settings document, in the factory's format
// unless [liveconfig.WithFormat] says otherwise. The source reads the key,
// then watches it from the next revision; the client resumes the watch by
// itself across reconnections. When the watch fails (the revision it needs
// was compacted while the client was away, the server lost its leader), the
// source reads the key again and watches from there, backing off between
// failed reads, so a server restart or a compaction loses no update.
//
// The package is separate from liveconfig so that programs that do not use
// etcd do not link its client and gRPC.
package etcdsource

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/liveconfig/internal/retry"
)

// Source follows one etcd key. It is safe for concurrent use, though one
// watcher per Source is the usual way.
type Source struct {
	client  *clientv3.Client
	key     string
	timeout time.Duration
	min     time.Duration
	max     time.Duration
}

var _ liveconfig.Source = (*Source)(nil)

// Option configures a [Source]. A nil Option is ignored.
type Option interface {
	apply(*Source)
}

type optionFunc func(*Source)

func (f optionFunc) apply(s *Source) { f(s) }

// WithRequestTimeout bounds each read of the key (default 5 s). While the
// server is unreachable each timed-out read is reported to the watcher's
// OnError. d <= 0 keeps the default.
func WithRequestTimeout(d time.Duration) Option {
	return optionFunc(func(s *Source) {
		if d > 0 {
			s.timeout = d
		}
	})
}

// WithBackoff sets the wait between failed reads: it starts at min and
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

// New returns a source that follows key through client. The caller keeps
// ownership of client: close it after the watcher.
func New(client *clientv3.Client, key string, opts ...Option) *Source {
	s := &Source{client: client, key: key, timeout: 5 * time.Second, min: 100 * time.Millisecond, max: 10 * time.Second}
	for _, o := range opts {
		if o != nil {
			o.apply(s)
		}
	}
	return s
}

// Name is how the source names the document in updates and errors:
// "etcd:" followed by the key.
func (s *Source) Name() string { return "etcd:" + s.key }

// Watch implements [liveconfig.Source]. It returns nil when ctx is done,
// and an error when the client is closed or the source is misconfigured.
func (s *Source) Watch(ctx context.Context, report func(liveconfig.Change)) error {
	if s.client == nil {
		return errors.New("etcdsource: nil client")
	}
	if s.key == "" {
		return errors.New("etcdsource: empty key")
	}
	b := retry.Backoff{Min: s.min, Max: s.max}
	for {
		rev, err := s.get(ctx, report)
		if err == nil {
			b.Reset()
			err = s.watch(ctx, rev, report)
		}
		if ctx.Err() != nil {
			return nil
		}
		if s.client.Ctx().Err() != nil {
			return errors.New("etcdsource: the etcd client was closed")
		}
		report(liveconfig.Change{Name: s.Name(), Err: err})
		if retry.Sleep(ctx, b.Next()) != nil {
			return nil
		}
	}
}

// get reads the key, reports its value, and returns the store revision
// the value was read at: the watch resumes after it.
func (s *Source) get(ctx context.Context, report func(liveconfig.Change)) (int64, error) {
	gctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Get(gctx, s.key)
	if err != nil {
		return 0, fmt.Errorf("etcdsource: reading %q: %w", s.key, err)
	}
	if len(resp.Kvs) == 0 {
		s.missing(report)
	} else {
		s.value(report, resp.Kvs[0])
	}
	return resp.Header.Revision, nil
}

// watch follows the key from revision rev+1 until the watch fails or ctx
// is done.
func (s *Source) watch(ctx context.Context, rev int64, report func(liveconfig.Change)) error {
	// WithRequireLeader: a member cut off from its cluster ends the watch
	// rather than leaving it silent; the next read then finds a live one.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range s.client.Watch(wctx, s.key, clientv3.WithRev(rev+1)) {
		if err := resp.Err(); err != nil {
			// ErrCompacted among others: what we missed is gone from the
			// history, so the caller reads the key afresh.
			return fmt.Errorf("etcdsource: watching %q from revision %d: %w", s.key, rev+1, err)
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case mvccpb.PUT:
				s.value(report, ev.Kv)
			case mvccpb.DELETE:
				s.missing(report)
			}
			rev = ev.Kv.ModRevision
		}
	}
	return fmt.Errorf("etcdsource: watch on %q ended", s.key)
}

func (s *Source) value(report func(liveconfig.Change), kv *mvccpb.KeyValue) {
	report(liveconfig.Change{Name: s.Name(), Data: kv.Value, Version: strconv.FormatInt(kv.ModRevision, 10)})
}

func (s *Source) missing(report func(liveconfig.Change)) {
	report(liveconfig.Change{Name: s.Name(), Err: fmt.Errorf("etcdsource: key %q: %w", s.key, liveconfig.ErrNotFound)})
}
