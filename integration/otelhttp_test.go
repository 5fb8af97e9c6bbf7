package integration

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

// TestUnderOtelhttp: with otelhttp outside rtx, the logical request has one
// otelhttp span and each attempt one rtx span under it; nothing is
// duplicated, and every attempt carries its own span's trace context.
func TestUnderOtelhttp(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	prop := propagation.TraceContext{}

	var hits atomic.Int32
	var parents []trace.SpanID
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := trace.SpanContextFromContext(prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		parents = append(parents, sc.SpanID())
		if hits.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	f := policy.NewFactory(nil)
	if _, err := f.Update([]byte("[default.resilience.retry.policies.p]\nwait_min_seconds = 0.001\nwait_max_seconds = 0.002\n"), "toml", "test"); err != nil {
		t.Fatal(err)
	}
	inner := rtx.New(f, "p", rtx.WithTracerProvider(tp), rtx.WithPropagator(prop))
	defer inner.CloseIdleConnections()
	client := &http.Client{Transport: otelhttp.NewTransport(inner,
		otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	spans := rec.Ended()
	var outer sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.InstrumentationScope().Name == "github.com/athomic-go/rtx" {
			attempts = append(attempts, s)
		} else {
			outer = s
		}
	}
	if outer == nil || len(spans) != 4 || len(attempts) != 3 {
		t.Fatalf("%d spans (%d from rtx), want 1 otelhttp span and 3 attempt spans", len(spans), len(attempts))
	}
	for i, a := range attempts {
		if a.Parent().SpanID() != outer.SpanContext().SpanID() {
			t.Errorf("attempt %d is not a child of otelhttp's span", i)
		}
		if parents[i] != a.SpanContext().SpanID() {
			t.Errorf("attempt %d reached the server under span %s, want its own %s", i, parents[i], a.SpanContext().SpanID())
		}
	}
}
