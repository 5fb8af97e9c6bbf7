package faultproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newProxy(t *testing.T) (*Proxy, *http.Client) {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok "+r.Method+" "+r.URL.Path)
	}))
	t.Cleanup(backend.Close)
	p, err := New(backend.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return p, &http.Client{Transport: tr}
}

func get(ctx context.Context, c *http.Client, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestScriptedFaults(t *testing.T) {
	p, c := newProxy(t)
	p.Script(Reset, Unavailable, Delay)
	ctx := context.Background()

	// Reset: the request reached the proxy, the connection died with RST.
	if _, _, err := get(ctx, c, p.URL+"/a"); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reset: err = %v, want ECONNRESET", err)
	}
	// Unavailable: a 503 with a JSON body.
	if code, body, err := get(ctx, c, p.URL+"/b"); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("unavailable: code %d body %q err %v, want 503", code, body, err)
	}
	// Delay: held past the client's own timeout.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, _, err := get(short, c, p.URL+"/c")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delay: err = %v, want deadline exceeded", err)
	}
	// Script spent: requests pass.
	if code, body, err := get(ctx, c, p.URL+"/d"); err != nil || code != http.StatusOK || body != "ok GET /d" {
		t.Fatalf("pass: code %d body %q err %v", code, body, err)
	}

	want := []Record{{"GET", "/a", Reset}, {"GET", "/b", Unavailable}, {"GET", "/c", Delay}, {"GET", "/d", Pass}}
	got := p.Records()
	if len(got) != len(want) {
		t.Fatalf("records = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %v, want %v", i, got[i], want[i])
		}
	}
	if n := p.Count(Pass); n != 1 {
		t.Errorf("Count(Pass) = %d, want 1", n)
	}
}

func TestDelayAnswersLate(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "late")
	}))
	defer backend.Close()
	p, err := New(backend.URL, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	p.Script(Delay)
	start := time.Now()
	code, body, err := get(context.Background(), &http.Client{Transport: tr}, p.URL)
	if err != nil || code != http.StatusOK || body != "late" {
		t.Fatalf("code %d body %q err %v", code, body, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("answered after %v, want at least the 50ms delay", d)
	}
}

func TestCloseReleasesHeldRequests(t *testing.T) {
	p, c := newProxy(t)
	p.Script(Delay)
	errc := make(chan error, 1)
	go func() {
		_, _, err := get(context.Background(), c, p.URL)
		errc <- err
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(5 * time.Second)
	for p.Count(Delay) == 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("request never reached the proxy")
		}
	}
	p.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("held request succeeded after Close, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the held request")
	}
}
