package rtx

// Tests of the transport contract (DESIGN.md, "Transport contract") over an
// injected httpmock transport or an in-memory base. Time is observed with
// testing/synctest, whose fake clock starts at 2000-01-01 00:00:00 UTC and
// advances only when every goroutine of the bubble is blocked.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jarcoal/httpmock"

	"github.com/athomic-go/rtx/policy"
)

// contractSettings holds the policies of the contract tests. "quick" and
// the default policy retry every class with millisecond waits; "slow" has
// exact waits (no jitter) of 1 s then 2 s, for tests inside synctest. Retry
// budgets are off: these tests count attempts, not budgets.
const contractSettings = `
[default.resilience.retry.default_policy]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
budget_ratio = -1

[default.resilience.retry.policies.quick]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
budget_ratio = -1

[default.resilience.retry.policies.once]
attempts = 1
exceptions = ["HTTPException"]
budget_ratio = -1

[default.resilience.retry.policies.nonidem]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
budget_ratio = -1
retry_non_idempotent = true

[default.resilience.retry.policies.withkey]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPException"]
budget_ratio = -1
idempotency_key = true

[default.resilience.retry.policies.slow]
attempts = 3
wait_min_seconds = 1.0
wait_max_seconds = 10.0
backoff = 2.0
jitter = 0.0
exceptions = ["HTTPException"]
budget_ratio = -1

[default.resilience.retry.policies.timed]
attempts = 3
wait_min_seconds = 1.0
wait_max_seconds = 1.0
jitter = 0.0
timeout_seconds = 1.0
exceptions = ["HTTPException"]
budget_ratio = -1
`

const testURL = "http://api.test/x"

// tripFunc adapts a function to http.RoundTripper.
type tripFunc func(*http.Request) (*http.Response, error)

func (f tripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trackedBody is a request or response body that counts its Close calls.
type trackedBody struct {
	r      io.Reader
	closes atomic.Int32
}

func newTrackedBody(s string) *trackedBody { return &trackedBody{r: strings.NewReader(s)} }

func (b *trackedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *trackedBody) Close() error               { b.closes.Add(1); return nil }

// consume reads and closes a request body, as a conforming transport does.
func consume(req *http.Request) string {
	if req.Body == nil {
		return ""
	}
	b, _ := io.ReadAll(req.Body)
	req.Body.Close()
	return string(b)
}

// answer returns a responder that consumes the body and answers the given
// statuses in turn (then 200), counting calls; each answer carries the
// attempt number in its body.
func answer(calls *atomic.Int32, codes ...int) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		consume(req)
		n := int(calls.Add(1))
		code := http.StatusOK
		if n <= len(codes) {
			code = codes[n-1]
		}
		return httpmock.NewStringResponse(code, fmt.Sprintf("attempt %d", n)), nil
	}
}

// failing returns a responder that consumes the body and fails with err.
func failing(calls *atomic.Int32, err error) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		consume(req)
		calls.Add(1)
		return nil, err
	}
}

func mkReset() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
}

func mkRefused() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

func newMock(method string, r httpmock.Responder) *httpmock.MockTransport {
	m := httpmock.NewMockTransport()
	m.RegisterResponder(method, testURL, r)
	return m
}

