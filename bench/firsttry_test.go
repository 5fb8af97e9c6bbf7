package bench

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// The first-try benchmarks measure what a retrying transport costs on the
// path every healthy request takes — a GET answered 200 on its first
// attempt — with rtx's default settings (retry budget on, circuits on or
// off), as the number of distinct upstreams grows. Requests cycle over the
// hosts, and every host is visited warmVisits times before the clock
// starts, so the per-upstream state (budgets, circuits) already exists and
// what is measured is finding it, not making it.

// firstTryHosts are the upstream counts measured.
var firstTryHosts = []int{1, 1000, 100000}

// warmVisits is how many times every host is visited before the clock
// starts.
const warmVisits = 64

// firstTryTimeout is the per-attempt timeout of the *Timeout variant.
const firstTryTimeout = 100 * time.Millisecond

// rtxDefaults returns rtx under its default policy and default settings,
// circuits on (a [default.resilience.circuit_breaker] table with enabled =
// true) or off (no such table), with timeout_seconds set when timeout > 0.
func rtxDefaults(circuits bool, timeout time.Duration) Library {
	name := "rtx"
	doc := "[default.resilience.retry]\nenabled = true\n"
	if timeout > 0 {
		doc += fmt.Sprintf("\n[default.resilience.retry.default_policy]\ntimeout_seconds = %g\n", timeout.Seconds())
	}
	if circuits {
		name = "rtx-circuits"
		doc += "\n[default.resilience.circuit_breaker]\nenabled = true\n"
	}
	return Library{Name: name, New: func(base http.RoundTripper, _ Policy) (http.RoundTripper, error) {
		f := policy.NewFactory(nil)
		if _, err := f.Update([]byte(doc), "toml", "defaults.toml"); err != nil {
			return nil, err
		}
		return rtx.New(f, "", rtx.WithBase(base)), nil
	}}
}

// BenchmarkFirstTry is a GET answered on its first attempt, under rtx's
// default settings (no per-attempt timeout), at 1, 1,000 and 100,000
// upstreams, beside the bare base and go-retryablehttp with the same
// schedule (3 attempts, waits 1 s to 10 s).
func BenchmarkFirstTry(b *testing.B) {
	benchFirstTry(b, 0)
}

// BenchmarkFirstTryTimeout is BenchmarkFirstTry with a 100 ms per-attempt
// timeout (timeout_seconds = 0.1; go-retryablehttp's inner client timeout).
func BenchmarkFirstTryTimeout(b *testing.B) {
	benchFirstTry(b, firstTryTimeout)
}

func benchFirstTry(b *testing.B, timeout time.Duration) {
	p := Policy{Attempts: 3, WaitMin: time.Second, WaitMax: 10 * time.Second, Timeout: timeout}
	libs := []Library{Bare, rtxDefaults(false, timeout), rtxDefaults(true, timeout), Retryable}
	for _, n := range firstTryHosts {
		// The host names lie in one string, as a caller's fresh request's
		// host would be in cache: what grows with n is the transport's
		// own state, not the benchmark's strings.
		const width = len("h000000.bench.invalid")
		var all strings.Builder
		for i := range n {
			fmt.Fprintf(&all, "h%06d.bench.invalid", i)
		}
		names := all.String()
		hosts := make([]string, n)
		for i := range hosts {
			hosts[i] = names[i*width : (i+1)*width]
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			for _, lib := range libs {
				b.Run("lib="+lib.Name, func(b *testing.B) {
					c := benchClientPolicy(b, lib, p)
					req, err := http.NewRequest(http.MethodGet, "http://bench.invalid/get", nil)
					if err != nil {
						b.Fatal(err)
					}
					// Every request is the same but for its host, set in
					// place: nothing holds the request once its body is
					// closed, and building a request per host would
					// measure the heap, not the transport.
					// rtx makes a host's state at its first sampled
					// first try (one in 16): 64 visits leave about 2%
					// of the hosts without one.
					for range warmVisits {
						for _, h := range hosts {
							req.URL.Host = h
							resp, err := c.Do(req)
							finish(b, resp, err)
						}
					}
					b.ReportAllocs()
					i := 0
					for b.Loop() {
						req.URL.Host = hosts[i]
						if i++; i == n {
							i = 0
						}
						resp, err := c.Do(req)
						finish(b, resp, err)
					}
				})
			}
		})
	}
}
