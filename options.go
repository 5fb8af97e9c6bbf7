package rtx

import (
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/athomic-go/rtx/breaker"
)

// DefaultMaxReplayBody is the largest request body captured for replay when
// the request has no GetBody. A larger body is sent once, streamed.
const DefaultMaxReplayBody = 8 << 20

// maxDrain bounds how much of a discarded response is read so that its
// connection can be reused.
const maxDrain = 64 << 10

// Option configures a [Transport], a [Retrier] or [Do]. A nil Option is ignored.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	base         http.RoundTripper
	breakerHook  func(*http.Request) bool
	circuits     breaker.Config
	maxReplay    int64
	maxUpstreams int // per-upstream entries kept; 0 = maxUpstreams
	hedgeCalls   bool
	operation    string
	onRetry      func(RetryEvent)
	onFail       func(FailEvent)
	logger       *slog.Logger
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	prop         propagation.TextMapPropagator
}

func newConfig(opts []Option) config {
	c := config{maxReplay: DefaultMaxReplayBody}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithBase sets the transport that sends each attempt. The default is a new
// cleanhttp.DefaultPooledTransport() per [Transport]. A nil rt keeps the
// default.
func WithBase(rt http.RoundTripper) Option {
	return optionFunc(func(c *config) {
		if rt != nil {
			c.base = rt
		}
	})
}

// WithCircuitBreakerHook sets a function consulted before every attempt, the
// first included, as the seed's circuit_breaker_hook: true means the circuit
// is open. Open before the first attempt, the request fails at once with an
// error matching [ErrCircuitOpen]; open before a retry, the retries stop and
// the last outcome is returned. [Do] calls it with a nil request. The hook
// must be safe for concurrent use.
func WithCircuitBreakerHook(open func(*http.Request) bool) Option {
	return optionFunc(func(c *config) { c.breakerHook = open })
}

// WithCircuits sets how a [Transport]'s or [Retrier]'s circuits are keyed
// and reported while the settings enable circuit breakers
// ([resilience.circuit_breaker]). By default they are keyed by upstream
// host:port (a Retrier's by operation name) and report nothing. Circuits
// belong to the Transport or Retrier: two given the same Config keep their
// own.
func WithCircuits(c breaker.Config) Option {
	return optionFunc(func(cfg *config) { cfg.circuits = c })
}

// WithMaxReplayBody sets the largest body (in bytes) captured for replay
// when a request has no GetBody; the default is [DefaultMaxReplayBody]. A
// larger body is sent once, streamed, and not retried. n <= 0 turns capture
// off: such bodies are always sent once.
func WithMaxReplayBody(n int64) Option {
	return optionFunc(func(c *config) { c.maxReplay = n })
}

// WithOperationName names the operation in events, logs, spans and metrics,
// and a Retrier's upstream (its circuit and budget). The default is "http"
// for a [Transport] and "do" for a [Retrier].
func WithOperationName(name string) Option {
	return optionFunc(func(c *config) { c.operation = name })
}

// OnRetry sets a function called before each delay, with what failed and
// how long the wait will be. It runs on the request's goroutine and delays
// the retry while it runs. A panic in it is not recovered: it propagates to
// the caller of RoundTrip or Do, as any bug in the caller's code would.
func OnRetry(fn func(RetryEvent)) Option {
	return optionFunc(func(c *config) { c.onRetry = fn })
}

// OnFail sets a function called once when a retry loop gives up on a
// failure its policy lists (see [RetryError] for the reasons). Panics
// propagate as with [OnRetry].
func OnFail(fn func(FailEvent)) Option {
	return optionFunc(func(c *config) { c.onFail = fn })
}

// RetryEvent describes a retry about to be scheduled. It carries no request
// body and no header values; URL has no userinfo and no query values.
type RetryEvent struct {
	Operation  string        // WithOperationName
	Policy     string        // policy name ("default" for the default)
	Attempt    int           // the attempt that failed, from 1
	Delay      time.Duration // the wait before the next attempt
	Class      string        // class of the failure
	StatusCode int           // the response's status, 0 when Err is set
	Err        error         // the attempt's error, nil when StatusCode is set
	Method     string        // request method ("" for Do)
	URL        string        // redacted request URL ("" for Do)
}

// FailEvent describes a retry loop giving up. Like [RetryEvent] it carries
// no body, no header values and a redacted URL.
type FailEvent struct {
	Operation  string // WithOperationName
	Policy     string // policy name ("default" for the default)
	Attempts   int    // attempts made
	Class      string // class of the last failure
	Reason     Reason // why the loop stopped
	StatusCode int    // the last response's status, 0 when Err is set
	Err        error  // the last error, nil when the loop ended on a response
	Method     string // request method ("" for Do)
	URL        string // redacted request URL ("" for Do)
}