func newReq(t testing.TB, ctx context.Context, method string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, testURL, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// readClose reads and closes a response body.
func readClose(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return string(b)
}

// requestState is what a RoundTripper must leave as it found it.
type requestState struct {
	method        string
	url           url.URL
	urlPtr        *url.URL
	header        http.Header
	headerPtr     uintptr
	body          io.ReadCloser
	getBody       uintptr
	hasGetBody    bool
	contentLength int64
	te            []string
	close         bool
	host          string
	trailer       http.Header
	ctx           context.Context
}

func stateOf(r *http.Request) requestState {
	return requestState{
		method: r.Method, url: *r.URL, urlPtr: r.URL,
		header: r.Header.Clone(), headerPtr: reflect.ValueOf(r.Header).Pointer(),
		body: r.Body, hasGetBody: r.GetBody != nil, getBody: reflect.ValueOf(r.GetBody).Pointer(),
		contentLength: r.ContentLength, te: append([]string(nil), r.TransferEncoding...),
		close: r.Close, host: r.Host, trailer: r.Trailer.Clone(), ctx: r.Context(),
	}
}

func (s requestState) check(t *testing.T, r *http.Request) {
	t.Helper()
	after := stateOf(r)
	if s.method != after.method || s.url != after.url || s.urlPtr != after.urlPtr {
		t.Errorf("method/URL changed: %s %v -> %s %v", s.method, &s.url, after.method, &after.url)
	}
	if !reflect.DeepEqual(s.header, after.header) || s.headerPtr != after.headerPtr {
		t.Errorf("header changed: %v -> %v", s.header, after.header)
	}
	if s.body != after.body {
		t.Errorf("body reader replaced: %T -> %T", s.body, after.body)
	}
	if s.hasGetBody != after.hasGetBody || s.getBody != after.getBody {
		t.Errorf("GetBody changed")
	}
	if s.contentLength != after.contentLength || !reflect.DeepEqual(s.te, after.te) || s.close != after.close || s.host != after.host {
		t.Errorf("ContentLength/TransferEncoding/Close/Host changed")
	}
	if !reflect.DeepEqual(s.trailer, after.trailer) || s.ctx != after.ctx {
		t.Errorf("trailer or context changed")
	}
}

// TestContractOriginRequestNotModified follows otelhttp's
// TestTransportOriginRequestNotModify: whatever happens across retries, the
// caller's request is left as it was.
func TestContractOriginRequestNotModified(t *testing.T) {
	f := testFactory(t, contractSettings)
	for _, tc := range []struct {
		name, policy, method string
		body                 func() io.Reader
	}{
		{"GET", "quick", "GET", nil},
		{"POST idempotency_key plain body", "withkey", "POST", func() io.Reader { return newTrackedBody("payload") }},
		{"PUT with GetBody", "quick", "PUT", func() io.Reader { return strings.NewReader("payload") }},
		{"POST retry_non_idempotent", "nonidem", "POST", func() io.Reader { return newTrackedBody("payload") }},
		{"one attempt", "once", "POST", func() io.Reader { return newTrackedBody("payload") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var sent []string
			var mu sync.Mutex
			mock := newMock(tc.method, func(req *http.Request) (*http.Response, error) {
				body := consume(req)
				mu.Lock()
				sent = append(sent, body+"|"+req.Header.Get("Idempotency-Key"))
				mu.Unlock()
				// A base transport that writes to headers would break
				// others; this one only reads them.
				if n := calls.Add(1); n < 3 {
					return httpmock.NewStringResponse(503, ""), nil
				}
				return httpmock.NewStringResponse(200, "ok"), nil
			})
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			req := newReq(t, context.Background(), tc.method, body)
			req.Header.Set("X-Caller", "1")
			req.URL.RawQuery = "q=1"
			before := stateOf(req)
			resp, err := New(f, tc.policy, WithBase(mock)).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			readClose(t, resp)
			before.check(t, req)
			want := int32(3)
			if tc.policy == "once" {
				want = 1
			}
			if calls.Load() != want {
				t.Fatalf("%d calls, want %d", calls.Load(), want)
			}
			for i, s := range sent {
				if s != sent[0] {
					t.Errorf("attempt %d sent %q, attempt 1 sent %q", i+1, s, sent[0])
				}
			}
		})
	}
}

// TestContractOriginRequestNotModifiedTimeout: the per-attempt context goes
// on a copy, never on the caller's request.
func TestContractOriginRequestNotModifiedTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ctxs []context.Context
		base := tripFunc(func(req *http.Request) (*http.Response, error) {
			consume(req)
			ctxs = append(ctxs, req.Context())
			if len(ctxs) < 3 {
				return httpmock.NewStringResponse(503, ""), nil
			}
			return httpmock.NewStringResponse(200, ""), nil
		})
		req := newReq(t, context.Background(), "PUT", newTrackedBody("x"))
		before := stateOf(req)
		resp, err := New(testFactory(t, contractSettings), "timed", WithBase(base)).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		readClose(t, resp)
		before.check(t, req)
		for i, c := range ctxs {
			if c == req.Context() {
				t.Errorf("attempt %d ran under the caller's context, want its own", i+1)
			}
		}
	})
}

func TestContractBodyAlwaysClosed(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		policy string
		hook   func(n int) bool // circuit open at the nth consultation
		mock   func(calls *atomic.Int32) httpmock.Responder
		ctx    func() (context.Context, context.CancelFunc)
		calls  int32
	}{
		{name: "success after retries", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return answer(c, 503, 503) }, calls: 3},
		{name: "success, one attempt", policy: "once", mock: func(c *atomic.Int32) httpmock.Responder { return answer(c) }, calls: 1},
		{name: "unknown policy", policy: "nope", mock: func(c *atomic.Int32) httpmock.Responder { return answer(c) }, calls: 0},
		{name: "circuit open", policy: "slow", hook: func(int) bool { return true }, mock: func(c *atomic.Int32) httpmock.Responder { return answer(c) }, calls: 0},
		{name: "circuit opens before retry", policy: "slow", hook: func(n int) bool { return n > 1 }, mock: func(c *atomic.Int32) httpmock.Responder { return answer(c, 503) }, calls: 1},
		{name: "circuit opens after delay", policy: "slow", hook: func(n int) bool { return n > 2 }, mock: func(c *atomic.Int32) httpmock.Responder { return answer(c, 503) }, calls: 1},
		{name: "unlisted error", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return failing(c, errBoom) }, calls: 1},
		{name: "retries exhausted", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return failing(c, mkReset()) }, calls: 3},
		{name: "last 503 returned", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return answer(c, 503, 503, 503) }, calls: 3},
		{name: "body never read", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder {
			return func(req *http.Request) (*http.Response, error) {
				req.Body.Close() // answers before reading, as a server may
				if c.Add(1) == 1 {
					return httpmock.NewStringResponse(503, ""), nil
				}
				return httpmock.NewStringResponse(200, ""), nil
			}
		}, calls: 2},
		{name: "cancelled during delay", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return answer(c, 503, 503) }, calls: 1,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(500*time.Millisecond, cancel)
				return ctx, cancel
			}},
		{name: "deadline", policy: "slow", mock: func(c *atomic.Int32) httpmock.Responder { return failing(c, mkReset()) }, calls: 1,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 500*time.Millisecond)
			}},
	} {
		for _, withGetBody := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/GetBody=%v", tc.name, withGetBody), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var calls atomic.Int32
					var consults atomic.Int32
					var opts []Option
					opts = append(opts, WithBase(newMock("PUT", tc.mock(&calls))))
					if tc.hook != nil {
						opts = append(opts, WithCircuitBreakerHook(func(*http.Request) bool { return tc.hook(int(consults.Add(1))) }))
					}
					ctx, cancel := context.Background(), context.CancelFunc(func() {})
					if tc.ctx != nil {
						ctx, cancel = tc.ctx()
					}
					defer cancel()
					body := newTrackedBody("payload")
					bodies := []*trackedBody{body}
					var mu sync.Mutex
					req := newReq(t, ctx, "PUT", body)
					if withGetBody {
						req.GetBody = func() (io.ReadCloser, error) {
							mu.Lock()
							defer mu.Unlock()
							b := newTrackedBody("payload")
							bodies = append(bodies, b)
							return b, nil
						}
					}
					resp, err := New(testFactory(t, contractSettings), tc.policy, opts...).RoundTrip(req)
					if (resp == nil) == (err == nil) {
						t.Fatalf("got response %v and error %v, want exactly one", resp, err)
					}
					if resp != nil {
						readClose(t, resp)
					}
					if calls.Load() != tc.calls {
						t.Errorf("%d calls, want %d", calls.Load(), tc.calls)
					}
					mu.Lock()
					defer mu.Unlock()
					for i, b := range bodies {
						if n := b.closes.Load(); n != 1 {
							t.Errorf("body %d closed %d times, want once (err %v)", i, n, err)
						}
					}
				})
			})
		}
	}
}

