package main

import (
	"net/http"
	"testing"

	"github.com/athomic-go/rtx/policy"
)

func TestClassDescriptions(t *testing.T) {
	path := writeSettings(t, `
[default.resilience.retry.policies.all]
exceptions = ["HTTPException"]
[default.resilience.retry.policies.conn]
exceptions = ["ConnectionError"]
[default.resilience.retry.policies.req]
exceptions = ["HTTPRequestError", "ConnectionError"]
[default.resilience.retry.policies.limited]
exceptions = ["RateLimited", "HTTPTimeoutError"]
[default.resilience.retry.policies.any]
exceptions = ["Exception"]
[default.resilience.retry.policies.none]
exceptions = []
`)
	f, err := policy.LoadFile(path, policy.WithEnv(""), policy.WithClass(policy.Class{
		Name: "RateLimited", Parent: policy.HTTPRequestError,
		Match: func(r *http.Response, _ error) bool { return r != nil && r.StatusCode == 429 },
	}))
	if err != nil {
		t.Fatal(err)
	}
	snap := f.Snapshot()
	for _, tc := range []struct{ name, retried, not string }{
		{"all", "HTTPException (every class: HTTPRequestError, ConnectionError, RateLimited, HTTPTimeoutError)", ""},
		{"conn", "ConnectionError", "HTTPRequestError other than ConnectionError; HTTPTimeoutError"},
		{"req", "HTTPRequestError (with ConnectionError, RateLimited)", "HTTPTimeoutError"},
		{"limited", "RateLimited; HTTPTimeoutError", "HTTPRequestError other than RateLimited"},
		{"any", "Exception (any error; every class: HTTPException, HTTPRequestError, ConnectionError, RateLimited, HTTPTimeoutError)", ""},
		{"none", "nothing (exceptions is empty)", "Exception"},
	} {
		p, err := snap.Policy(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := retriedClasses(snap.Classes(), p); got != tc.retried {
			t.Errorf("%s: retried %q, want %q", tc.name, got, tc.retried)
		}
		if got := notRetried(snap.Classes(), p); got != tc.not {
			t.Errorf("%s: not retried %q, want %q", tc.name, got, tc.not)
		}
	}
}
