// Command quickstart starts a flaky server on loopback, sends requests to it
// through rtx under the fast_retry policy of examples/settings.toml, and
// prints every attempt the server sees: its class (one of each:
// HTTPRequestError, ConnectionError, HTTPTimeoutError) and the wait before
// the next, then the winning attempt, then a summary.
//
//	go run ./examples/quickstart
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

func main() {
	settings := flag.String("config", defaultSettings(), "settings file")
	requests := flag.Int("n", 5, "requests to send")
	flag.Parse()
	if err := run(*settings, *requests); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// defaultSettings finds examples/settings.toml from the repository root or
// from this directory.
func defaultSettings() string {
	for _, p := range []string{"examples/settings.toml", "../settings.toml", "settings.toml"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "settings.toml")
}

func run(settings string, requests int) error {
	factory, err := policy.LoadFile(settings)
	if err != nil {
		return err
	}
	pol, err := factory.Policy("fast_retry")
	if err != nil {
		return err
	}
	fmt.Printf("policy fast_retry from %s: %d attempts, waits %v..%v, backoff %v, jitter %v, per-attempt timeout %v, retries %v\n\n",
		settings, pol.Attempts, pol.WaitMin, pol.WaitMax, pol.Backoff, pol.Jitter, pol.Timeout, pol.Exceptions)

	// The flaky server: per request, it fails in a different way on each of
	// the first three tries, one class each, then answers. It counts every
	// attempt it sees, so the summary can check that each one was printed.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch n % 4 {
		case 1: // HTTPRequestError
			// Close the connection after this answer, so that the next
			// attempt dials a new one. net/http itself resends a GET whose
			// reused keep-alive connection fails before any answer, so a
			// reset on a reused connection would never reach rtx.
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2: // ConnectionError: reset the new connection before answering
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, _ := hj.Hijack()
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
				return
			}
		case 3: // HTTPTimeoutError: answer past the 0.3 s per-attempt timeout
			select {
			case <-time.After(400 * time.Millisecond):
			case <-r.Context().Done():
			}
		default:
			io.WriteString(w, "hello from the flaky server\n")
		}
	}))
	defer srv.Close()

	start := time.Now()
	var (
		printed int // attempt lines printed
		retries int // retries of the request in flight
		classes = map[string]int{}
	)
	transport := rtx.New(factory, "fast_retry",
		rtx.OnRetry(func(ev rtx.RetryEvent) {
			what := fmt.Sprintf("%d %s", ev.StatusCode, http.StatusText(ev.StatusCode))
			if ev.Err != nil {
				what = shortError(ev.Err)
			}
			fmt.Printf("  attempt %d: %-16s %s; retrying in %v\n", ev.Attempt, ev.Class, what, ev.Delay.Round(time.Millisecond))
			printed++
			retries = ev.Attempt
			classes[ev.Class]++
		}))
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	ok := 0
	for i := 1; i <= requests; i++ {
		fmt.Printf("request %d: GET %s\n", i, srv.URL)
		retries = 0
		resp, err := client.Get(srv.URL)
		if err != nil {
			var re *rtx.RetryError
			if errors.As(err, &re) {
				fmt.Printf("  attempt %d: %-16s %s; gave up after %d attempts (%s)\n", re.Attempts, re.Class, shortError(re.Err), re.Attempts, re.Reason)
				printed++
				classes[re.Class]++
				continue
			}
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		printed++
		fmt.Printf("  attempt %d: %d %s %q: attempt %d of %d won\n",
			retries+1, resp.StatusCode, http.StatusText(resp.StatusCode), strings.TrimSpace(string(body)), retries+1, pol.Attempts)
		if resp.StatusCode == http.StatusOK {
			ok++
		}
	}
	fmt.Printf("\nsummary: %d/%d requests succeeded in %v; %d attempts printed, %d reached the server\n",
		ok, requests, time.Since(start).Round(time.Millisecond), printed, hits.Load())
	fmt.Printf("classes seen: HTTPRequestError %d, ConnectionError %d, HTTPTimeoutError %d\n",
		classes[policy.HTTPRequestError], classes[policy.ConnectionError], classes[policy.HTTPTimeoutError])
	if int64(printed) != hits.Load() {
		return fmt.Errorf("%d attempts printed but %d reached the server", printed, hits.Load())
	}
	return nil
}

// shortError is err's message without the "Get URL:" that net/http puts
// in front of it, which every line would repeat.
func shortError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