func TestContractUnknownPolicy(t *testing.T) {
	f := testFactory(t, contractSettings)
	var calls atomic.Int32
	mock := newMock("GET", answer(&calls))
	var hooked atomic.Int32
	hook := WithCircuitBreakerHook(func(*http.Request) bool { hooked.Add(1); return false })
	check := func(t *testing.T, err error, name string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error for an unknown policy")
		}
		for _, known := range []string{name, "default", "quick", "once", "slow"} {
			if !strings.Contains(err.Error(), known) {
				t.Errorf("error %q does not mention %q", err, known)
			}
		}
		if calls.Load() != 0 || hooked.Load() != 0 {
			t.Errorf("%d calls, %d hook calls before failing, want none", calls.Load(), hooked.Load())
		}
	}
	t.Run("transport", func(t *testing.T) {
		resp, err := New(f, "nope", WithBase(mock), hook).RoundTrip(mustGet(t, testURL))
		if resp != nil {
			t.Fatal("response with an error")
		}
		check(t, err, "nope")
	})
	t.Run("WithPolicy", func(t *testing.T) {
		client := &http.Client{Transport: New(f, "quick", WithBase(mock), hook)}
		req := newReq(t, WithPolicy(context.Background(), "typo"), "GET", nil)
		_, err := client.Do(req)
		check(t, err, "typo")
	})
}

func TestContractWithPolicyOverrides(t *testing.T) {
	f := testFactory(t, contractSettings)
	for _, tc := range []struct {
		transport, override string
		set                 bool
		want                int32
	}{
		{"once", "", false, 1},
		{"once", "quick", true, 3},
		{"quick", "once", true, 1},
		{"once", "default", true, 3},
		{"once", "", true, 3}, // "" names the default policy
	} {
		t.Run(fmt.Sprintf("%s->%s", tc.transport, tc.override), func(t *testing.T) {
			var calls atomic.Int32
			ctx := context.Background()
			if tc.set {
				ctx = WithPolicy(ctx, tc.override)
			}
			var events []RetryEvent
			tr := New(f, tc.transport, WithBase(newMock("GET", answer(&calls, 503, 503, 503))), OnRetry(func(e RetryEvent) { events = append(events, e) }))
			resp, err := tr.RoundTrip(newReq(t, ctx, "GET", nil))
			if err != nil {
				t.Fatal(err)
			}
			readClose(t, resp)
			if calls.Load() != tc.want {
				t.Fatalf("%d calls, want %d", calls.Load(), tc.want)
			}
			if tc.want > 1 {
				wantName := tc.override
				if wantName == "" {
					wantName = "default"
				}
				if events[0].Policy != wantName {
					t.Errorf("event policy %q, want %q", events[0].Policy, wantName)
				}
			}
		})
	}
}

// TestContractSnapshotPerRequest: an update applies to the next request,
// never halfway through one.
func TestContractSnapshotPerRequest(t *testing.T) {
	f := testFactory(t, contractSettings)
	var calls atomic.Int32
	mock := newMock("GET", func(req *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			if _, err := f.Update([]byte(strings.ReplaceAll(contractSettings, "attempts = 3", "attempts = 1")), "toml", "update.toml"); err != nil {
				t.Error(err)
			}
		}
		return httpmock.NewStringResponse(503, ""), nil
	})
	tr := New(f, "quick", WithBase(mock))
	resp, err := tr.RoundTrip(mustGet(t, testURL))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if calls.Load() != 3 {
		t.Fatalf("request in flight during an update made %d attempts, want 3 (its snapshot)", calls.Load())
	}
	resp, err = tr.RoundTrip(mustGet(t, testURL))
	if err != nil {
		t.Fatal(err)
	}
	readClose(t, resp)
	if calls.Load() != 4 {
		t.Fatalf("next request made %d attempts, want 1 (the update)", calls.Load()-3)
	}
}

