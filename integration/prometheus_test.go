package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/integration/internal/faultproxy"
	"github.com/athomic-go/rtx/integration/internal/realserver"
)

const (
	reset       = faultproxy.Reset
	delay       = faultproxy.Delay
	unavailable = faultproxy.Unavailable
)

// queryVector42 runs the instant query vector(42) with the Prometheus API
// client over rt against the server at address, the way an application
// does: api.Config{RoundTripper: rt}.
func queryVector42(t *testing.T, address string, rt http.RoundTripper) error {
	t.Helper()
	client, err := api.NewClient(api.Config{Address: address, RoundTripper: rt})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	val, _, err := v1.NewAPI(client).Query(ctx, "vector(42)", time.Now())
	if err != nil {
		return err
	}
	vec, ok := val.(model.Vector)
	if !ok || len(vec) != 1 || vec[0].Value != 42 {
		return fmt.Errorf("query vector(42) = %v, want one sample of 42", val)
	}
	return nil
}

// queriesServed reads Prometheus' own count of answered instant queries.
func queriesServed(t *testing.T, prom *realserver.Server) float64 {
	t.Helper()
	return prom.Counter(t, "prometheus_http_requests_total",
		map[string]string{"handler": "/api/v1/query", "code": "200"})
}

// checkServed fails t unless Prometheus' count of answered queries grew by
// exactly want since before.
func checkServed(t *testing.T, prom *realserver.Server, before, want float64) {
	t.Helper()
	checkGrowth(t, `prometheus_http_requests_total{handler="/api/v1/query",code="200"}`,
		func() float64 { return queriesServed(t, prom) }, before, want)
}

// TestPrometheusQueryThroughFaults drives the Prometheus HTTP API client
// through each fault, first over a bare transport, then over rtx, and
// checks both outcomes and that every count agrees: the attempts the base
// transport sent, the retries rtx reported, the requests the proxy saw, and
// the queries Prometheus itself answered.
func TestPrometheusQueryThroughFaults(t *testing.T) {
	prom := realserver.Prometheus(t)
	proxy := newProxy(t, prom.URL)
	factory := loadSettings(t)

	for _, tc := range []struct {
		name   string
		faults []faultproxy.Fault
	}{
		{"connection reset", []faultproxy.Fault{reset}},
		{"answer held past the attempt timeout", []faultproxy.Fault{delay}},
		{"503 for a while", []faultproxy.Fault{unavailable, unavailable, unavailable}},
		{"reset then held then 503", []faultproxy.Fault{reset, delay, unavailable}},
		// The 503 closes its connection (see faultproxy.Unavailable), so the
		// reset meets a fresh one: on a reused keep-alive connection net/http
		// itself would resend the request once, under rtx, and the proxy
		// would see one request more than rtx sent.
		{"503 then reset", []faultproxy.Fault{unavailable, reset}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without rtx: the SDK's call fails on the first fault.
			proxy.Script(tc.faults...)
			bare := newCounting(t)
			before := queriesServed(t, prom)
			if err := queryVector42(t, proxy.URL, bare); err == nil {
				t.Fatalf("bare transport: query succeeded through %v, want an error", tc.faults)
			} else {
				t.Logf("bare transport: %v", err)
			}
			if bare.Attempts() != 1 {
				t.Errorf("bare transport sent %d requests, want 1", bare.Attempts())
			}
			checkRecords(t, proxy, http.MethodPost, tc.faults[:1])
			checkServed(t, prom, before, 0)

			// With rtx: the same call succeeds within the policy's attempts.
			proxy.Script(tc.faults...)
			base := newCounting(t)
			rt, retries := rtxTransport(t, factory, "sdk_post", base)
			before = queriesServed(t, prom)
			if err := queryVector42(t, proxy.URL, rt); err != nil {
				t.Fatalf("rtx: query through %v: %v", tc.faults, err)
			}
			attempts := len(tc.faults) + 1
			if base.Attempts() != attempts {
				t.Errorf("rtx sent %d attempts, want %d", base.Attempts(), attempts)
			}
			if got := retries.Load(); got != int64(attempts-1) {
				t.Errorf("rtx reported %d retries, want %d", got, attempts-1)
			}
			checkRecords(t, proxy, http.MethodPost, withPass(tc.faults))
			checkServed(t, prom, before, 1)
		})
	}
}

// TestPrometheusQueryAttemptsSpent checks how rtx ends when the faults
// outlast the policy's four attempts: on a 503 the SDK gets that response
// as is (and reports its own server error); on resets it gets a
// *rtx.RetryError naming the policy and the attempts.
func TestPrometheusQueryAttemptsSpent(t *testing.T) {
	prom := realserver.Prometheus(t)
	proxy := newProxy(t, prom.URL)
	factory := loadSettings(t)

	t.Run("503", func(t *testing.T) {
		faults := []faultproxy.Fault{unavailable, unavailable, unavailable, unavailable, unavailable}
		proxy.Script(faults...)
		base := newCounting(t)
		rt, _ := rtxTransport(t, factory, "sdk_post", base)
		before := queriesServed(t, prom)
		err := queryVector42(t, proxy.URL, rt)
		var apiErr *v1.Error
		if !errors.As(err, &apiErr) || apiErr.Type != v1.ErrServer {
			t.Fatalf("err = %v, want the SDK's own server error (*v1.Error, %s) for the 503 rtx handed back", err, v1.ErrServer)
		}
		if base.Attempts() != 4 {
			t.Errorf("rtx sent %d attempts, want the policy's 4", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPost, faults[:4])
		checkServed(t, prom, before, 0)
	})

	t.Run("resets", func(t *testing.T) {
		faults := []faultproxy.Fault{reset, reset, reset, reset, reset}
		proxy.Script(faults...)
		base := newCounting(t)
		rt, _ := rtxTransport(t, factory, "sdk_post", base)
		err := queryVector42(t, proxy.URL, rt)
		var re *rtx.RetryError
		if !errors.As(err, &re) {
			t.Fatalf("err = %v, want a *rtx.RetryError", err)
		}
		if re.Policy != "sdk_post" || re.Attempts != 4 {
			t.Errorf("RetryError{Policy: %q, Attempts: %d}, want {sdk_post, 4}", re.Policy, re.Attempts)
		}
		if base.Attempts() != 4 {
			t.Errorf("rtx sent %d attempts, want 4", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPost, faults[:4])
	})
}
