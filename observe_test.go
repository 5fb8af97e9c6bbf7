package rtx

import (
	"bytes"
	"context"
	"encoding/json"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jarcoal/httpmock"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSpansPerAttempt(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	var traceparents []string
	mock.RegisterResponder("GET", "http://api.test:8080/x", func(req *http.Request) (*http.Response, error) {
		traceparents = append(traceparents, req.Header.Get("Traceparent"))
		return statuses(&calls, 503, 503)(req)
	})
	tr := New(testFactory(t, quick), "quick", WithBase(mock), WithTracerProvider(tp), WithPropagator(propagation.TraceContext{}))
	req := mustGet(t, "http://api.test:8080/x?token=secret")
	resp, err := tr.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v, %v", resp, err)
	}
	resp.Body.Close()
	if len(req.Header) != 0 {
		t.Errorf("the caller's headers were modified: %v", req.Header)
	}
	ended := rec.Ended()
	if len(ended) != 4 {
		t.Fatalf("%d spans, want 3 attempts and the request's", len(ended))
	}
	// With no span of the caller's, rtx opens one for the logical request,
	// ended when its body is closed; the attempts are its children.
	parent := ended[3]
	if parent.SpanKind() != trace.SpanKindInternal || parent.Name() != "GET" {
		t.Errorf("request span: %s %v", parent.Name(), parent.SpanKind())
	}
	spans := ended[:3]
	for i, s := range spans {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
			t.Errorf("span %d is not under the request's span", i)
		}
		attrs := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			attrs[kv.Key] = kv.Value
		}
		rc, has := attrs["http.request.resend_count"]
		if (i == 0 && has) || (i > 0 && rc.AsInt64() != int64(i)) {
			t.Errorf("span %d: resend_count %v (present %v)", i, rc.AsInt64(), has)
		}
		if attrs["rtx.policy"].AsString() != "quick" || attrs["server.address"].AsString() != "api.test" || attrs["server.port"].AsInt64() != 8080 {
			t.Errorf("span %d attributes: %v", i, attrs)
		}
		if strings.Contains(attrs["url.full"].AsString(), "secret") {
			t.Errorf("span %d leaks the query: %s", i, attrs["url.full"].AsString())
		}
		if i < 2 {
			if attrs["error.type"].AsString() != "503" || attrs["rtx.class"].AsString() != "HTTPRequestError" {
				t.Errorf("span %d: error.type %q class %q", i, attrs["error.type"].AsString(), attrs["rtx.class"].AsString())
			}
			if len(s.Events()) != 1 || s.Events()[0].Name != "rtx.retry_scheduled" {
				t.Errorf("span %d events: %v", i, s.Events())
			}
		}
		if want := s.SpanContext().TraceID().String(); !strings.Contains(traceparents[i], want) {
			t.Errorf("attempt %d carried traceparent %q, want trace %s", i, traceparents[i], want)
		}
	}
}

func TestMetricsWhenGivingUp(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	mock := httpmock.NewMockTransport()
	mock.RegisterResponder("GET", "http://api.test/x", func(*http.Request) (*http.Response, error) {
		return nil, (netOpError{}).err()
	})
	tr := New(testFactory(t, quick), "quick", WithBase(mock), WithMeterProvider(mp), WithOperationName("inventory"))
	if _, err := tr.RoundTrip(mustGet(t, "http://api.test/x")); err == nil {
		t.Fatal("want an error")
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					got[m.Name] += p.Value
					if op, _ := p.Attributes.Value("operation"); op.AsString() != "inventory" {
						t.Errorf("%s: operation = %v", m.Name, op)
					}
					if pol, _ := p.Attributes.Value("policy"); pol.AsString() != "quick" {
						t.Errorf("%s: policy = %v", m.Name, pol)
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					got[m.Name] += int64(p.Count)
				}
			}
		}
	}
	want := map[string]int64{"retry.attempts": 2, "retry.failures": 1, "retry.delay": 2, "http.client.request.duration": 3}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
}

func TestLogsAreRedacted(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	mock.RegisterNoResponder(statuses(&calls, 503, 503, 503))
	var events []RetryEvent
	var fails []FailEvent
	tr := New(testFactory(t, quick), "quick", WithBase(mock), WithLogger(logger),
		OnRetry(func(ev RetryEvent) { events = append(events, ev) }),
		OnFail(func(ev FailEvent) { fails = append(fails, ev) }))
	req, _ := http.NewRequest("GET", "http://alice:hunter2@api.test/x?token=s3cr3t&page=2", nil)
	req.Header.Set("Authorization", "Bearer top-secret-token")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	out := buf.String()
	for _, secret := range []string{"hunter2", "alice", "s3cr3t", "top-secret-token", "Bearer"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 2 warnings and 1 error:\n%s", len(lines), out)
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"operation", "policy", "attempt", "wait_seconds", "class", "method", "url"} {
		if _, ok := first[k]; !ok {
			t.Errorf("retry log lacks %q: %v", k, first)
		}
	}
	if first["level"] != "WARN" || first["url"] != "http://api.test/x?page=REDACTED&token=REDACTED" {
		t.Errorf("retry log: %v", first)
	}
	if !strings.Contains(lines[2], `"level":"ERROR"`) || !strings.Contains(lines[2], `"reason":"attempts exhausted"`) {
		t.Errorf("give-up log: %s", lines[2])
	}
	if len(events) != 2 || events[0].Attempt != 1 || events[1].Attempt != 2 || events[0].StatusCode != 503 || strings.Contains(events[0].URL, "hunter2") {
		t.Errorf("retry events: %+v", events)
	}
	if len(fails) != 1 || fails[0].Attempts != 3 || fails[0].Reason != ReasonAttempts {
		t.Errorf("fail events: %+v", fails)
	}
}

func TestRetryErrorRedactsURL(t *testing.T) {
	f := testFactory(t, quick)
	client := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, (netOpError{}).err() })}
	err := Do(t.Context(), f, "quick", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://bob:pw123@api.test/?key=abc", nil)
		_, err := client.Do(req)
		return err
	})
	if err == nil || strings.Contains(err.Error(), "pw123") || strings.Contains(err.Error(), "abc") {
		t.Errorf("RetryError message: %v", err)
	}
}