func TestContractIdempotency(t *testing.T) {
	f := testFactory(t, contractSettings)
	for _, tc := range []struct {
		name, policy, method string
		header               string // header set by the caller, "Name: value"
		err                  error  // every attempt fails with it; nil: 503
		want                 int32
		reason               Reason
	}{
		{name: "POST 503 default", policy: "quick", method: "POST", want: 1, reason: ReasonNotIdempotent},
		{name: "PATCH 503 default", policy: "quick", method: "PATCH", want: 1, reason: ReasonNotIdempotent},
		{name: "POST reset default", policy: "quick", method: "POST", err: mkReset(), want: 1, reason: ReasonNotIdempotent},
		{name: "POST unexpected EOF default", policy: "quick", method: "POST", err: io.ErrUnexpectedEOF, want: 1, reason: ReasonNotIdempotent},
		{name: "POST refused default", policy: "quick", method: "POST", err: mkRefused(), want: 3, reason: ReasonAttempts},
		{name: "POST temporary DNS default", policy: "quick", method: "POST", err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "server misbehaving", Name: "api.test", IsTemporary: true}}, want: 3, reason: ReasonAttempts},
		{name: "POST retry_non_idempotent", policy: "nonidem", method: "POST", want: 3, reason: ReasonAttempts},
		{name: "POST reset retry_non_idempotent", policy: "nonidem", method: "POST", err: mkReset(), want: 3, reason: ReasonAttempts},
		{name: "POST idempotency_key", policy: "withkey", method: "POST", want: 3, reason: ReasonAttempts},
		{name: "POST own Idempotency-Key", policy: "quick", method: "POST", header: "Idempotency-Key: k-123", want: 3, reason: ReasonAttempts},
		{name: "POST own X-Idempotency-Key", policy: "quick", method: "POST", header: "X-Idempotency-Key: k-456", want: 3, reason: ReasonAttempts},
		{name: "GET", policy: "quick", method: "GET", want: 3, reason: ReasonAttempts},
		{name: "HEAD", policy: "quick", method: "HEAD", want: 3, reason: ReasonAttempts},
		{name: "OPTIONS", policy: "quick", method: "OPTIONS", want: 3, reason: ReasonAttempts},
		{name: "TRACE", policy: "quick", method: "TRACE", want: 3, reason: ReasonAttempts},
		{name: "PUT", policy: "quick", method: "PUT", want: 3, reason: ReasonAttempts},
		{name: "DELETE", policy: "quick", method: "DELETE", want: 3, reason: ReasonAttempts},
		{name: "DELETE reset", policy: "quick", method: "DELETE", err: mkReset(), want: 3, reason: ReasonAttempts},
		{name: "GET idempotency_key adds none", policy: "withkey", method: "GET", want: 3, reason: ReasonAttempts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var keys []string
			var bodies []string
			mock := newMock(tc.method, func(req *http.Request) (*http.Response, error) {
				bodies = append(bodies, consume(req))
				calls.Add(1)
				keys = append(keys, req.Header.Get("Idempotency-Key")+"|"+req.Header.Get("X-Idempotency-Key"))
				if tc.err != nil {
					return nil, tc.err
				}
				return httpmock.NewStringResponse(503, "busy"), nil
			})
			var failed []FailEvent
			var body io.Reader
			if tc.method == "POST" || tc.method == "PATCH" || tc.method == "PUT" {
				body = newTrackedBody(`{"order":1}`)
			}
			req := newReq(t, context.Background(), tc.method, body)
			if tc.header != "" {
				k, v, _ := strings.Cut(tc.header, ": ")
				req.Header.Set(k, v)
			}
			callerHeader := req.Header.Clone()
			resp, err := New(f, tc.policy, WithBase(mock), OnFail(func(e FailEvent) { failed = append(failed, e) })).RoundTrip(req)
			if !reflect.DeepEqual(req.Header, callerHeader) {
				t.Errorf("caller's header changed: %v -> %v", callerHeader, req.Header)
			}
			if calls.Load() != tc.want {
				t.Fatalf("%d calls, want %d", calls.Load(), tc.want)
			}
			if tc.err == nil {
				if err != nil || resp.StatusCode != 503 {
					t.Fatalf("got %v, %v; want the 503 as is", resp, err)
				}
				if got := readClose(t, resp); got != "busy" {
					t.Errorf("response body %q, want %q", got, "busy")
				}
			} else {
				var re *RetryError
				if !errors.As(err, &re) || resp != nil {
					t.Fatalf("got %v, %v; want a *RetryError", resp, err)
				}
				if !errors.Is(err, tc.err) {
					t.Errorf("%v does not match the attempt's error", err)
				}
				if re.Attempts != int(tc.want) || re.Reason != tc.reason {
					t.Errorf("RetryError %+v, want %d attempts, reason %q", re, tc.want, tc.reason)
				}
			}
			if len(failed) != 1 || failed[0].Reason != tc.reason {
				t.Errorf("fail events %+v, want one with reason %q", failed, tc.reason)
			}
			for i, k := range keys {
				if k != keys[0] {
					t.Errorf("attempt %d sent keys %q, attempt 1 sent %q", i+1, k, keys[0])
				}
			}
			for i, b := range bodies {
				if b != bodies[0] {
					t.Errorf("attempt %d sent body %q, attempt 1 sent %q", i+1, b, bodies[0])
				}
			}
			key, xkey, _ := strings.Cut(keys[0], "|")
			switch {
			case tc.policy == "withkey" && tc.method == "POST":
				if len(key) < 16 {
					t.Errorf("generated Idempotency-Key %q, want a random one", key)
				}
			case tc.header != "":
				if v := req.Header.Get(strings.SplitN(tc.header, ":", 2)[0]); key+xkey != v {
					t.Errorf("sent keys %q, want the caller's %q", keys[0], v)
				}
			default:
				if keys[0] != "|" {
					t.Errorf("sent keys %q, want none", keys[0])
				}
			}
		})
	}
}

// TestContractIdempotencyKeyPerRequest: each logical request gets its own key.
func TestContractIdempotencyKeyPerRequest(t *testing.T) {
	seen := map[string]int{}
	mock := newMock("POST", func(req *http.Request) (*http.Response, error) {
		consume(req)
		seen[req.Header.Get("Idempotency-Key")]++
		if seen[req.Header.Get("Idempotency-Key")] < 2 {
			return httpmock.NewStringResponse(503, ""), nil
		}
		return httpmock.NewStringResponse(201, ""), nil
	})
	tr := New(testFactory(t, contractSettings), "withkey", WithBase(mock))
	for range 5 {
		resp, err := tr.RoundTrip(newReq(t, context.Background(), "POST", strings.NewReader("{}")))
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("%v %v", resp, err)
		}
		readClose(t, resp)
	}
	if len(seen) != 5 {
		t.Fatalf("5 requests used %d keys: %v", len(seen), seen)
	}
}

