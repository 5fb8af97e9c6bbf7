package rtx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jarcoal/httpmock"

	"github.com/athomic-go/rtx/policy"
)

// testFactory loads a settings document for tests; waits are tiny so that
// tests that do not use synctest still run fast.
func testFactory(t testing.TB, doc string) *policy.Factory {
	t.Helper()
	f := policy.NewFactory(nil)
	if _, err := f.Update([]byte(doc), "toml", "test.toml"); err != nil {
		t.Fatal(err)
	}
	return f
}

const quick = `
[default.resilience.retry.default_policy]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
[default.resilience.retry.policies.quick]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
[default.resilience.retry.policies.once]
attempts = 1
`

// statuses answers with the given statuses in turn, then 200, and counts calls.
func statuses(calls *atomic.Int32, codes ...int) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		n := int(calls.Add(1))
		code := http.StatusOK
		if n <= len(codes) {
			code = codes[n-1]
		}
		return httpmock.NewStringResponse(code, http.StatusText(code)), nil
	}
}

func TestRetriesThenSucceeds(t *testing.T) {
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	mock.RegisterResponder("GET", "http://api.test/x", statuses(&calls, 503, 502))
	client := &http.Client{Transport: New(testFactory(t, quick), "quick", WithBase(mock))}
	resp, err := client.Get("http://api.test/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || calls.Load() != 3 {
		t.Fatalf("status %d after %d calls, want 200 after 3", resp.StatusCode, calls.Load())
	}
}

func TestLastResponseReturnedAsIs(t *testing.T) {
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	mock.RegisterResponder("GET", "http://api.test/x", statuses(&calls, 503, 503, 503, 503))
	client := &http.Client{Transport: New(testFactory(t, quick), "quick", WithBase(mock))}
	resp, err := client.Get("http://api.test/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || string(body) != "Service Unavailable" || calls.Load() != 3 {
		t.Fatalf("got %d %q after %d calls", resp.StatusCode, body, calls.Load())
	}
}

func TestErrorsBecomeRetryError(t *testing.T) {
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	reset := &netOpError{}
	mock.RegisterResponder("GET", "http://api.test/x", func(*http.Request) (*http.Response, error) {
		calls.Add(1)
		return nil, reset.err()
	})
	_, err := New(testFactory(t, quick), "quick", WithBase(mock)).RoundTrip(mustGet(t, "http://api.test/x"))
	var re *RetryError
	if !errors.As(err, &re) || re.Attempts != 3 || re.Class != policy.ConnectionError || re.Reason != ReasonAttempts || re.Policy != "quick" {
		t.Fatalf("err = %#v", err)
	}
	if calls.Load() != 3 {
		t.Fatalf("calls = %d", calls.Load())
	}
}

func TestPostBodyReplayed(t *testing.T) {
	mock := httpmock.NewMockTransport()
	var calls atomic.Int32
	var bodies []string
	mock.RegisterResponder("PUT", "http://api.test/x", func(req *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(req.Body)
		req.Body.Close()
		bodies = append(bodies, string(b))
		if calls.Add(1) < 3 {
			return httpmock.NewStringResponse(503, ""), nil
		}
		return httpmock.NewStringResponse(200, "ok"), nil
	})
	payload := strings.Repeat("0123456789", 10000)
	req, _ := http.NewRequest("PUT", "http://api.test/x", io.NopCloser(strings.NewReader(payload))) // no GetBody
	resp, err := New(testFactory(t, quick), "quick", WithBase(mock)).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(bodies) != 3 {
		t.Fatalf("%d attempts", len(bodies))
	}
	for i, b := range bodies {
		if b != payload {
			t.Errorf("attempt %d sent %d bytes, want %d", i+1, len(b), len(payload))
		}
	}
}

func mustGet(t testing.TB, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

var _ = bytes.NewReader
