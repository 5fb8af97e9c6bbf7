package rtx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jarcoal/httpmock"

	"github.com/athomic-go/rtx/policy"
)

func statusResponse(code int) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody}
}

var classifyStatusCases = []struct {
	code int
	want string
}{
	{200, ""}, {201, ""}, {204, ""}, {301, ""}, {304, ""},
	{400, ""}, {401, ""}, {403, ""}, {404, ""}, {409, ""}, {418, ""}, {422, ""},
	{408, policy.HTTPRequestError}, {429, policy.HTTPRequestError},
	{500, policy.HTTPRequestError}, {501, ""}, {502, policy.HTTPRequestError},
	{503, policy.HTTPRequestError}, {504, policy.HTTPRequestError}, {505, ""},
	{507, policy.HTTPRequestError}, {511, policy.HTTPRequestError}, {599, policy.HTTPRequestError},
	{600, ""}, {0, ""}, {-1, ""}, {99, ""},
}

func TestClassifyStatus(t *testing.T) {
	for _, tc := range classifyStatusCases {
		if got := Classify(nil, statusResponse(tc.code), nil); got != tc.want {
			t.Errorf("Classify(%d) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// timeoutError is a net.Error that reports a timeout.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func urlErr(err error) error {
	return &url.Error{Op: "Get", URL: "https://api.test/x?token=secret", Err: err}
}

func opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}, Err: err}
}

func sysErr(call string, errno syscall.Errno) error { return os.NewSyscallError(call, errno) }

var classifyErrorCases = []struct {
	name string
	err  error
	want string
}{
	{"refused", opErr("dial", sysErr("connect", syscall.ECONNREFUSED)), policy.ConnectionError},
	{"refused in url.Error", urlErr(opErr("dial", sysErr("connect", syscall.ECONNREFUSED))), policy.ConnectionError},
	{"dial network unreachable", opErr("dial", sysErr("connect", syscall.ENETUNREACH)), policy.ConnectionError},
	{"reset on read", opErr("read", sysErr("read", syscall.ECONNRESET)), policy.ConnectionError},
	{"reset in url.Error", urlErr(opErr("read", sysErr("read", syscall.ECONNRESET))), policy.ConnectionError},
	{"aborted", opErr("read", sysErr("read", syscall.ECONNABORTED)), policy.ConnectionError},
	{"broken pipe", opErr("write", sysErr("write", syscall.EPIPE)), policy.ConnectionError},
	{"bare errno", syscall.ECONNRESET, policy.ConnectionError},
	{"unexpected EOF", io.ErrUnexpectedEOF, policy.ConnectionError},
	{"unexpected EOF wrapped", fmt.Errorf("reading response: %w", io.ErrUnexpectedEOF), policy.ConnectionError},
	{"EOF before a response", urlErr(io.EOF), policy.ConnectionError},
	{"read timeout", opErr("read", os.ErrDeadlineExceeded), policy.HTTPTimeoutError},
	{"dial timeout", urlErr(opErr("dial", timeoutError{})), policy.HTTPTimeoutError},
	{"net.Error timeout", timeoutError{}, policy.HTTPTimeoutError},
	{"deadline exceeded", context.DeadlineExceeded, policy.HTTPTimeoutError},
	{"deadline in url.Error", urlErr(context.DeadlineExceeded), policy.HTTPTimeoutError},
	{"per-attempt timeout", &attemptTimeoutError{timeout: time.Second}, policy.HTTPTimeoutError},
	{"DNS temporary", urlErr(opErr("dial", &net.DNSError{Err: "server misbehaving", Name: "api.test", IsTemporary: true})), policy.HTTPRequestError},
	{"DNS timeout", urlErr(opErr("dial", &net.DNSError{Err: "i/o timeout", Name: "api.test", IsTimeout: true, IsTemporary: true})), policy.HTTPTimeoutError},
	{"DNS not found", urlErr(opErr("dial", &net.DNSError{Err: "no such host", Name: "api.test", IsNotFound: true})), ""},
	{"DNS not found bare", &net.DNSError{Err: "no such host", Name: "api.test", IsNotFound: true}, ""},
	{"unknown authority", urlErr(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), ""},
	{"unknown authority bare", x509.UnknownAuthorityError{}, ""},
	{"expired", urlErr(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}), ""},
	{"hostname", urlErr(&tls.CertificateVerificationError{Err: x509.HostnameError{Host: "api.test"}}), ""},
	{"not TLS", urlErr(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}), ""},
	{"canceled", context.Canceled, ""},
	{"canceled in url.Error", urlErr(context.Canceled), ""},
	{"canceled during dial", urlErr(opErr("dial", context.Canceled)), ""},
	{"unsupported scheme", urlErr(errors.New(`unsupported protocol scheme "ftp"`)), ""},
	{"plain", errors.New("boom"), ""},
	{"nil", nil, ""},
}