func TestContractUnlistedErrorsPassThrough(t *testing.T) {
	errBoom := errors.New("boom")
	certErr := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"plain", errBoom},
		{"wrapped", fmt.Errorf("layer: %w", errBoom)},
		{"certificate", certErr},
		{"hostname", x509.HostnameError{Host: "api.test"}},
		{"no such host", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "api.test", IsNotFound: true}}},
		{"canceled by base", context.Canceled},
		{"not TLS", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var failed int
			tr := New(testFactory(t, contractSettings), "quick", WithBase(newMock("GET", failing(&calls, tc.err))), OnFail(func(FailEvent) { failed++ }))
			resp, err := tr.RoundTrip(mustGet(t, testURL))
			if resp != nil || calls.Load() != 1 {
				t.Fatalf("%d calls, response %v; want 1 call, no response", calls.Load(), resp)
			}
			if !reflect.DeepEqual(err, tc.err) || !errors.Is(err, tc.err) {
				t.Fatalf("got %#v, want the base's error unchanged: %#v", err, tc.err)
			}
			var re *RetryError
			if errors.As(err, &re) || failed != 0 {
				t.Fatalf("unlisted error reported as a give-up")
			}
		})
	}
	t.Run("identity", func(t *testing.T) {
		var calls atomic.Int32
		tr := New(testFactory(t, contractSettings), "quick", WithBase(newMock("GET", failing(&calls, errBoom))))
		if _, err := tr.RoundTrip(mustGet(t, testURL)); err != errBoom {
			t.Fatalf("got %v, want the very same error value", err)
		}
	})
}

// TestContractUnlistedClassPassesThrough: a class the policy does not list
// ends the loop at once with the attempt's own outcome.
func TestContractUnlistedClassPassesThrough(t *testing.T) {
	const doc = `
[default.resilience.retry.policies.conn]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["ConnectionError"]
`
	f := testFactory(t, doc)
	var calls atomic.Int32
	resp, err := New(f, "conn", WithBase(newMock("GET", answer(&calls, 503)))).RoundTrip(mustGet(t, testURL))
	if err != nil || resp.StatusCode != 503 || calls.Load() != 1 {
		t.Fatalf("got %v %v after %d calls; want the 503 after 1", resp, err, calls.Load())
	}
	readClose(t, resp)
	calls.Store(0)
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	_, err = New(f, "conn", WithBase(newMock("GET", failing(&calls, timeout)))).RoundTrip(mustGet(t, testURL))
	if err != timeout || calls.Load() != 1 {
		t.Fatalf("got %v after %d calls; want the timeout unchanged after 1", err, calls.Load())
	}
	calls.Store(0)
	reset := mkReset()
	_, err = New(f, "conn", WithBase(newMock("GET", failing(&calls, reset)))).RoundTrip(mustGet(t, testURL))
	if !errors.Is(err, syscall.ECONNRESET) || calls.Load() != 3 {
		t.Fatalf("got %v after %d calls; want the reset retried 3 times", err, calls.Load())
	}
}

func TestContractStatusesNeverRetried(t *testing.T) {
	f := testFactory(t, contractSettings)
	for _, code := range []int{200, 201, 204, 301, 304, 400, 401, 403, 404, 405, 409, 410, 413, 418, 422, 451, 501, 505} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var calls atomic.Int32
			resp, err := New(f, "quick", WithBase(newMock("GET", answer(&calls, code, code, code)))).RoundTrip(mustGet(t, testURL))
			if err != nil || resp.StatusCode != code || calls.Load() != 1 {
				t.Fatalf("got %v %v after %d calls; want %d after 1", resp, err, calls.Load(), code)
			}
			if body := readClose(t, resp); body != "attempt 1" {
				t.Fatalf("body %q, want the first answer unread", body)
			}
		})
	}
	for _, code := range []int{408, 429, 500, 502, 503, 504, 507, 599} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			var calls atomic.Int32
			resp, err := New(f, "quick", WithBase(newMock("GET", answer(&calls, code, code, code)))).RoundTrip(mustGet(t, testURL))
			if err != nil || resp.StatusCode != code || calls.Load() != 3 {
				t.Fatalf("got %v %v after %d calls; want %d after 3", resp, err, calls.Load(), code)
			}
			if body := readClose(t, resp); body != "attempt 3" {
				t.Fatalf("body %q, want the last answer unread", body)
			}
		})
	}
}

// retryAfterResponder answers code with a Retry-After header computed at
// the time of the call, then 200; it records when each call came.
func retryAfterResponder(times *[]time.Time, code int, value func(now time.Time) string) httpmock.Responder {
	return func(req *http.Request) (*http.Response, error) {
		consume(req)
		now := time.Now()
		*times = append(*times, now)
		if len(*times) > 1 {
			return httpmock.NewStringResponse(200, "ok"), nil
		}
		resp := httpmock.NewStringResponse(code, "later")
		resp.Header.Set("Retry-After", value(now))
		return resp, nil
	}
}

