package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// TestMetricsReadAsTheSeedsNames: through OpenTelemetry's Prometheus
// exporter, rtx's instruments read as the seed's retry_attempts_total and
// retry_failures_total, with operation and policy labels.
func TestMetricsReadAsTheSeedsNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer mp.Shutdown(context.Background())

	path := filepath.Join(t.TempDir(), "settings.toml")
	settings := "[default.resilience.retry.policies.p]\nattempts = 3\nwait_min_seconds = 0.001\nwait_max_seconds = 0.002\nexceptions = [\"HTTPException\"]\n"
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	tr := rtx.New(f, "p", rtx.WithMeterProvider(mp), rtx.WithOperationName("inventory"))
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["operation"] != "inventory" || labels["policy"] != "p" {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	for name, want := range map[string]float64{
		"retry_attempts_total":                 2, // n-1 for n tries, as the seed counts
		"retry_failures_total":                 1,
		"retry_delay_seconds":                  2,
		"http_client_request_duration_seconds": 3,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
}
