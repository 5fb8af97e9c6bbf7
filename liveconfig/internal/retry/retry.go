// Package retry holds the backoff the live sources use between failed
// calls to their servers.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff doubles a delay from Min up to Max after each failure, with
// jitter. The zero value uses 100 ms and 10 s. It is not safe for
// concurrent use.
type Backoff struct {
	Min, Max time.Duration
	n        int
}

// Next returns the delay before the next try: Min·2^n for the n-th
// consecutive failure, capped at Max, of which the upper half is random.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi < lo {
		hi = max(lo, 10*time.Second)
	}
	d := lo
	for i := 0; i < b.n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Reset starts over from Min after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's error in the second case.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