func TestContractRetryAfter(t *testing.T) {
	// Policy "slow": the first delay is exactly 1 s, wait_max is 10 s.
	for _, tc := range []struct {
		name  string
		code  int
		value func(now time.Time) string
		wait  time.Duration // -1: no retry, the response is returned as is
	}{
		{"seconds 503", 503, func(time.Time) string { return "5" }, 5 * time.Second},
		{"seconds 429", 429, func(time.Time) string { return "3" }, 3 * time.Second},
		{"seconds at wait_max", 503, func(time.Time) string { return "10" }, 10 * time.Second},
		{"HTTP-date", 503, func(now time.Time) string { return now.Add(7 * time.Second).UTC().Format(http.TimeFormat) }, 7 * time.Second},
		{"HTTP-date RFC 850", 429, func(now time.Time) string { return now.Add(4 * time.Second).UTC().Format(time.RFC850) }, 4 * time.Second},
		{"HTTP-date past", 503, func(now time.Time) string { return now.Add(-time.Hour).UTC().Format(http.TimeFormat) }, time.Second},
		{"shorter than the delay", 503, func(time.Time) string { return "0" }, time.Second},
		{"garbage", 503, func(time.Time) string { return "soon" }, time.Second},
		{"negative", 503, func(time.Time) string { return "-5" }, time.Second},
		{"fraction", 503, func(time.Time) string { return "2.5" }, time.Second},
		{"ignored on 500", 500, func(time.Time) string { return "5" }, time.Second},
		{"above wait_max", 503, func(time.Time) string { return "11" }, -1},
		{"above wait_max 429", 429, func(time.Time) string { return "3600" }, -1},
		{"huge", 503, func(time.Time) string { return "99999999999999999999999" }, -1},
		{"HTTP-date above wait_max", 503, func(now time.Time) string { return now.Add(time.Hour).UTC().Format(http.TimeFormat) }, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var times []time.Time
				var failed []FailEvent
				mock := newMock("GET", retryAfterResponder(&times, tc.code, tc.value))
				tr := New(testFactory(t, contractSettings), "slow", WithBase(mock), OnFail(func(e FailEvent) { failed = append(failed, e) }))
				start := time.Now()
				resp, err := tr.RoundTrip(mustGet(t, testURL))
				if err != nil {
					t.Fatal(err)
				}
				body := readClose(t, resp)
				if tc.wait < 0 {
					if len(times) != 1 || resp.StatusCode != tc.code || body != "later" || resp.Header.Get("Retry-After") == "" {
						t.Fatalf("%d calls, got %d %q; want the %d returned as is after 1 call", len(times), resp.StatusCode, body, tc.code)
					}
					if time.Since(start) != 0 {
						t.Errorf("waited %v before giving up, want no wait", time.Since(start))
					}
					if len(failed) != 1 || failed[0].Reason != ReasonRetryAfter || failed[0].StatusCode != tc.code {
						t.Errorf("fail events %+v, want one for retry-after", failed)
					}
					return
				}
				if len(times) != 2 || resp.StatusCode != 200 {
					t.Fatalf("%d calls, status %d; want 200 after 2", len(times), resp.StatusCode)
				}
				if got := times[1].Sub(times[0]); got != tc.wait {
					t.Fatalf("waited %v, want %v", got, tc.wait)
				}
			})
		})
	}
}

func TestContractDeadline(t *testing.T) {
	// Policy "slow": delays of 1 s then 2 s.
	t.Run("response", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			var calls atomic.Int32
			var failed []FailEvent
			tr := New(testFactory(t, contractSettings), "slow", WithBase(newMock("GET", answer(&calls, 503, 503, 503))), OnFail(func(e FailEvent) { failed = append(failed, e) }))
			start := time.Now()
			resp, err := tr.RoundTrip(newReq(t, ctx, "GET", nil))
			if err != nil {
				t.Fatal(err)
			}
			if elapsed := time.Since(start); elapsed != time.Second {
				t.Errorf("returned after %v, want 1s: the 2 s delay would pass the deadline", elapsed)
			}
			if body := readClose(t, resp); resp.StatusCode != 503 || body != "attempt 2" || calls.Load() != 2 {
				t.Fatalf("got %d %q after %d calls, want the second 503 as is", resp.StatusCode, body, calls.Load())
			}
			if len(failed) != 1 || failed[0].Reason != ReasonDeadline {
				t.Errorf("fail events %+v, want one for the deadline", failed)
			}
		})
	})
	t.Run("error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
			defer cancel()
			var calls atomic.Int32
			tr := New(testFactory(t, contractSettings), "slow", WithBase(newMock("GET", failing(&calls, mkReset()))))
			start := time.Now()
			_, err := tr.RoundTrip(newReq(t, ctx, "GET", nil))
			if elapsed := time.Since(start); elapsed != time.Second {
				t.Errorf("returned after %v, want 1s", elapsed)
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != ReasonDeadline || re.Attempts != 2 || re.Class != policy.ConnectionError {
				t.Fatalf("got %#v, want a RetryError for the deadline after 2 attempts", err)
			}
			if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%v does not match both the deadline and the last error", err)
			}
		})
	})
	t.Run("Retry-After past deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var times []time.Time
			mock := newMock("GET", retryAfterResponder(&times, 503, func(time.Time) string { return "5" }))
			start := time.Now()
			resp, err := New(testFactory(t, contractSettings), "slow", WithBase(mock)).RoundTrip(newReq(t, ctx, "GET", nil))
			if err != nil || resp.StatusCode != 503 || len(times) != 1 || time.Since(start) != 0 {
				t.Fatalf("got %v %v after %d calls and %v; want the 503 at once", resp, err, len(times), time.Since(start))
			}
			readClose(t, resp)
		})
	})
}

