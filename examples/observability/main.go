// Command observability sends two requests through rtx to a loopback server
// that fails the first two attempts, and prints, in one screen, what rtx
// reports: its log lines, the spans grouped by trace, and the metrics. The
// spans and metrics are collected in memory with the OpenTelemetry SDK
// (a tracetest.SpanRecorder and a metric ManualReader) and summarised; a
// real program would give the same providers an OTLP or Prometheus exporter.
//
//	go run ./examples/observability
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

const settings = `
[default.resilience.retry.policies.fast_retry]
attempts = 3
wait_min_seconds = 0.05
wait_max_seconds = 0.2
exceptions = ["HTTPException"]
`

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(ctx)
	defer tp.Shutdown(ctx)

	factory := policy.NewFactory(nil)
	if _, err := factory.Update([]byte(settings), "toml", "example"); err != nil {
		return err
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()

	// Log lines without their time, so that the output reads the same on
	// every run.
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	transport := rtx.New(factory, "fast_retry",
		rtx.WithTracerProvider(tp),
		rtx.WithMeterProvider(mp),
		rtx.WithLogger(logger),
		rtx.WithOperationName("inventory"))
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	fmt.Fprintln(out, "# logs (the password and the token in the URL never reach logs, spans or metrics)")
	url := strings.Replace(srv.URL, "http://", "http://alice:hunter2@", 1) + "/items?token=secret"
	for i := 1; i <= 2; i++ { // the first request is retried twice, the second succeeds at once
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close() // ends the request's spans
		fmt.Fprintf(out, "request %d: %s\n", i, resp.Status)
	}

	printSpans(out, spans.Ended())
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		return err
	}
	printMetrics(out, rm)
	return nil
}

// printSpans prints one line per span, grouped by trace, children under
// their parent: name, kind, the attempt's resend count, status code, class
// and error type, and the events.
func printSpans(out io.Writer, ended []sdktrace.ReadOnlySpan) {
	byTrace := map[string][]sdktrace.ReadOnlySpan{}
	var order []string
	for _, s := range ended {
		id := s.SpanContext().TraceID().String()
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], s)
	}
	fmt.Fprintf(out, "\n# spans: %d in %d traces, for 2 requests\n", len(ended), len(order))
	for _, id := range order {
		ss := byTrace[id]
		slices.SortFunc(ss, func(a, b sdktrace.ReadOnlySpan) int {
			if c := a.StartTime().Compare(b.StartTime()); c != 0 {
				return c
			}
			return cmp.Compare(a.Parent().SpanID().String(), b.Parent().SpanID().String()) // the request's span (no parent here) first
		})
		fmt.Fprintf(out, "trace %s…\n", id[:8])
		inTrace := map[string]bool{}
		for _, s := range ss {
			inTrace[s.SpanContext().SpanID().String()] = true
		}
		for _, s := range ss {
			indent := "  "
			if inTrace[s.Parent().SpanID().String()] {
				indent = "    "
			}
			attrs := map[attribute.Key]string{}
			for _, kv := range s.Attributes() {
				attrs[kv.Key] = kv.Value.Emit()
			}
			line := fmt.Sprintf("%s%-4s %-8s", indent, s.Name(), s.SpanKind())
			for _, k := range []attribute.Key{"http.request.resend_count", "http.response.status_code", "rtx.class", "error.type", "rtx.policy"} {
				if v, ok := attrs[k]; ok {
					line += fmt.Sprintf(" %s=%s", strings.TrimPrefix(string(k), "http."), v)
				}
			}
			for _, ev := range s.Events() {
				line += " event=" + ev.Name
				for _, kv := range ev.Attributes {
					if kv.Key == "rtx.delay_seconds" {
						line += fmt.Sprintf("(delay %.3fs)", kv.Value.AsFloat64())
					}
				}
			}
			fmt.Fprintln(out, line)
		}
	}
}

// printMetrics prints one line per data point: instrument, attributes and
// value; for a histogram its count, sum and the buckets that hold values.
func printMetrics(out io.Writer, rm metricdata.ResourceMetrics) {
	fmt.Fprintln(out, "\n# metrics")
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(out, "%-30s %s = %d\n", m.Name, attrs(dp.Attributes), dp.Value)
				}
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(out, "%-30s %s = %g\n", m.Name, attrs(dp.Attributes), dp.Value)
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(out, "%-30s %s = %d\n", m.Name, attrs(dp.Attributes), dp.Value)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					fmt.Fprintf(out, "%-30s %s: count %d, sum %.4g %s, buckets %s\n",
						m.Name, attrs(dp.Attributes), dp.Count, dp.Sum, m.Unit, buckets(dp.Bounds, dp.BucketCounts))
				}
			default:
				fmt.Fprintf(out, "%-30s (%T)\n", m.Name, d)
			}
		}
	}
}

// attrs renders an attribute set as {k=v, ...}, sorted by key.
func attrs(set attribute.Set) string {
	var parts []string
	for _, kv := range set.ToSlice() {
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// buckets renders the histogram buckets that hold values, as "≤0.005: 3".
func buckets(bounds []float64, counts []uint64) string {
	var parts []string
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if i < len(bounds) {
			parts = append(parts, fmt.Sprintf("≤%g: %d", bounds[i], n))
		} else {
			parts = append(parts, fmt.Sprintf(">%g: %d", bounds[len(bounds)-1], n))
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
