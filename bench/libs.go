package bench

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/hashicorp/go-retryablehttp"
)

// Policy is the retry policy every library is given, in the terms they share.
// Delays grow from WaitMin by a factor of 2 up to WaitMax, without jitter; a
// Retry-After hint on 429 or 503 replaces the delay.
type Policy struct {
	Attempts int           // total tries, the first included
	WaitMin  time.Duration // delay before the first retry
	WaitMax  time.Duration // cap on any computed delay
	Timeout  time.Duration // per attempt; 0 means none
}

// DefaultPolicy is the policy of the benchmarks and scenarios: three
// attempts, small waits, a 100 ms per-attempt timeout.
var DefaultPolicy = Policy{
	Attempts: 3,
	WaitMin:  5 * time.Millisecond,
	WaitMax:  2 * time.Second,
	Timeout:  100 * time.Millisecond,
}

// Library is one retrying transport under test.
type Library struct {
	// Name labels the library in benchmark names and tables.
	Name string
	// New wraps base in the library's retrying transport, configured with p.
	New func(base http.RoundTripper, p Policy) (http.RoundTripper, error)
}

// Bare is no retrying at all: the base transport itself.
var Bare = Library{Name: "bare", New: func(base http.RoundTripper, _ Policy) (http.RoundTripper, error) {
	return base, nil
}}

// Retryable is github.com/hashicorp/go-retryablehttp's RoundTripper. Its
// inner http.Client carries the per-attempt timeout (the client calls it
// once per attempt); the last failed response is handed back as it is, as
// rtx does, rather than turned into an error.
var Retryable = Library{Name: "retryablehttp", New: func(base http.RoundTripper, p Policy) (http.RoundTripper, error) {
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: base, Timeout: p.Timeout}
	c.Logger = nil
	c.RetryMax = p.Attempts - 1
	c.RetryWaitMin = p.WaitMin
	c.RetryWaitMax = p.WaitMax
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return &retryablehttp.RoundTripper{Client: c}, nil
}}

// Failsafe is github.com/failsafe-go/failsafe-go/failsafehttp's
// RoundTripper: its HTTP retry policy (Retry-After aware) outside a
// per-attempt timeout policy, returning the last failure as it is.
var Failsafe = Library{Name: "failsafe-go", New: func(base http.RoundTripper, p Policy) (http.RoundTripper, error) {
	rp := failsafehttp.NewRetryPolicyBuilder().
		WithMaxAttempts(p.Attempts).
		WithBackoff(p.WaitMin, p.WaitMax).
		ReturnLastFailure().
		Build()
	policies := []failsafe.Policy[*http.Response]{rp}
	if p.Timeout > 0 {
		policies = append(policies, timeout.New[*http.Response](p.Timeout))
	}
	return failsafehttp.NewRoundTripper(base, policies...), nil
}}

// Retrying lists the retrying libraries, rtx first.
func Retrying() []Library { return []Library{RTX, Retryable, Failsafe} }

// All lists the bare transport and then every retrying library.
func All() []Library { return append([]Library{Bare}, Retrying()...) }

// NewBase returns a pooled transport for loopback tests, the same for every
// library: cleanhttp's settings, with an idle pool large enough for every
// worker so that connection counts measure reuse, not pool size.
func NewBase() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Wrap is l.New that panics on error, for benchmarks.
func (l Library) Wrap(base http.RoundTripper, p Policy) http.RoundTripper {
	rt, err := l.New(base, p)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", l.Name, err))
	}
	return rt
}