func TestContractCancelDuringDelay(t *testing.T) {
	for _, tc := range []struct {
		name string
		base func(respBody *trackedBody) http.RoundTripper
	}{
		{"error", func(*trackedBody) http.RoundTripper {
			return tripFunc(func(req *http.Request) (*http.Response, error) { consume(req); return nil, mkReset() })
		}},
		{"response", func(b *trackedBody) http.RoundTripper {
			return tripFunc(func(req *http.Request) (*http.Response, error) {
				consume(req)
				return &http.Response{StatusCode: 503, Header: http.Header{}, Body: b, Request: req}, nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				time.AfterFunc(500*time.Millisecond, cancel)
				respBody := newTrackedBody("unavailable")
				start := time.Now()
				resp, err := New(testFactory(t, contractSettings), "slow", WithBase(tc.base(respBody))).RoundTrip(newReq(t, ctx, "GET", nil))
				if resp != nil {
					t.Fatal("response returned after its body was drained")
				}
				if elapsed := time.Since(start); elapsed != 500*time.Millisecond {
					t.Errorf("returned after %v, want at the cancellation (500ms)", elapsed)
				}
				var re *RetryError
				if !errors.As(err, &re) || re.Reason != ReasonCanceled || re.Attempts != 1 || !errors.Is(err, context.Canceled) {
					t.Fatalf("got %#v, want a RetryError matching context.Canceled", err)
				}
				if tc.name == "response" {
					if respBody.closes.Load() != 1 || !strings.Contains(err.Error(), "503") {
						t.Errorf("response body closed %d times, error %q; want drained once and the status named", respBody.closes.Load(), err)
					}
				}
			})
		})
	}
}

// TestContractCancelDuringAttempt: the caller's cancellation is never
// retried; the attempt's own outcome comes back.
func TestContractCancelDuringAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	tr := New(testFactory(t, contractSettings), "quick", WithBase(tripFunc(func(req *http.Request) (*http.Response, error) {
		calls.Add(1)
		cancel()
		return nil, req.Context().Err()
	})))
	_, err := tr.RoundTrip(newReq(t, ctx, "GET", nil))
	var re *RetryError
	if !errors.Is(err, context.Canceled) || errors.As(err, &re) || calls.Load() != 1 {
		t.Fatalf("got %#v after %d calls; want context.Canceled unchanged after 1", err, calls.Load())
	}
}

// deadlineBody is a response body that fails once its attempt's context
// has ended, as net/http's bodies do.
type deadlineBody struct {
	ctx context.Context
	r   io.Reader
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}
func (b *deadlineBody) Close() error { return nil }

func TestContractPerAttemptTimeout(t *testing.T) {
	t.Run("classified HTTPTimeoutError", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls atomic.Int32
			var events []RetryEvent
			base := tripFunc(func(req *http.Request) (*http.Response, error) {
				consume(req)
				calls.Add(1)
				<-req.Context().Done()
				return nil, req.Context().Err()
			})
			start := time.Now()
			_, err := New(testFactory(t, contractSettings), "timed", WithBase(base), OnRetry(func(e RetryEvent) { events = append(events, e) })).RoundTrip(mustGet(t, testURL))
			var re *RetryError
			if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError || re.Attempts != 3 || calls.Load() != 3 {
				t.Fatalf("got %#v after %d calls, want a RetryError of class HTTPTimeoutError after 3", err, calls.Load())
			}
			var ne net.Error
			if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("%v is not a timeout", err)
			}
			if elapsed := time.Since(start); elapsed != 5*time.Second {
				t.Errorf("took %v, want 3 attempts of 1 s and 2 delays of 1 s", elapsed)
			}
			for _, e := range events {
				if e.Class != policy.HTTPTimeoutError {
					t.Errorf("retry event class %q", e.Class)
				}
			}
		})
	})
	t.Run("body outlives the timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var attemptCtx context.Context
			base := tripFunc(func(req *http.Request) (*http.Response, error) {
				attemptCtx = req.Context()
				time.Sleep(500 * time.Millisecond) // headers arrive within the timeout
				return &http.Response{StatusCode: 200, Header: http.Header{}, Request: req,
					Body: &deadlineBody{ctx: req.Context(), r: strings.NewReader("streamed body")}}, nil
			})
			resp, err := New(testFactory(t, contractSettings), "timed", WithBase(base)).RoundTrip(mustGet(t, testURL))
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Second) // far past the 1 s per-attempt timeout
			if attemptCtx.Err() != nil {
				t.Fatalf("attempt context ended before the body was closed: %v", attemptCtx.Err())
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != "streamed body" {
				t.Fatalf("read %q, %v after the timeout; want the whole body", b, err)
			}
			resp.Body.Close()
			if attemptCtx.Err() == nil {
				t.Fatal("attempt context still alive after Close: it leaks until the caller's ends")
			}
		})
	})
	t.Run("late response discarded", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// A base that ignores its context and answers after the timeout.
			var bodies []*trackedBody
			base := tripFunc(func(req *http.Request) (*http.Response, error) {
				time.Sleep(2 * time.Second)
				b := newTrackedBody("late")
				bodies = append(bodies, b)
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: b, Request: req}, nil
			})
			_, err := New(testFactory(t, contractSettings), "timed", WithBase(base)).RoundTrip(mustGet(t, testURL))
			var re *RetryError
			if !errors.As(err, &re) || re.Class != policy.HTTPTimeoutError {
				t.Fatalf("got %v, want a RetryError of class HTTPTimeoutError", err)
			}
			for i, b := range bodies {
				if b.closes.Load() != 1 {
					t.Errorf("late response %d closed %d times, want once", i+1, b.closes.Load())
				}
			}
		})
	})
}

