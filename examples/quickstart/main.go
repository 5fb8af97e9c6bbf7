// Command quickstart starts a flaky server on loopback, sends requests to it
// through rtx under examples/settings.toml, and prints every attempt, its
// class and the wait before the next, then a summary.
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
	"os"
	"path/filepath"
	"runtime"
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

	// The flaky server: per request, it fails in a different way on the
	// first tries, then answers.
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch n % 4 {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			if hj, ok := w.(http.Hijacker); ok { // reset the connection
				conn, _, _ := hj.Hijack()
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
				return
			}
		case 3:
			time.Sleep(400 * time.Millisecond) // past the 0.3 s per-attempt timeout
			fallthrough
		default:
			io.WriteString(w, "hello from the flaky server\n")
		}
	}))
	defer srv.Close()

	start := time.Now()
	transport := rtx.New(factory, "fast_retry",
		rtx.OnRetry(func(ev rtx.RetryEvent) {
			what := fmt.Sprint(ev.StatusCode)
			if ev.Err != nil {
				what = ev.Err.Error()
			}
			fmt.Printf("  attempt %d failed: %-16s %s; retrying in %v\n", ev.Attempt, ev.Class, what, ev.Delay.Round(time.Millisecond))
		}))
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	ok := 0
	for i := 1; i <= requests; i++ {
		fmt.Printf("request %d: GET %s\n", i, srv.URL)
		resp, err := client.Get(srv.URL)
		if err != nil {
			var re *rtx.RetryError
			if errors.As(err, &re) {
				fmt.Printf("  gave up after %d attempts: %v\n", re.Attempts, err)
				continue
			}
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("  %d %s", resp.StatusCode, body)
		if resp.StatusCode == http.StatusOK {
			ok++
		}
	}
	fmt.Printf("\nsummary: %d/%d requests succeeded, %d attempts reached the server, %v\n",
		ok, requests, hits.Load(), time.Since(start).Round(time.Millisecond))
	fmt.Println("(net/http itself resends a GET whose reused keep-alive connection was reset before any answer; rtx sees only what it cannot absorb)")
	return nil
}
