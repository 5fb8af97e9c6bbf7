package consulsource_test

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConsul serves Consul's KV HTTP API for single keys, blocking queries
// included, as a Consul agent does:
//
//   - GET /v1/kv/<key>?index=N&wait=D answers at once when index is absent
//     or 0, or the key's index is above N; otherwise it holds the request
//     until the key's index moves past N or D (default 5m, at most 10m,
//     plus up to D/16 of jitter) passes, and then answers with the current
//     state, whatever its index.
//   - The answer carries X-Consul-Index (never 0), X-Consul-KnownLeader and
//     X-Consul-LastContact; 200 with a JSON array of one entry whose Value
//     is base64, or 404 with an empty body for a missing key.
//   - A key's index is its ModifyIndex; after a delete, the index of the
//     delete; for a key never written, the KV table's index.
//   - PUT and DELETE /v1/kv/<key> write and answer "true".
//
// Tests can fail queries (failNext) and move the indexes backwards
// (restore), as a snapshot restore does.
type fakeConsul struct {
	*httptest.Server

	mu      sync.Mutex
	index   uint64 // raft index: the last write
	kv      map[string]*kvEntry
	tomb    map[string]uint64 // deletion index of deleted keys
	changed chan struct{}     // closed and replaced on every write
	fail    int               // queries still to fail with 500
	queries int
	waits   []string // the wait parameters seen
}

type kvEntry struct {
	value                  []byte
	createIndex, modifyIdx uint64
	flags                  uint64
}

func newFakeConsul(t *testing.T) *fakeConsul {
	t.Helper()
	c := &fakeConsul{index: 10, kv: map[string]*kvEntry{}, tomb: map[string]uint64{}, changed: make(chan struct{})}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *fakeConsul) serve(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/")
	if !ok || key == "" {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		c.get(w, r, key)
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.put(key, body)
		io.WriteString(w, "true")
	case http.MethodDelete:
		c.delete(key)
		io.WriteString(w, "true")
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// keyIndex is the blocking index of a query on key. Called with c.mu held.
func (c *fakeConsul) keyIndex(key string) uint64 {
	idx := c.index
	if e, ok := c.kv[key]; ok {
		idx = e.modifyIdx
	} else if d, ok := c.tomb[key]; ok {
		idx = d
	}
	return max(idx, 1)
}

func (c *fakeConsul) get(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	var minIndex uint64
	if s := q.Get("index"); s != "" {
		var err error
		if minIndex, err = strconv.ParseUint(s, 10, 64); err != nil {
			http.Error(w, "Invalid index", http.StatusBadRequest)
			return
		}
	}
	wait := 5 * time.Minute
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			http.Error(w, "Invalid wait time", http.StatusBadRequest)
			return
		}
		wait = min(d, 10*time.Minute)
	}
	c.mu.Lock()
	c.queries++
	c.waits = append(c.waits, q.Get("wait"))
	if c.fail > 0 {
		c.fail--
		c.mu.Unlock()
		http.Error(w, "rpc error: No cluster leader", http.StatusInternalServerError)
		return
	}
	c.mu.Unlock()

	timer := time.NewTimer(wait + rand.N(wait/16+1))
	defer timer.Stop()
	for {
		c.mu.Lock()
		idx := c.keyIndex(key)
		e := c.kv[key]
		changed := c.changed
		var entry kvEntry
		if e != nil {
			entry = *e
		}
		c.mu.Unlock()
		if minIndex == 0 || idx > minIndex {
			c.answer(w, key, idx, e != nil, entry)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			c.answer(w, key, idx, e != nil, entry)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (c *fakeConsul) answer(w http.ResponseWriter, key string, idx uint64, found bool, e kvEntry) {
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(idx, 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	if !found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	h.Set("Content-Type", "application/json")
	var value any // Consul sends null for an empty value
	if len(e.value) > 0 {
		value = e.value // []byte marshals as base64
	}
	json.NewEncoder(w).Encode([]map[string]any{{
		"LockIndex":   0,
		"Key":         key,
		"Flags":       e.flags,
		"Value":       value,
		"CreateIndex": e.createIndex,
		"ModifyIndex": e.modifyIdx,
	}})
}

// notify wakes the blocked queries. Called with c.mu held.
func (c *fakeConsul) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *fakeConsul) put(key string, value []byte) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	e, ok := c.kv[key]
	if !ok {
		e = &kvEntry{createIndex: c.index}
		c.kv[key] = e
	}
	e.value, e.modifyIdx = append([]byte(nil), value...), c.index
	delete(c.tomb, key)
	c.notify()
	return c.index
}

func (c *fakeConsul) delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index++
	if _, ok := c.kv[key]; ok {
		delete(c.kv, key)
		c.tomb[key] = c.index
	}
	c.notify()
}

// restore replaces the store with one where key holds value at a much lower
// index, as restoring an older snapshot does: every index goes backwards.
func (c *fakeConsul) restore(key string, value []byte, index uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.index = index
	c.kv = map[string]*kvEntry{key: {value: append([]byte(nil), value...), createIndex: index, modifyIdx: index}}
	c.tomb = map[string]uint64{}
	c.notify()
}

func (c *fakeConsul) failNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fail = n
}

func (c *fakeConsul) stats() (queries int, waits []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queries, append([]string(nil), c.waits...)
}
