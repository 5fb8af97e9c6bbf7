package rtx_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/athomic-go/rtx"
	"github.com/athomic-go/rtx/policy"
)

const settings = `
[default.resilience.retry.default_policy]
attempts = 3
wait_min_seconds = 0.01
wait_max_seconds = 0.05

[default.resilience.retry.policies.fast_retry]
attempts = 3
wait_min_seconds = 0.01
wait_max_seconds = 0.05
backoff = 1.5
exceptions = ["HTTPException"]

[default.resilience.retry.policies.interactive]
attempts = 1

[default.resilience.retry.policies.background]
attempts = 3
wait_min_seconds = 0.01
wait_max_seconds = 0.05
exceptions = ["HTTPRequestError", "HTTPTimeoutError"]

[default.resilience.retry.policies.jobs]
attempts = 4
wait_min_seconds = 0.01
wait_max_seconds = 0.05
exceptions = ["Exception"]
`

// loadSettings writes the settings above to a file, as an application
// would ship them, and loads it.
func loadSettings() (*policy.Factory, func()) {
	dir, err := os.MkdirTemp("", "rtx-example")
	if err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(dir, "settings.toml")
	if err := os.WriteFile(path, []byte(settings), 0o600); err != nil {
		log.Fatal(err)
	}
	factory, err := policy.LoadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	return factory, func() { os.RemoveAll(dir) }
}

// flakyServer answers 503 to the first fails requests of each path, then 200.
func flakyServer(fails int) (*httptest.Server, func(path string) int) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		n := hits[r.URL.Path]
		mu.Unlock()
		if n <= fails {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "hello from %s", r.URL.Path)
	}))
	return srv, func(path string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[path]
	}
}

// New makes an http.Client resilient by swapping its transport: the 503
// is retried under the "fast_retry" policy of the settings file.
func ExampleNew() {
	factory, cleanup := loadSettings()
	defer cleanup()
	srv, hits := flakyServer(1)
	defer srv.Close()

	client := &http.Client{Transport: rtx.New(factory, "fast_retry")}
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL + "/greeting")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status)
	fmt.Printf("%s (after %d attempts)\n", body, hits("/greeting"))
	// Output:
	// 200 OK
	// hello from /greeting (after 2 attempts)
}

// WithPolicy chooses another policy for one request: the transport's own
// policy makes a single attempt, the context's retries.
func ExampleWithPolicy() {
	factory, cleanup := loadSettings()
	defer cleanup()
	srv, hits := flakyServer(2)
	defer srv.Close()

	client := &http.Client{Transport: rtx.New(factory, "interactive")}
	defer client.CloseIdleConnections()

	for _, name := range []string{"interactive", "background"} {
		ctx := context.Background()
		if name == "background" {
			ctx = rtx.WithPolicy(ctx, "background")
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/"+name, nil)
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Printf("%s: %d after %d attempt(s)\n", name, resp.StatusCode, hits("/"+name))
	}
	// Output:
	// interactive: 503 after 1 attempt(s)
	// background: 200 after 3 attempt(s)
}

// Do retries any function, as the seed's retry decorator does: here a
// connection reset twice, then success.
func ExampleDo() {
	factory, cleanup := loadSettings()
	defer cleanup()

	calls := 0
	err := rtx.Do(context.Background(), factory, "fast_retry", func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
		}
		return nil
	}, rtx.OnRetry(func(e rtx.RetryEvent) {
		fmt.Printf("attempt %d failed (%s), retrying\n", e.Attempt, e.Class)
	}))
	fmt.Println("calls:", calls, "error:", err)
	// Output:
	// attempt 1 failed (ConnectionError), retrying
	// attempt 2 failed (ConnectionError), retrying
	// calls: 3 error: <nil>
}

// A Retrier is made once and shared: under a policy listing Exception, any
// error the function returns is retried, unless it is marked Permanent.
func ExampleRetrier() {
	factory, cleanup := loadSettings()
	defer cleanup()
	charges := rtx.NewRetrier(factory, "jobs", rtx.WithOperationName("charge"))
	errDeclined := errors.New("card declined")

	calls := 0
	err := charges.Do(context.Background(), func(ctx context.Context) error {
		if calls++; calls < 3 {
			return errors.New("backend said try again") // a plain error: retried
		}
		return nil
	})
	fmt.Println("calls:", calls, "error:", err)

	calls = 0
	err = charges.Do(context.Background(), func(ctx context.Context) error {
		calls++
		return rtx.Permanent(errDeclined) // a definite answer: never retried
	})
	fmt.Println("calls:", calls, "declined:", errors.Is(err, errDeclined))
	// Output:
	// calls: 3 error: <nil>
	// calls: 1 declined: true
}
