// Command livereload serves requests through rtx while its settings file is
// edited: every change to the file is validated and applied to the next
// request, and the policy in force is printed each time. An invalid edit is
// reported and changes nothing.
//
//	go run ./examples/livereload                    # writes a settings file to a temp dir; edit it
//	go run ./examples/livereload -config my.toml    # watch your own file
//	go run ./examples/livereload -demo -duration 4s # edits the file itself, then exits
//
// The upstream is a loopback server that answers 503 to every attempt, so
// each request shows how many attempts the policy in force makes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/liveconfig"
	"github.com/athomic-go/rtx/policy"
)

const policyName = "fast_retry"

func main() {
	config := flag.String("config", "", "settings file to watch (default: a new one in a temporary directory)")
	duration := flag.Duration("duration", 0, "stop after this long (0: run until interrupted)")
	interval := flag.Duration("interval", 500*time.Millisecond, "time between requests")
	demo := flag.Bool("demo", false, "edit the settings file from the program itself: a good edit, an invalid one, a fix")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if err := run(ctx, *config, *interval, *demo); err != nil {
		fmt.Fprintln(os.Stderr, "livereload:", err)
		os.Exit(1)
	}
}

// settings is a settings document whose fast_retry policy makes n attempts.
func settings(n int) string {
	return fmt.Sprintf(`# Edit me: attempts, waits and exceptions apply to the next request.
[default.resilience.retry.policies.fast_retry]
attempts = %d
wait_min_seconds = 0.01
wait_max_seconds = 0.05
backoff = 2.0
exceptions = ["HTTPException"]
`, n)
}

func run(ctx context.Context, config string, interval time.Duration, demo bool) error {
	if config == "" {
		dir, err := os.MkdirTemp("", "rtx-livereload-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		config = filepath.Join(dir, "settings.toml")
		if err := os.WriteFile(config, []byte(settings(3)), 0o644); err != nil {
			return err
		}
	}
	factory, err := policy.LoadFile(config)
	if err != nil {
		return err
	}
	fmt.Printf("watching %s (edit it; Ctrl-C to stop)\n", config)
	printPolicy(factory, "in force")

	w, err := liveconfig.WatchFile(config, factory,
		liveconfig.OnUpdate(func(u liveconfig.Update) {
			if u.Initial && len(u.Changed) == 0 {
				return // the file as LoadFile read it
			}
			fmt.Printf("settings applied (version %s, changed: %s)\n", u.Version, strings.Join(u.Changed, ", "))
			printPolicy(factory, "now in force")
		}),
		liveconfig.OnError(func(err error) {
			fmt.Printf("settings not applied: %v\n", err)
			printPolicy(factory, "still in force")
		}))
	if err != nil {
		return err
	}
	defer w.Close()

	var hits atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		rw.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer upstream.Close()
	transport := rtx.New(factory, policyName)
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}

	if demo {
		go edit(ctx, config)
	}

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 1; ; i++ {
		before := hits.Load()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, upstream.URL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		switch {
		case ctx.Err() != nil:
			fmt.Println("stopped")
			return nil
		case err != nil:
			var re *rtx.RetryError
			if !errors.As(err, &re) {
				return err
			}
			fmt.Printf("request %d: gave up after %s: %v\n", i, attempts(re.Attempts), err)
		default:
			resp.Body.Close()
			fmt.Printf("request %d: %d after %s\n", i, resp.StatusCode, attempts(int(hits.Load()-before)))
		}
		select {
		case <-ctx.Done():
			fmt.Println("stopped")
			return nil
		case <-tick.C:
		}
	}
}

func printPolicy(f *policy.Factory, what string) {
	p, err := f.Policy(policyName)
	if err != nil {
		fmt.Printf("  %s: %v\n", what, err)
		return
	}
	fmt.Printf("  %s: %s = %s, waits %v..%v, backoff %v, retries %v\n",
		what, policyName, attempts(p.Attempts), p.WaitMin, p.WaitMax, p.Backoff, p.Exceptions)
}

// attempts returns "1 attempt" or "n attempts".
func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// edit rewrites the settings file as an editor would (write a temporary
// file, rename it over): 5 attempts, then an invalid document, then 2
// attempts, a second apart.
func edit(ctx context.Context, path string) {
	for _, doc := range []string{
		settings(5),
		strings.Replace(settings(5), "wait_min_seconds = 0.01", "wait_min_seconds = 1.0", 1), // wait_min > wait_max
		settings(2),
	} {
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		tmp := path + ".tmp"
		if os.WriteFile(tmp, []byte(doc), 0o644) == nil {
			_ = os.Rename(tmp, path)
		}
	}
}
