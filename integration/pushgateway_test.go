package integration

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/athomic-go/rtx/integration/internal/faultproxy"
	"github.com/athomic-go/rtx/integration/internal/realserver"
)

// pusher returns a Pushgateway client for job "rtx" that pushes the gauge
// rtx_integration_value = v through client, the way an application does:
// push.New(url, job).Client(httpClient).
func pusher(url string, client *http.Client, v float64) *push.Pusher {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rtx_integration_value", Help: "Pushed by rtx's integration tests."})
	g.Set(v)
	return push.New(url, "rtx").Collector(g).Client(client)
}

// pushed reads the gauge's value from the Pushgateway itself.
func pushed(t *testing.T, pgw *realserver.Server) float64 {
	t.Helper()
	return pgw.Counter(t, "rtx_integration_value", map[string]string{"job": "rtx"})
}

// served reads the Pushgateway's own count of answered pushes by method.
func served(t *testing.T, pgw *realserver.Server, method string) float64 {
	t.Helper()
	return pgw.Counter(t, "pushgateway_http_requests_total",
		map[string]string{"handler": "push", "method": method, "code": "200"})
}

// TestPushgateway drives the Pushgateway client (which takes an
// *http.Client) through the faults. Push is a PUT, idempotent, so the "sdk"
// policy retries it through anything it lists. Add is a POST without an
// idempotency key: after it reached the server rtx does not repeat it unless
// the policy opts in with retry_non_idempotent.
func TestPushgateway(t *testing.T) {
	pgw := realserver.Pushgateway(t)
	proxy := newProxy(t, pgw.URL)
	factory := loadSettings(t)
	faults := []faultproxy.Fault{reset, delay, unavailable}
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("PUT bare fails", func(t *testing.T) {
		proxy.Script(faults...)
		base := newCounting(t)
		if err := pusher(proxy.URL, &http.Client{Transport: base}, 1).PushContext(ctx(t)); err == nil {
			t.Fatal("bare transport: push succeeded through a reset, want an error")
		}
		if base.Attempts() != 1 {
			t.Errorf("bare transport sent %d requests, want 1", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPut, faults[:1])
	})

	t.Run("PUT with rtx", func(t *testing.T) {
		proxy.Script(faults...)
		base := newCounting(t)
		rt, retries := rtxTransport(t, factory, "sdk", base)
		before := served(t, pgw, "put")
		if err := pusher(proxy.URL, &http.Client{Transport: rt}, 42).PushContext(ctx(t)); err != nil {
			t.Fatalf("push through %v: %v", faults, err)
		}
		if base.Attempts() != 4 || retries.Load() != 3 {
			t.Errorf("rtx sent %d attempts with %d retries, want 4 and 3", base.Attempts(), retries.Load())
		}
		checkRecords(t, proxy, http.MethodPut, withPass(faults))
		if !eventually(5*time.Second, func() bool { return pushed(t, pgw) == 42 }) {
			t.Errorf("pushgateway holds rtx_integration_value = %v, want 42", pushed(t, pgw))
		}
		checkGrowth(t, `pushgateway_http_requests_total{handler="push",method="put",code="200"}`,
			func() float64 { return served(t, pgw, "put") }, before, 1)
	})

	t.Run("POST not repeated after it reached the server", func(t *testing.T) {
		proxy.Script(reset)
		base := newCounting(t)
		rt, _ := rtxTransport(t, factory, "sdk", base)
		if err := pusher(proxy.URL, &http.Client{Transport: rt}, 7).AddContext(ctx(t)); err == nil {
			t.Fatal("add through a reset succeeded with policy sdk, want the reset reported, not a repeated POST")
		}
		if base.Attempts() != 1 {
			t.Errorf("rtx sent %d attempts of a POST that reached the server, want 1", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPost, []faultproxy.Fault{reset})
	})

	t.Run("POST repeated with retry_non_idempotent", func(t *testing.T) {
		proxy.Script(faults...)
		base := newCounting(t)
		rt, _ := rtxTransport(t, factory, "sdk_post", base)
		before := served(t, pgw, "post")
		if err := pusher(proxy.URL, &http.Client{Transport: rt}, 7).AddContext(ctx(t)); err != nil {
			t.Fatalf("add through %v with policy sdk_post: %v", faults, err)
		}
		if base.Attempts() != 4 {
			t.Errorf("rtx sent %d attempts, want 4", base.Attempts())
		}
		checkRecords(t, proxy, http.MethodPost, withPass(faults))
		if !eventually(5*time.Second, func() bool { return pushed(t, pgw) == 7 }) {
			t.Errorf("pushgateway holds rtx_integration_value = %v, want 7", pushed(t, pgw))
		}
		checkGrowth(t, `pushgateway_http_requests_total{handler="push",method="post",code="200"}`,
			func() float64 { return served(t, pgw, "post") }, before, 1)
	})
}
