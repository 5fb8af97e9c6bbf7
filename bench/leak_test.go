package bench

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/athomic-go/rtx/bench/internal/faultserver"
)

// TestNoLeakAfterRetries sends 1,000 GETs through rtx against a server that
// fails a third of the attempts (503s, connection resets, answers slower than
// the per-attempt timeout). Once the caller has closed every body and called
// CloseIdleConnections on the client, no connection may be open at the
// server and no goroutine may be left in the process.
func TestNoLeakAfterRetries(t *testing.T) {
	const requests, workers = 1000, 8
	srv := faultserver.Start(faultserver.Config{
		Decide: func(id string, n int) faultserver.Fault {
			i, _ := strconv.Atoi(id)
			switch (i*7 + n*13) % 30 {
			case 0, 1, 2, 3, 4, 5:
				return faultserver.Status503
			case 6, 7, 8:
				return faultserver.Reset
			case 9:
				return faultserver.Slow
			}
			return faultserver.None
		},
		SlowDelay: time.Second,
	})
	defer srv.Close()

	base := NewBase()
	rt := RTX.Wrap(base, DefaultPolicy)
	client := &http.Client{Transport: rt}

	ids := make(chan int)
	errs := make(chan error, requests)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for id := range ids {
				errs <- getOnce(client, srv.URL, id)
			}
		})
	}
	for id := range requests {
		ids <- id
	}
	close(ids)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if err != nil {
			failed++
		}
	}
	t.Logf("%d requests, %d failed after retries, %d attempts, %d TCP connections", requests, failed, srv.Hits(), srv.Conns())
	if srv.Hits() <= requests {
		t.Fatalf("%d attempts for %d requests: the faults did not cause retries", srv.Hits(), requests)
	}

	client.CloseIdleConnections() // through rtx, which must forward it to base
	if open := srv.WaitOpen(0, 10*time.Second); open != 0 {
		t.Errorf("%d connections still open at the server after CloseIdleConnections", open)
	}
	srv.Close()
	goleak.VerifyNone(t, leakOptions...)
}

// getOnce is one logical GET; its body is read to the end and closed.
func getOnce(c *http.Client, url string, id int) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set(faultserver.IDHeader, strconv.Itoa(id))
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if berr := faultserver.CheckBody(resp); err == nil && berr != nil {
		err = berr
	}
	return err
}
