// Package rtx makes any [net/http.Client] resilient by swapping its transport.
//
//	factory, err := policy.LoadFile("settings.toml")
//	client := &http.Client{Transport: rtx.New(factory, "fast_retry")}
//
// Requests are retried under named policies read from a settings file
// (attempts, backoff, jitter, which classes of failure to retry); bodies are
// replayed exactly; timeouts, resets, HTTP/2 stream faults and 5xx answers
// are classified into the classes of package
// [github.com/athomic-go/rtx/policy]; per-upstream circuit breakers and
// retry budgets keep retries from making an outage worse; a policy may
// hedge slow requests; policies change at runtime through the factory's
// snapshot without a restart.
//
// [Transport] obeys the [net/http.RoundTripper] contract: the caller's
// request is never modified, its body is always closed, and the result is a
// response or an error, never both. When retries run out on a response (a
// 503, say) that response is returned as is, body unread, so SDKs parse it
// as usual. When they run out on an error, the error is a [*RetryError].
//
// A [Retrier] (and the one-shot [Do]) runs the same call engine around any
// function, as the seed's RetryHandler does: any error is an Exception,
// and [Permanent] marks one that must not be retried. [DebugHandler] shows
// what Transports and Retriers are doing now.
//
// The package keeps no package-level mutable state and writes nothing to
// stdout or stderr.
package rtx
