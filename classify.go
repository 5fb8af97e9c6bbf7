package rtx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/athomic-go/rtx/policy"
)

// Classify returns the class of one attempt's outcome: the error (resp nil)
// or the response (err nil). User classes of the tree are tried first, in
// registration order; then the built-in rules of DESIGN's class table. The
// result is "" for a success and for failures that are never retried:
// cancellation, certificate errors, errors wrapped with [Permanent],
// malformed requests, 4xx other than 408 and 429, 501 and 505; and for
// errors no rule covers. A [Retrier], and a [Transport] over a custom base,
// class those as Exception. A nil classes means the built-in tree.
//
// Classification uses errors.Is/As and status codes, never error text.
// Classify does not read or close the response body. It is safe for
// concurrent use.
func Classify(classes *policy.Classes, resp *http.Response, err error) string {
	if err != nil && (errors.Is(err, context.Canceled) || isCertificateError(err) || isPermanent(err)) {
		return "" // never retried, whatever a user class says
	}
	if classes != nil {
		for _, c := range classes.User() {
			if c.Match(resp, err) {
				return c.Name
			}
		}
	}
	if err != nil {
		return classifyError(err)
	}
	if resp != nil {
		return classifyStatus(resp.StatusCode)
	}
	return ""
}

func classifyStatus(code int) string {
	switch {
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return policy.HTTPRequestError
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		return ""
	case code >= 500 && code <= 599:
		return policy.HTTPRequestError
	}
	return ""
}

func classifyError(err error) string {
	if errors.Is(err, context.Canceled) || isCertificateError(err) {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return policy.HTTPTimeoutError
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		switch {
		case dns.IsTimeout:
			return policy.HTTPTimeoutError
		case dns.IsTemporary:
			return policy.HTTPRequestError
		}
		return "" // no such host: retrying will not create it
	}
	if isTimeout(err) {
		return policy.HTTPTimeoutError
	}
	if isConnectionError(err) || refusedStream(err) {
		return policy.ConnectionError
	}
	return ""
}

// classException is the class of any error no other class covers.
const classException = "Exception"

// classifyAny is Classify for a Retrier's functions and a custom base
// transport: an error that no rule covers and that is not final is an
// Exception. net/http's own errors that no rule covers are final
// (malformed requests, unsupported schemes), so they stay unclassified.
func classifyAny(classes *policy.Classes, resp *http.Response, err error) string {
	class := Classify(classes, resp, err)
	if class == "" && err != nil && !errors.Is(err, context.Canceled) && !isCertificateError(err) && !isPermanent(err) {
		return classException
	}
	return class
}

// h2StreamError has the shape of net/http's bundled HTTP/2 stream error (and
// of golang.org/x/net/http2.StreamError), which converts itself through
// errors.As to any struct of that shape.
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e h2StreamError) Error() string { return "http2 stream error" }

const h2RefusedStream = 0x7

// refusedStream reports an HTTP/2 REFUSED_STREAM: the server did not
// process the request at all.
func refusedStream(err error) bool {
	var se h2StreamError
	return errors.As(err, &se) && se.Code == h2RefusedStream
}

// isTimeout reports whether any error in err's tree says it is a timeout.
// errors.As would stop at the outermost net.Error (a *url.Error, say),
// whose Timeout looks only at the error it wraps directly.
func isTimeout(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Timeout() bool }); ok && t.Timeout() {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if isTimeout(e) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

func isConnectionError(err error) bool {
	for _, target := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, io.ErrUnexpectedEOF, io.EOF} {
		if errors.Is(err, target) {
			return true
		}
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isCertificateError(err error) bool {
	var (
		unknown   x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		roots     x509.SystemRootsError
		critical  x509.UnhandledCriticalExtension
		verify    *tls.CertificateVerificationError
		notTLS    tls.RecordHeaderError
		constrain x509.ConstraintViolationError
	)
	return errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostname) ||
		errors.As(err, &roots) || errors.As(err, &critical) || errors.As(err, &verify) ||
		errors.As(err, &notTLS) || errors.As(err, &constrain)
}

// neverSent reports whether err proves the request never reached the
// server, which makes even a POST safe to resend: the dial failed, the name
// did not resolve, or an HTTP/2 server refused the stream.
func neverSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &dns) || (errors.As(err, &op) && op.Op == "dial") || refusedStream(err)
}

// idempotent reports whether a request may be resent after it reached the
// server (RFC 9110 section 9.2.2), or carries an idempotency key.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return hasIdempotencyKey(req.Header)
}

func hasIdempotencyKey(h http.Header) bool {
	_, a := h["Idempotency-Key"]
	_, b := h["X-Idempotency-Key"]
	return a || b
}

// ParseRetryAfter parses a Retry-After header value (RFC 9110 section
// 10.2.3): delay-seconds or an HTTP-date, relative to now. A date in the past
// is a zero wait; a number too large to represent is the largest duration.
// Garbage, negative numbers and empty values report false.
func ParseRetryAfter(value string, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return maxDuration, true
			}
			return 0, false
		}
		if n > uint64(maxDuration/time.Second) {
			return maxDuration, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

const maxDuration = time.Duration(1<<63 - 1)

// retryAfter returns the server's hint on a 429 or 503 response.
func retryAfter(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp == nil || (resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return 0, false
	}
	return ParseRetryAfter(resp.Header.Get("Retry-After"), now)
}
