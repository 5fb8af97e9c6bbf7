package rtx

import (
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"testing"

	"github.com/sony/gobreaker/v2"
)

const reviewEvict = `
[default.resilience.retry.policies.one]
attempts = 1
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]

[default.resilience.circuit_breaker]
default_fail_max = 2
default_reset_timeout_sec = 30.0
`

// Regression: an entry that an in-flight request holds is evicted as "idle"; the
// request's failure then lands in the orphan, and the next failures count
// in a second circuit for the same upstream: fail_max = 2 never trips.
func TestEvictionNeverSplitsACircuitInUse(t *testing.T) {
	var tr *Transport
	other := "" // a host in the same shard as a.test:80
	fails := 0
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == "a.test" && fails == 0 {
			fails++
			// While this first request is in flight, another upstream of the
			// same shard arrives and fills it.
			tr.RoundTrip(mustGet(t, "http://"+other+"/"))
		}
		if r.URL.Host == "a.test" {
			return nil, netOpError{}.err()
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
	})
	tr = New(testFactory(t, reviewEvict), "one", WithBase(base), withMaxUpstreams(64)) // one entry per shard
	seed := tr.e.ups.seed
	shardOf := func(k string) uint64 { return maphash.String(seed, k) % tableShards }
	for i := 0; ; i++ {
		h := fmt.Sprintf("b%d.test", i)
		if shardOf(h+":80") == shardOf("a.test:80") {
			other = h
			break
		}
	}
	tr.RoundTrip(mustGet(t, "http://a.test/")) // failure 1 (lands in the evicted entry)
	tr.RoundTrip(mustGet(t, "http://a.test/")) // failure 2
	_, err := tr.RoundTrip(mustGet(t, "http://a.test/"))
	if !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("two consecutive failures with fail_max = 2, yet the third request went out: %v", err)
	}
}
