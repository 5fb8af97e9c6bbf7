// Package bench compares rtx with two other retrying transports,
// github.com/hashicorp/go-retryablehttp and the failsafehttp package of
// github.com/failsafe-go/failsafe-go, and with no retrying transport at all.
//
// It is its own module so that the libraries it measures never enter rtx's
// go.mod. Its benchmarks measure the cost each transport adds over the base
// [http.RoundTripper]; its tests check behaviour under faults (a
// toxiproxy fault matrix, goroutine and connection leaks); cmd/scenarios
// prints one table of behaviour under faults, library by library.
//
// Every library gets the same policy, [Policy]: the same number of attempts,
// the same exponential delays without jitter, the same per-attempt timeout,
// and it retries the same failures (transport errors, timeouts, 429 and 5xx
// but 501).
package bench