func TestClassifyError(t *testing.T) {
	for _, tc := range classifyErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Classify(nil, nil, tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
			if got := Classify(policy.Builtin().Classes(), nil, tc.err); got != tc.want {
				t.Errorf("with the built-in tree: Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

// TestClassifyTree: the class names Classify returns sit where DESIGN's
// table puts them, so a policy listing a parent retries them.
func TestClassifyTree(t *testing.T) {
	c := policy.Builtin().Classes()
	for _, tc := range []struct{ class, ancestor string }{
		{policy.ConnectionError, policy.HTTPRequestError},
		{policy.ConnectionError, policy.HTTPException},
		{policy.HTTPRequestError, policy.HTTPException},
		{policy.HTTPTimeoutError, policy.HTTPException},
	} {
		if !c.Is(tc.class, tc.ancestor) {
			t.Errorf("%s is not under %s", tc.class, tc.ancestor)
		}
	}
	if c.Is(policy.HTTPTimeoutError, policy.HTTPRequestError) || c.Is(policy.HTTPRequestError, policy.ConnectionError) {
		t.Error("a class covers its parent or sibling")
	}
}

var (
	errQuota   = errors.New("quota exceeded")
	teapot     = policy.Class{Name: "Teapot", Parent: policy.HTTPRequestError, Match: func(r *http.Response, _ error) bool { return r != nil && r.StatusCode == 418 }}
	quota      = policy.Class{Name: "Quota", Parent: policy.HTTPException, Match: func(_ *http.Response, err error) bool { return errors.Is(err, errQuota) }}
	overloaded = policy.Class{Name: "Overloaded", Parent: policy.HTTPRequestError, Match: func(r *http.Response, _ error) bool { return r != nil && r.StatusCode == 503 }}
	shortQuota = policy.Class{Name: "ShortQuota", Parent: "Quota", Match: func(_ *http.Response, err error) bool { return err != nil && strings.HasPrefix(err.Error(), "short") }}
)

const userClassSettings = `
[default.resilience.retry.policies.teapots]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["Teapot"]
budget_ratio = -1

[default.resilience.retry.policies.requests]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["HTTPRequestError"]
budget_ratio = -1

[default.resilience.retry.policies.connections]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["ConnectionError"]
budget_ratio = -1

[default.resilience.retry.policies.quotas]
attempts = 3
wait_min_seconds = 0.001
wait_max_seconds = 0.002
exceptions = ["Quota"]
budget_ratio = -1
`

func loadWithClasses(t *testing.T, doc string, classes ...policy.Class) (*policy.Factory, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "settings.toml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := []policy.LoadOption{policy.WithEnv(""), policy.WithEnviron(func() []string { return nil })}
	for _, c := range classes {
		opts = append(opts, policy.WithClass(c))
	}
	return policy.LoadFile(path, opts...)
}

func TestClassifyUserClasses(t *testing.T) {
	f, err := loadWithClasses(t, userClassSettings, teapot, quota, overloaded, shortQuota)
	if err != nil {
		t.Fatal(err)
	}
	classes := f.Snapshot().Classes()
	for _, tc := range []struct {
		name string
		resp *http.Response
		err  error
		want string
	}{
		{"user status", statusResponse(418), nil, "Teapot"},
		{"user status before built-in", statusResponse(503), nil, "Overloaded"},
		{"built-in untouched", statusResponse(502), nil, policy.HTTPRequestError},
		{"user error", nil, fmt.Errorf("api: %w", errQuota), "Quota"},
		{"registration order", nil, errors.New("short of quota"), "ShortQuota"},
		{"built-in error", nil, mkReset(), policy.ConnectionError},
		{"success", statusResponse(200), nil, ""},
	} {
		if got := Classify(classes, tc.resp, tc.err); got != tc.want {
			t.Errorf("%s: Classify = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Without the tree, user classes are unknown.
	if got := Classify(nil, statusResponse(418), nil); got != "" {
		t.Errorf("Classify(nil, 418) = %q", got)
	}
}

// TestClassifyUserClassesRetried: policies name user classes, and a class
// is retried by a policy listing it or one of its ancestors.
func TestClassifyUserClassesRetried(t *testing.T) {
	f, err := loadWithClasses(t, userClassSettings, teapot, quota, shortQuota)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		policy string
		code   int
		err    error
		want   int32
	}{
		{"teapots", 418, nil, 3},
		{"teapots", 503, nil, 1}, // HTTPRequestError is Teapot's parent, not its child
		{"requests", 418, nil, 3},
		{"connections", 418, nil, 1},
		{"quotas", 0, errQuota, 3},
		{"quotas", 0, errors.New("short on tokens"), 3}, // ShortQuota under Quota
		{"requests", 0, errQuota, 1},
	} {
		t.Run(fmt.Sprintf("%s/%d/%v", tc.policy, tc.code, tc.err), func(t *testing.T) {
			var calls atomic.Int32
			mock := newMock("GET", func(req *http.Request) (*http.Response, error) {
				calls.Add(1)
				if tc.err != nil {
					return nil, tc.err
				}
				return httpmock.NewStringResponse(tc.code, ""), nil
			})
			var events []RetryEvent
			resp, err := New(f, tc.policy, WithBase(mock), OnRetry(func(e RetryEvent) { events = append(events, e) })).RoundTrip(mustGet(t, testURL))
			if resp != nil {
				readClose(t, resp)
			}
			if calls.Load() != tc.want {
				t.Fatalf("%d calls, want %d (err %v)", calls.Load(), tc.want, err)
			}
			if tc.want > 1 && tc.err != nil {
				var re *RetryError
				if !errors.As(err, &re) || !errors.Is(err, tc.err) {
					t.Errorf("got %v, want a RetryError wrapping the user error", err)
				}
			}
			for _, e := range events {
				if e.Class == "" || e.Class == policy.HTTPException {
					t.Errorf("retry event class %q", e.Class)
				}
			}
		})
	}
}

func TestClassifyUnknownClassInSettings(t *testing.T) {
	_, err := loadWithClasses(t, userClassSettings) // Teapot and Quota not registered
	if err == nil || !strings.Contains(err.Error(), "Teapot") || !strings.Contains(err.Error(), "settings.toml") {
		t.Fatalf("got %v, want an error naming the file and the unknown class", err)
	}
	_, err = loadWithClasses(t, userClassSettings, shortQuota, quota, teapot) // child before its parent
	if err == nil || !strings.Contains(err.Error(), "ShortQuota") {
		t.Fatalf("got %v, want an error naming the class with an unknown parent", err)
	}
}

// TestClassifyNestedTimeout: a timeout wrapped once more inside a
// *url.Error (or *net.OpError) is still a timeout. Both types implement
// net.Error but their Timeout looks only at their direct Err, so
// errors.As(err, &netErr) stops at a wrapper that says "no".
func TestClassifyNestedTimeout(t *testing.T) {
	for _, err := range []error{
		urlErr(fmt.Errorf("read body: %w", timeoutError{})),
		opErr("read", fmt.Errorf("poll: %w", timeoutError{})),
		urlErr(fmt.Errorf("a: %w", opErr("read", os.ErrDeadlineExceeded))),
	} {
		if got := Classify(nil, nil, err); got != policy.HTTPTimeoutError {
			t.Errorf("Classify(%v) = %q, want HTTPTimeoutError", err, got)
		}
	}
}

var retryAfterNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

var parseRetryAfterCases = []struct {
	value string
	want  time.Duration
	ok    bool
}{
	{"0", 0, true},
	{"5", 5 * time.Second, true},
	{" 7 ", 7 * time.Second, true},
	{"120", 2 * time.Minute, true},
	{"0005", 5 * time.Second, true},
	{"9223372036", 9223372036 * time.Second, true},
	{"9223372037", math.MaxInt64, true},
	{"99999999999999999999999", math.MaxInt64, true},
	{retryAfterNow.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second, true},
	{retryAfterNow.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second, true},
	{retryAfterNow.Add(time.Hour).Format(time.ANSIC), time.Hour, true},
	{retryAfterNow.Format(http.TimeFormat), 0, true},
	{retryAfterNow.Add(-time.Hour).Format(http.TimeFormat), 0, true},
	{"Thu, 01 Jan 1970 00:00:00 GMT", 0, true},
	{"", 0, false},
	{"   ", 0, false},
	{"soon", 0, false},
	{"-5", 0, false},
	{"+5", 0, false},
	{"5.5", 0, false},
	{"1e3", 0, false},
	{"0x10", 0, false},
	{"5s", 0, false},
	{"5 6", 0, false},
	{"Tue, 32 Mar 2025 05:06:07 GMT", 0, false},
	{"2025-03-04T05:06:37Z", 0, false},
}

func TestParseRetryAfter(t *testing.T) {
	for _, tc := range parseRetryAfterCases {
		got, ok := ParseRetryAfter(tc.value, retryAfterNow)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.value, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, tc := range parseRetryAfterCases {
		f.Add(tc.value, int64(0))
	}
	f.Add("Sun, 06 Nov 1994 08:49:37 GMT", int64(-1e18))
	f.Fuzz(func(t *testing.T, value string, shift int64) {
		now := retryAfterNow.Add(time.Duration(shift))
		d, ok := ParseRetryAfter(value, now)
		if d < 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v: negative", value, d)
		}
		if !ok && d != 0 {
			t.Fatalf("ParseRetryAfter(%q) = %v, false: a failed parse must be zero", value, d)
		}
		if ok && strings.TrimSpace(value) == "" {
			t.Fatalf("ParseRetryAfter(%q) accepted an empty value", value)
		}
		if d2, ok2 := ParseRetryAfter(value, now); d2 != d || ok2 != ok {
			t.Fatalf("ParseRetryAfter(%q) not deterministic", value)
		}
		// A hint is taken only on 429 and 503, and never exceeds what it says.
		resp := statusResponse(503)
		resp.Header.Set("Retry-After", value)
		if hd, hok := retryAfter(resp, now); hok != ok || hd != d {
			t.Fatalf("retryAfter(503, %q) = %v, %v; ParseRetryAfter = %v, %v", value, hd, hok, d, ok)
		}
		resp.StatusCode = 500
		if _, hok := retryAfter(resp, now); hok {
			t.Fatalf("retryAfter took a hint on a 500")
		}
	})
}

// fuzzErrors are the error kinds FuzzClassify combines with wrappers.
var fuzzErrors = func() []error {
	errs := make([]error, 0, len(classifyErrorCases))
	for _, tc := range classifyErrorCases {
		errs = append(errs, tc.err)
	}
	return errs
}()

// wrapErr wraps err in the ways net/http and callers do.
func wrapErr(err error, how uint8) error {
	if err == nil {
		return nil
	}
	switch how % 5 {
	case 1:
		return urlErr(err)
	case 2:
		return fmt.Errorf("layer: %w", err)
	case 3:
		return errors.Join(err)
	case 4:
		return urlErr(fmt.Errorf("a: %w", fmt.Errorf("b: %w", err)))
	}
	return err
}

func FuzzClassify(f *testing.F) {
	for _, tc := range classifyStatusCases {
		f.Add(tc.code, uint8(0), uint8(0))
	}
	for i := range classifyErrorCases {
		f.Add(0, uint8(i), uint8(i))
	}
	known := map[string]bool{"": true, policy.HTTPRequestError: true, policy.ConnectionError: true, policy.HTTPTimeoutError: true}
	f.Fuzz(func(t *testing.T, code int, kind, wrap uint8) {
		if code != 0 {
			got := Classify(nil, statusResponse(code), nil)
			if !known[got] || got == policy.ConnectionError || got == policy.HTTPTimeoutError {
				t.Fatalf("Classify(%d) = %q", code, got)
			}
			retried := code == 408 || code == 429 || (code >= 500 && code <= 599 && code != 501 && code != 505)
			if (got != "") != retried {
				t.Fatalf("Classify(%d) = %q", code, got)
			}
			return
		}
		base := fuzzErrors[int(kind)%len(fuzzErrors)]
		got := Classify(nil, nil, wrapErr(base, wrap))
		if !known[got] {
			t.Fatalf("Classify(%v) = %q: not a built-in class", base, got)
		}
		if want := Classify(nil, nil, base); got != want {
			t.Fatalf("wrapping %v (%d) changed its class from %q to %q", base, wrap%5, want, got)
		}
	})
}
