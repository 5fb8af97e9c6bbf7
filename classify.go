package rtx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
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
	if isConnectionError(err) || h2Reset(err) {
		return policy.ConnectionError
	}
	return ""
}

// classifyAny is Classify for a Retrier's functions and a custom base
// transport: an error that no rule covers and that is not final is an
// Exception. net/http's own errors that no rule covers are final
// (malformed requests, unsupported schemes), so they stay unclassified.
func classifyAny(classes *policy.Classes, resp *http.Response, err error) string {
	class := Classify(classes, resp, err)
	if class == "" && err != nil && !errors.Is(err, context.Canceled) && !isCertificateError(err) && !isPermanent(err) {
		return policy.Exception
	}
	return class
}

// h2StreamError has the shape of net/http's bundled HTTP/2 stream error
// (http2StreamError) and of golang.org/x/net/http2.StreamError: an
// RST_STREAM from the peer, or a stream the client reset itself. Go 1.26's
// bundled type has no As method, so errors.As cannot convert it; h2Fault
// matches it by shape instead. Errors that convert themselves (older
// x/net versions, test doubles) are found through errors.As as well.
type h2StreamError struct {
	StreamID uint32
	Code     uint32
	Cause    error
}

func (e h2StreamError) Error() string { return "http2 stream error" }

// h2GoAwayError has the shape of net/http's bundled http2GoAwayError and
// of golang.org/x/net/http2.GoAwayError: the server sent GOAWAY and closed
// the connection while the request's stream, numbered at or below
// LastStreamID, was open.
type h2GoAwayError struct {
	LastStreamID uint32
	ErrCode      uint32
	DebugData    string
}

func (e h2GoAwayError) Error() string { return "http2 GOAWAY" }

const h2RefusedStream = 0x7

// h2Fault finds an HTTP/2 stream reset or GOAWAY in err's tree. Go's
// HTTP/2 errors are value types of an unexported (bundled) package, so
// they are recognised by their shape: a struct with exactly the fields of
// h2StreamError or h2GoAwayError, in that order, of those kinds.
//
// Not found here, because net/http hands them back without a typed cause:
//   - "http2: Transport: cannot retry err [...] after Request.Body was
//     written": net/http formats the cause with %v, so REFUSED_STREAM, a
//     GOAWAY above the request's stream or a PROTOCOL_ERROR from the peer
//     on a request with a body but no GetBody leaves no type to find. A
//     body that has a GetBody never takes that path: net/http resends it
//     itself (see replay.getBody).
//   - a GOAWAY above the request's stream (errClientConnGotGoAway) and a
//     stale connection (errClientConnUnusable): unexported sentinels made
//     by errors.New. net/http resends such requests itself, up to six
//     times, before they reach rtx.
//   - a GOAWAY with an error code that aborts stream 1 of a connection:
//     net/http builds it with fmt.Errorf("... ErrCode:%v") and does not
//     resend it.
func h2Fault(err error) (se *h2StreamError, ga *h2GoAwayError) {
	var conv h2StreamError
	if errors.As(err, &conv) {
		return &conv, nil
	}
	walkErrors(err, func(e error) bool {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return false
		}
		switch {
		case sameShape(v.Type(), h2StreamErrorType):
			se = &h2StreamError{StreamID: uint32(v.Field(0).Uint()), Code: uint32(v.Field(1).Uint())}
			se.Cause, _ = v.Field(2).Interface().(error)
		case sameShape(v.Type(), h2GoAwayErrorType):
			ga = &h2GoAwayError{LastStreamID: uint32(v.Field(0).Uint()), ErrCode: uint32(v.Field(1).Uint()), DebugData: v.Field(2).String()}
		}
		return se != nil || ga != nil
	})
	return se, ga
}

var (
	h2StreamErrorType = reflect.TypeFor[h2StreamError]()
	h2GoAwayErrorType = reflect.TypeFor[h2GoAwayError]()
)

// sameShape reports whether t has the fields of want, same names, same
// order, same kinds (a named uint32 such as http2ErrCode is a uint32).
func sameShape(t, want reflect.Type) bool {
	if t.NumField() != want.NumField() {
		return false
	}
	for i := range t.NumField() {
		f, w := t.Field(i), want.Field(i)
		if f.Name != w.Name || f.Type.Kind() != w.Type.Kind() {
			return false
		}
		if w.Type.Kind() == reflect.Interface && f.Type != w.Type {
			return false
		}
	}
	return true
}

// walkErrors calls fn on err and every error it wraps, depth first, until
// fn returns true.
func walkErrors(err error, fn func(error) bool) bool {
	for err != nil {
		if fn(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walkErrors(e, fn) {
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

// h2Reset reports an HTTP/2 stream reset (any code) or a GOAWAY followed by
// the connection's close: the connection-level faults of HTTP/2.
func h2Reset(err error) bool {
	se, ga := h2Fault(err)
	return se != nil || ga != nil
}

// h2NeverProcessed reports an HTTP/2 fault that proves the server did not
// process the request: REFUSED_STREAM (RFC 9113 section 8.7), or a GOAWAY
// whose last stream ID is 0, below every stream a client can open.
func h2NeverProcessed(err error) bool {
	se, ga := h2Fault(err)
	return se != nil && se.Code == h2RefusedStream || ga != nil && ga.LastStreamID == 0
}

// isTimeout reports whether any error in err's tree says it is a timeout.
// errors.As would stop at the outermost net.Error (a *url.Error, say),
// whose Timeout looks only at the error it wraps directly.
func isTimeout(err error) bool {
	return walkErrors(err, func(e error) bool {
		t, ok := e.(interface{ Timeout() bool })
		return ok && t.Timeout()
	})
}

func isConnectionError(err error) bool {
	for _, target := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, io.ErrUnexpectedEOF, io.EOF} {
		if errors.Is(err, target) {
			return true
		}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return closedWrite(err)
}

// closedWrite reports a send on a connection that the transport's reader
// had already closed, on a reset or EOF from the peer while the request
// was being written: net.ErrClosed in a "write" *net.OpError, or in the
// "readfrom" one of a body copied through io.ReaderFrom (which net/http
// may wrap around the write's own *net.OpError).
func closedWrite(err error) bool {
	return walkErrors(err, func(e error) bool {
		op, ok := e.(*net.OpError)
		return ok && (op.Op == "write" || op.Op == "readfrom") && errors.Is(op.Err, net.ErrClosed)
	})
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
// did not resolve, an HTTP/2 server refused the stream, or its GOAWAY
// excluded every stream.
func neverSent(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	return errors.As(err, &dns) || (errors.As(err, &op) && op.Op == "dial") || h2NeverProcessed(err)
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
