// Command debugpage serves rtx's debug page over live traffic: it starts
// three loopback backends (inventory answers in a few milliseconds,
// payments fails one request in four, recommendations is down), sends
// requests to them through one rtx Transport and a Retrier, and serves
// the page on a loopback port, printing its URL. Within seconds the
// recommendations circuit is open, payments' retry budget runs out and
// the give-ups show why.
//
// It also applies a settings update and then one that is rejected (a
// typo), as a live source would, so the page shows both.
//
//	go run ./examples/debugpage                 # until interrupted
//	go run ./examples/debugpage -duration 30s   # then exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-cleanhttp"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

const settings = `
[default.resilience.retry.policies.api]
attempts = 3
wait_min_seconds = 0.02
wait_max_seconds = 0.2
exceptions = ["HTTPException"]
budget_ratio = 0.1
budget_min_retries_per_sec = 0.5
budget_window_seconds = 10

[default.resilience.retry.policies.search]
attempts = 3
wait_min_seconds = 0.02
wait_max_seconds = 0.2
hedge_delay_seconds = 0.005
hedge_quantile = 0.9

[default.resilience.retry.policies.jobs]
attempts = 4
wait_min_seconds = 0.05
wait_max_seconds = 0.5
exceptions = ["Exception"]

[default.resilience.circuit_breaker]
enabled = true
default_fail_max = 8
default_reset_timeout_sec = 10
  [default.resilience.circuit_breaker.circuits."recommendations.internal"]
  fail_max = 2
  reset_timeout_sec = 15
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "debugpage:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("debugpage", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "where to serve the debug page")
	duration := fs.Duration("duration", 0, "exit after this long (0: run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	d, err := start(*addr)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(out, "debug page: %s\n", d.URL)
	fmt.Fprintf(out, "as JSON:    %s?format=json\n", d.URL)
	<-ctx.Done()
	return nil
}

// demo is the running example: backends, traffic and the page.
type demo struct {
	URL string // of the debug page

	backends map[string]*httptest.Server // by host name
	page     *http.Server
	tr       *rtx.Transport
	jobs     *rtx.Retrier
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// start starts the backends and the traffic, and serves the page on addr.
func start(addr string) (*demo, error) {
	factory := policy.NewFactory(nil)
	if _, err := factory.Update([]byte(settings), "toml", "settings.toml"); err != nil {
		return nil, err
	}
	d := &demo{backends: map[string]*httptest.Server{
		"inventory.internal": httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(time.Duration(2+rand.IntN(6)) * time.Millisecond)
			io.WriteString(w, "in stock")
		})),
		"payments.internal": httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if rand.IntN(4) == 0 {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "charged")
		})),
		"recommendations.internal": httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down for maintenance", http.StatusBadGateway)
		})),
	}}

	// The backends answer under their own names: a base transport that
	// dials the loopback server of each name, so that the page shows
	// names rather than ports.
	base := cleanhttp.DefaultPooledTransport()
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		srv, ok := d.backends[host]
		if !ok {
			return nil, fmt.Errorf("no backend %q", host)
		}
		var dialer net.Dialer
		return dialer.DialContext(ctx, network, srv.Listener.Addr().String())
	}
	d.tr = rtx.New(factory, "api", rtx.WithBase(base), rtx.WithOperationName("backends"))
	d.jobs = rtx.NewRetrier(factory, "jobs", rtx.WithOperationName("ledger"))

	var dbg rtx.DebugHandler
	dbg.Register("backends", d.tr)
	dbg.Register("ledger", d.jobs)
	mux := http.NewServeMux()
	mux.Handle("/debug/rtx", &dbg)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		d.closeBackends()
		return nil, err
	}
	d.URL = "http://" + ln.Addr().String() + "/debug/rtx"
	d.page = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.wg.Go(func() { d.page.Serve(ln) })

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	client := &http.Client{Transport: d.tr}
	// Query values stand for the secrets a real URL may carry: the page
	// shows them redacted.
	d.every(ctx, 10*time.Millisecond, func() { d.get(ctx, client, "search", "http://inventory.internal/v1/items?sku=A-1234") })
	d.every(ctx, 40*time.Millisecond, func() {
		d.get(ctx, client, "api", "http://payments.internal/v1/charge?card=4111111111111111&session=s3cr3t")
	})
	d.every(ctx, 50*time.Millisecond, func() { d.get(ctx, client, "api", "http://recommendations.internal/v2/for-you?user=alice") })
	d.every(ctx, 200*time.Millisecond, func() {
		d.jobs.Do(ctx, func(context.Context) error {
			if rand.IntN(2) == 0 {
				return errors.New("ledger: lock wait timeout")
			}
			return nil
		})
	})

	// A live update, then one a typo gets rejected: the page shows the
	// version in force and the rejection.
	update := strings.Replace(settings, "budget_ratio = 0.1", "budget_ratio = 0.05", 1)
	factory.Update([]byte(update), "toml", "settings.toml")
	factory.Update([]byte(strings.Replace(update, "attempts = 4", "max_attempts = 4", 1)), "toml", "settings.toml")
	return d, nil
}

// every calls fn every interval until ctx ends.
func (d *demo) every(ctx context.Context, interval time.Duration, fn func()) {
	d.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	})
}

func (d *demo) get(ctx context.Context, client *http.Client, pol, url string) {
	req, err := http.NewRequestWithContext(rtx.WithPolicy(ctx, pol), http.MethodGet, url, nil)
	if err != nil {
		return
	}
	resp, err := client.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Close stops the traffic, the page and the backends.
func (d *demo) Close() {
	d.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d.page.Shutdown(ctx)
	d.wg.Wait()
	d.tr.CloseIdleConnections()
	d.closeBackends()
}

func (d *demo) closeBackends() {
	for _, s := range d.backends {
		s.Close()
	}
}
