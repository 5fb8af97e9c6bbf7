package bench

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// memTransport is the in-memory base every library wraps in the benchmarks:
// it reads and closes the request body and answers a fixed 200 with a small
// body, so that what is measured is the retrying transport, not I/O.
type memTransport struct{}

var okHeader = http.Header{"Content-Type": {"text/plain"}}

const okBody = "ok, fine"

func (memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, err := io.Copy(io.Discard, req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
	}
	return &http.Response{
		Status:        "200 OK",
		StatusCode:    http.StatusOK,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        okHeader,
		Body:          io.NopCloser(strings.NewReader(okBody)),
		ContentLength: int64(len(okBody)),
		Request:       req,
	}, nil
}

// plainReader is a request body that is neither a *bytes.Reader nor a
// *strings.Reader, so http.NewRequest sets no GetBody: a transport that wants
// to replay it has to capture it.
type plainReader struct {
	data []byte
	off  int
}

func (r *plainReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += n
	return n, nil
}

func (r *plainReader) Close() error { return nil }

const postSize = 64 << 10

var payload = bytes.Repeat([]byte("0123456789abcdef"), postSize/16)

// benchClient wraps the in-memory base in lib's transport under
// DefaultPolicy, as a user would.
func benchClient(b *testing.B, lib Library) *http.Client {
	b.Helper()
	return benchClientPolicy(b, lib, DefaultPolicy)
}

func benchClientPolicy(b *testing.B, lib Library, p Policy) *http.Client {
	b.Helper()
	rt, err := lib.New(memTransport{}, p)
	if err != nil {
		b.Fatal(err)
	}
	return &http.Client{Transport: rt}
}

func finish(b *testing.B, resp *http.Response, err error) {
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkGET is a GET answered on the first attempt, under DefaultPolicy
// (with a per-attempt timeout, which every library implements with a
// context and a timer).
func BenchmarkGET(b *testing.B) {
	benchGET(b, DefaultPolicy)
}

// BenchmarkGETNoTimeout is BenchmarkGET under a policy without a per-attempt
// timeout: the plain path of a retrying transport.
func BenchmarkGETNoTimeout(b *testing.B) {
	p := DefaultPolicy
	p.Timeout = 0
	benchGET(b, p)
}

func benchGET(b *testing.B, p Policy) {
	for _, lib := range All() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			c := benchClientPolicy(b, lib, p)
			req, err := http.NewRequest(http.MethodGet, "http://bench.invalid/get", nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Do(req)
				finish(b, resp, err)
			}
		})
	}
}

// BenchmarkGETParallel is BenchmarkGET from GOMAXPROCS goroutines at once.
func BenchmarkGETParallel(b *testing.B) {
	for _, lib := range All() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			c := benchClient(b, lib)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, err := http.NewRequest(http.MethodGet, "http://bench.invalid/get", nil)
				if err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					resp, err := c.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// BenchmarkPOSTStream is a 64 KiB POST whose body is a plain io.Reader, with
// no GetBody: a retrying transport must capture the body to replay it. Every
// library is allowed to retry POST, so each does the same work.
func BenchmarkPOSTStream(b *testing.B) {
	for _, lib := range All() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			c := benchClient(b, lib)
			body := &plainReader{data: payload}
			tmpl, err := http.NewRequest(http.MethodPost, "http://bench.invalid/post", body)
			if err != nil {
				b.Fatal(err)
			}
			if tmpl.GetBody != nil {
				b.Fatal("plainReader got a GetBody")
			}
			tmpl.ContentLength = int64(len(payload))
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				body.off = 0
				req := *tmpl
				resp, err := c.Do(&req)
				finish(b, resp, err)
			}
		})
	}
}

// BenchmarkPOSTGetBody is a 64 KiB POST built from a *bytes.Reader, so the
// request carries GetBody and replay needs no copy.
func BenchmarkPOSTGetBody(b *testing.B) {
	for _, lib := range All() {
		b.Run("lib="+lib.Name, func(b *testing.B) {
			c := benchClient(b, lib)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequest(http.MethodPost, "http://bench.invalid/post", bytes.NewReader(payload))
				if err != nil {
					b.Fatal(err)
				}
				resp, err := c.Do(req)
				finish(b, resp, err)
			}
		})
	}
}
