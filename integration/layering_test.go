package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/athomic-go/rtx/integration/internal/faultproxy"
	"github.com/athomic-go/rtx/policy"
)

// TestSingleAttemptUnderRetryingSDK backs the README caveat on SDKs that
// retry on their own: rtx kept for timeouts and telemetry makes exactly one
// attempt per SDK attempt, whether the whole file is in mesh mode or the
// policy says attempts = 1. (The server is in-process here: what counts is
// the attempts on the wire, which the proxy sees.)
func TestSingleAttemptUnderRetryingSDK(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	proxy := newProxy(t, backend.URL)

	for _, tc := range []struct{ name, settings string }{
		{"deployment_mode mesh", `[default]
deployment_mode = "mesh"
` + settings},
		{"attempts = 1", `[default.resilience.retry.policies.sdk]
attempts = 1
timeout_seconds = 0.5
exceptions = ["HTTPException"]
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "settings.toml")
			if err := os.WriteFile(path, []byte(tc.settings), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := policy.LoadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, fault := range []faultproxy.Fault{reset, unavailable} {
				proxy.Script(fault)
				base := newCounting(t)
				rt, retries := rtxTransport(t, f, "sdk", base)
				ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, proxy.URL+"/x", nil)
				resp, err := (&http.Client{Transport: rt}).Do(req)
				if err == nil {
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						t.Errorf("%s: got %s %q, want the fault handed back", fault, resp.Status, strings.TrimSpace(string(body)))
					}
				}
				cancel()
				if base.Attempts() != 1 || retries.Load() != 0 {
					t.Errorf("%s: rtx sent %d attempts with %d retries, want 1 and 0", fault, base.Attempts(), retries.Load())
				}
				checkRecords(t, proxy, http.MethodGet, []faultproxy.Fault{fault})
			}
		})
	}
}
