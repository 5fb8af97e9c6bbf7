package integration

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/athomic-go/rtx/integration/internal/faultproxy"
	"github.com/athomic-go/rtx/integration/internal/realserver"
)

// TestPrometheusWithoutOptIn uses the "sdk" policy, which does not set
// retry_non_idempotent, to show which Prometheus calls rtx retries on its
// own (RFC 9110 idempotency, as net/http's Request.isReplayable judges it):
//
//   - GET endpoints, such as /api/v1/status/buildinfo, are idempotent;
//   - queries are POSTs, but client_golang marks them idempotent with an
//     empty Idempotency-Key entry (present in the header map, not sent on
//     the wire), net/http's own convention for "safe to replay".
func TestPrometheusWithoutOptIn(t *testing.T) {
	prom := realserver.Prometheus(t)
	proxy := newProxy(t, prom.URL)
	factory := loadSettings(t)
	faults := []faultproxy.Fault{reset, delay, unavailable}

	t.Run("GET buildinfo", func(t *testing.T) {
		proxy.Script(faults...)
		base := newCounting(t)
		rt, retries := rtxTransport(t, factory, "sdk", base)
		labels := map[string]string{"handler": "/api/v1/status/buildinfo", "code": "200"}
		before := prom.Counter(t, "prometheus_http_requests_total", labels)

		client, err := api.NewClient(api.Config{Address: proxy.URL, RoundTripper: rt})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		info, err := v1.NewAPI(client).Buildinfo(ctx)
		if err != nil {
			t.Fatalf("Buildinfo through %v: %v", faults, err)
		}
		if info.Version == "" {
			t.Errorf("Buildinfo = %+v, want a version", info)
		}
		if base.Attempts() != 4 || retries.Load() != 3 {
			t.Errorf("rtx sent %d attempts with %d retries, want 4 and 3", base.Attempts(), retries.Load())
		}
		checkRecords(t, proxy, http.MethodGet, withPass(faults))
		checkGrowth(t, `prometheus_http_requests_total{handler="/api/v1/status/buildinfo",code="200"}`,
			func() float64 { return prom.Counter(t, "prometheus_http_requests_total", labels) }, before, 1)
	})

	t.Run("POST query with client_golang's Idempotency-Key", func(t *testing.T) {
		proxy.Script(faults...)
		base := newCounting(t)
		rt, _ := rtxTransport(t, factory, "sdk", base)
		before := queriesServed(t, prom)
		if err := queryVector42(t, proxy.URL, rt); err != nil {
			t.Fatalf("query through %v without retry_non_idempotent: %v", faults, err)
		}
		if base.Attempts() != 4 {
			t.Errorf("rtx sent %d attempts, want 4", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPost, withPass(faults))
		checkServed(t, prom, before, 1)
	})
}