// idleCounter is a base transport with CloseIdleConnections.
type idleCounter struct {
	http.RoundTripper
	n atomic.Int32
}

func (c *idleCounter) CloseIdleConnections() { c.n.Add(1) }

func TestContractCloseIdleConnections(t *testing.T) {
	base := &idleCounter{RoundTripper: httpmock.NewMockTransport()}
	tr := New(nil, "", WithBase(base))
	tr.CloseIdleConnections()
	(&http.Client{Transport: tr}).CloseIdleConnections()
	if base.n.Load() != 2 {
		t.Fatalf("base CloseIdleConnections called %d times, want 2", base.n.Load())
	}
	// A base without the method is left alone.
	New(nil, "", WithBase(tripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("unused") }))).CloseIdleConnections()
}

func TestContractCircuitBreakerHook(t *testing.T) {
	t.Run("open before the first attempt", func(t *testing.T) {
		var calls atomic.Int32
		var seen *http.Request
		body := newTrackedBody("payload")
		tr := New(testFactory(t, contractSettings), "quick", WithBase(newMock("PUT", answer(&calls))),
			WithCircuitBreakerHook(func(r *http.Request) bool { seen = r; return true }))
		resp, err := tr.RoundTrip(newReq(t, context.Background(), "PUT", body))
		if resp != nil || !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("got %v, %v; want ErrCircuitOpen", resp, err)
		}
		if calls.Load() != 0 || body.closes.Load() != 1 {
			t.Fatalf("%d calls, body closed %d times; want no I/O and the body closed", calls.Load(), body.closes.Load())
		}
		if seen == nil || seen.URL.String() != testURL || seen.Method != "PUT" {
			t.Fatalf("hook saw %v", seen)
		}
	})
	t.Run("open before a retry, response", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls, consults atomic.Int32
			var failed []FailEvent
			tr := New(testFactory(t, contractSettings), "slow", WithBase(newMock("GET", answer(&calls, 503, 503))),
				WithCircuitBreakerHook(func(*http.Request) bool { return consults.Add(1) > 1 }),
				OnFail(func(e FailEvent) { failed = append(failed, e) }))
			start := time.Now()
			resp, err := tr.RoundTrip(mustGet(t, testURL))
			if err != nil || resp.StatusCode != 503 {
				t.Fatalf("got %v, %v; want the 503", resp, err)
			}
			if body := readClose(t, resp); body != "attempt 1" || calls.Load() != 1 {
				t.Fatalf("body %q after %d calls; want the first answer unread", body, calls.Load())
			}
			if time.Since(start) != 0 {
				t.Errorf("slept %v on an open circuit", time.Since(start))
			}
			if len(failed) != 1 || failed[0].Reason != ReasonCircuitOpen {
				t.Errorf("fail events %+v", failed)
			}
		})
	})
	t.Run("open before a retry, error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var calls, consults atomic.Int32
			tr := New(testFactory(t, contractSettings), "slow", WithBase(newMock("GET", failing(&calls, mkReset()))),
				WithCircuitBreakerHook(func(*http.Request) bool { return consults.Add(1) > 3 }))
			start := time.Now()
			_, err := tr.RoundTrip(mustGet(t, testURL))
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != ReasonCircuitOpen || !errors.Is(err, ErrCircuitOpen) || !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("got %#v, want a RetryError matching ErrCircuitOpen and the reset", err)
			}
			if calls.Load() != 2 || time.Since(start) != time.Second {
				t.Errorf("%d calls in %v, want 2 calls and one 1 s delay", calls.Load(), time.Since(start))
			}
		})
	})
}

// TestContractResponseXorError: rtx hands back a response or an error,
// never both and never neither, even when the base breaks that rule.
func TestContractResponseXorError(t *testing.T) {
	t.Run("both", func(t *testing.T) {
		b := newTrackedBody("x")
		errBoth := errors.New("both")
		tr := New(testFactory(t, contractSettings), "once", WithBase(tripFunc(func(req *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: b}, errBoth
		})))
		resp, err := tr.RoundTrip(mustGet(t, testURL))
		if resp != nil || err != errBoth || b.closes.Load() != 1 {
			t.Fatalf("got %v, %v, body closed %d; want the error alone and the body closed", resp, err, b.closes.Load())
		}
	})
	t.Run("neither", func(t *testing.T) {
		tr := New(testFactory(t, contractSettings), "once", WithBase(tripFunc(func(*http.Request) (*http.Response, error) { return nil, nil })))
		resp, err := tr.RoundTrip(mustGet(t, testURL))
		if resp != nil || err == nil {
			t.Fatalf("got %v, %v; want an error", resp, err)
		}
	})
}

// TestContractConcurrentUse runs many requests through one Transport.
func TestContractConcurrentUse(t *testing.T) {
	var calls atomic.Int32
	mock := newMock("PUT", func(req *http.Request) (*http.Response, error) {
		body := consume(req)
		if calls.Add(1)%2 == 1 {
			return httpmock.NewStringResponse(503, ""), nil
		}
		return httpmock.NewStringResponse(200, body), nil
	})
	tr := New(testFactory(t, contractSettings), "quick", WithBase(mock))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 20 {
				want := fmt.Sprintf("g%d-r%d-%s", g, i, strings.Repeat("x", g*i))
				resp, err := tr.RoundTrip(newReq(t, context.Background(), "PUT", newTrackedBody(want)))
				if err != nil {
					t.Error(err)
					return
				}
				if got := readClose(t, resp); resp.StatusCode == 200 && got != want {
					t.Errorf("echo %q, want %q", got, want)
				}
			}
		})
	}
	wg.Wait()
}
