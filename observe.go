package rtx

import (
	"net/http"
	"net/url"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// observer reports retries and failures to the configured hooks.
type observer struct {
	operation string
	onRetry   func(RetryEvent)
	onFail    func(FailEvent)
}

func newObserver(c *config) observer {
	return observer{operation: c.operation, onRetry: c.onRetry, onFail: c.onFail}
}

func (o *observer) retry(req *http.Request, pol *policy.Policy, out last, delay time.Duration) {
	if o.onRetry == nil {
		return
	}
	ev := RetryEvent{Operation: o.operation, Policy: policyName(pol), Attempt: out.attempt, Delay: delay, Class: out.class, Err: out.err}
	if out.resp != nil {
		ev.StatusCode = out.resp.StatusCode
	}
	if req != nil {
		ev.Method, ev.URL = method(req), RedactURL(req.URL)
	}
	o.onRetry(ev)
}

func (o *observer) fail(req *http.Request, pol *policy.Policy, out last, reason string) {
	if o.onFail == nil {
		return
	}
	ev := FailEvent{Operation: o.operation, Policy: policyName(pol), Attempts: out.attempt, Class: out.class, Reason: reason, Err: out.err}
	if out.resp != nil {
		ev.StatusCode = out.resp.StatusCode
	}
	if req != nil {
		ev.Method, ev.URL = method(req), RedactURL(req.URL)
	}
	o.onFail(ev)
}

func method(r *http.Request) string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}

// RedactURL renders u without userinfo and with every query value replaced
// by "REDACTED" (keys are kept), so that it can be logged. The fragment is
// dropped. A nil u is "".
func RedactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath, Opaque: u.Opaque}
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			r.RawQuery = "REDACTED"
		} else {
			for k := range q {
				q[k] = []string{"REDACTED"}
			}
			r.RawQuery = q.Encode()
		}
	}
	return r.String()
}
