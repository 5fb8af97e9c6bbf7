package rtx

import (
	"maps"
	"sync"
	"sync/atomic"
)

// cowMap is a small map read without locks: readers load an immutable map,
// writers copy it. It suits the bounded, read-mostly caches of the request
// path (budgets by policy and upstream, metric attributes by policy, method
// and class). The zero value is empty and ready to use.
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
// the present one cannot serve, it stores and returns create()'s.
func (c *cowMap[K, V]) loadOrStore(k K, keep func(V) bool, create func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next map[K]V
	if old := c.m.Load(); old != nil {
		if v, ok := (*old)[k]; ok && keep(v) {
			return v
		}
		next = maps.Clone(*old)
	} else {
		next = map[K]V{}
	}
	v := create()
	next[k] = v
	c.m.Store(&next)
	return v
}
