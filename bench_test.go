package rtx

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// benchSettings is a realistic policy: three attempts, the retry budget on.
const benchSettings = `
[default.resilience.retry.policies.api]
attempts = 3
wait_min_seconds = 0.1
wait_max_seconds = 1.0
exceptions = ["HTTPException"]

[default.resilience.retry.policies.timed]
attempts = 3
wait_min_seconds = 0.1
wait_max_seconds = 1.0
timeout_seconds = 5
exceptions = ["HTTPException"]
`

// sinkTransport is an in-memory base: it drains and closes the request
// body and answers with the same preallocated 200, allocating nothing.
// The response is shared, so it is reset on each call: a caller that
// wrapped its body (rtx does, under a per-attempt timeout) would otherwise
// wrap the last wrapper, one more each call.
type sinkTransport struct{ resp http.Response }

func newSink() *sinkTransport {
	return &sinkTransport{resp: http.Response{StatusCode: 200, Status: "200 OK", Header: http.Header{}, Body: http.NoBody}}
}

func (s *sinkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	s.resp.Body = http.NoBody // undo the wrapper a per-attempt timeout put on it
	return &s.resp, nil
}

// resettableBody is a plain request body (no WriteTo, no Len, so no
// GetBody and no shortcut in io.Copy) that can be rewound between
// iterations without allocating.
type resettableBody struct{ r bytes.Reader }

func (b *resettableBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *resettableBody) Close() error               { return nil }

func benchTransports(b *testing.B) (bare http.RoundTripper, withRTX http.RoundTripper) {
	b.Helper()
	base := newSink()
	return base, New(testFactory(b, benchSettings), "api", WithBase(base))
}

func BenchmarkGET(b *testing.B) {
	bare, withRTX := benchTransports(b)
	timed := New(testFactory(b, benchSettings), "timed", WithBase(bare))
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", bare}, {"rtx", withRTX}, {"rtx/timeout", timed}} {
		b.Run(bc.name, func(b *testing.B) {
			req := mustGet(b, "http://api.test/items?page=1")
			b.ReportAllocs()
			for b.Loop() {
				resp, err := bc.rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkPOSTStream64K(b *testing.B) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	bare, withRTX := benchTransports(b)
	for _, bc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"bare", bare}, {"rtx", withRTX}} {
		b.Run(bc.name, func(b *testing.B) {
			body := &resettableBody{}
			req, err := http.NewRequest("POST", "http://api.test/upload", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.ContentLength = int64(len(payload))
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				body.r.Reset(payload)
				req.Body = body
				resp, err := bc.rt.RoundTrip(req)
				if err != nil || resp.StatusCode != 200 {
					b.Fatal(resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}

func BenchmarkClassify(b *testing.B) {
	resp := statusResponse(503)
	reset := urlErr(mkReset())
	b.ReportAllocs()
	for b.Loop() {
		Classify(nil, resp, nil)
		Classify(nil, nil, reset)
	}
}

func BenchmarkParseRetryAfter(b *testing.B) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	date := now.Add(time.Minute).Format(http.TimeFormat)
	b.ReportAllocs()
	for b.Loop() {
		ParseRetryAfter("120", now)
		ParseRetryAfter(date, now)
	}
}

// BenchmarkGETUpstreams is a first-try GET with the default settings
// (budget on), with circuits off and on, cycling over 1, 1,000 and 100,000
// upstreams whose state exists already: the cost must not grow with them.
func BenchmarkGETUpstreams(b *testing.B) {
	const withCircuits = benchSettings + `
[default.resilience.circuit_breaker]
enabled = true
`
	// "bare" is the base alone over the same requests. One request is sent
	// with its host changed each time, the host names laid out in one
	// string, as a caller's fresh request would be in cache: what grows
	// with the upstreams is then rtx's state alone.
	for _, settings := range []struct{ name, doc string }{{"bare", benchSettings}, {"circuits=off", benchSettings}, {"circuits=on", withCircuits}} {
		for _, n := range []int{1, 1000, 100000} {
			b.Run(fmt.Sprintf("%s/upstreams=%d", settings.name, n), func(b *testing.B) {
				var tr http.RoundTripper = New(testFactory(b, settings.doc), "api", WithBase(newSink()))
				if settings.name == "bare" {
					tr = newSink()
				}
				var all strings.Builder
				ends := make([]int, n)
				for i := range n {
					fmt.Fprintf(&all, "host%d.api.test", i)
					ends[i] = all.Len()
				}
				names := all.String()
				hosts := make([]string, n)
				for i, start := range ends {
					if i > 0 {
						start = ends[i-1]
					} else {
						start = 0
					}
					hosts[i] = names[start:ends[i]]
				}
				req := mustGet(b, "http://host0.api.test/items")
				// A host's state is made at its first sampled first try
				// (one in 16): 64 visits leave about 2% without one.
				for range 64 {
					for _, h := range hosts {
						req.URL.Host = h
						if resp, err := tr.RoundTrip(req); err == nil {
							resp.Body.Close()
						}
					}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					req.URL.Host = hosts[i]
					resp, err := tr.RoundTrip(req)
					if err != nil || resp.StatusCode != 200 {
						b.Fatal(resp, err)
					}
					resp.Body.Close()
					if i++; i == n {
						i = 0
					}
				}
			})
		}
	}
}
