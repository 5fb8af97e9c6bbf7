// Command observability sends one request through rtx to a loopback server
// that fails twice, and prints what rtx reports: the JSON logs of the
// retries, then the attempt spans and the metrics, through OpenTelemetry's
// stdout exporters.
//
//	go run ./examples/observability
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

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
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "observability:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	spans, err := stdouttrace.New(stdouttrace.WithPrettyPrint())
	if err != nil {
		return err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(spans))
	metrics, err := stdoutmetric.New(stdoutmetric.WithPrettyPrint())
	if err != nil {
		return err
	}
	reader := sdkmetric.NewPeriodicReader(metrics)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

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

	transport := rtx.New(factory, "fast_retry",
		rtx.WithTracerProvider(tp),
		rtx.WithMeterProvider(mp),
		rtx.WithLogger(slog.New(slog.NewJSONHandler(os.Stdout, nil))),
		rtx.WithOperationName("inventory"))
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	fmt.Println("# logs")
	// The password and the token never reach the logs, spans or metrics.
	url := strings.Replace(srv.URL, "http://", "http://alice:hunter2@", 1) + "/items?token=secret"
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	fmt.Println("# spans")
	if err := tp.Shutdown(ctx); err != nil {
		return err
	}
	fmt.Println("# metrics")
	return mp.Shutdown(ctx)
}
