package rtx

import (
	"maps"
	"sync"
	"sync/atomic"
)

// maxAttributes bounds the cache of metric attributes (policies x methods
// x classes).
const maxAttributes = 1024

// cowMap is a small map read without locks: readers load an immutable map,
// writers copy it. It suits small, bounded, read-mostly caches of what can
// be made again (metric attributes by policy, method and class); state
// that must be kept goes in a table. The zero value is empty and ready to use.
type cowMap[K comparable, V any] struct {
	mu sync.Mutex // serializes writers
	m  atomic.Pointer[map[K]V]
}

func (c *cowMap[K, V]) load(k K) (V, bool) {
	if m := c.m.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// loadOrStore returns the value for k. When there is none, or keep says
// the present one cannot serve, it stores and returns create()'s. A map
// that has reached limit entries is dropped first: the caches hold what can
// be made again, and a client that talks to ever more hosts must not grow
// them (or the cost of copying them) without bound.
func (c *cowMap[K, V]) loadOrStore(k K, limit int, keep func(V) bool, create func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[K]V{}
	if old := c.m.Load(); old != nil {
		if v, ok := (*old)[k]; ok && keep(v) {
			return v
		}
		if len(*old) < limit {
			next = maps.Clone(*old)
		}
	}
	v := create()
	next[k] = v
	c.m.Store(&next)
	return v
}
