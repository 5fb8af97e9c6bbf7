package bench

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/athomic-go/rtx/bench/internal/faultserver"
)

var matrixLibs = flag.String("matrix.libs", "rtx", "comma-separated libraries to run the fault matrix on (rtx, retryablehttp, failsafe-go)")

// matrixPolicy gives each attempt 200 ms: more than the latency toxic adds,
// less than a black hole takes.
var matrixPolicy = Policy{Attempts: 3, WaitMin: 5 * time.Millisecond, WaitMax: time.Second, Timeout: 200 * time.Millisecond}

const putSize = 40 << 10

// putBody is the body of logical request id: distinct for every id and every
// offset, so a body from another request, a shifted or a repeated chunk all
// show as a mismatch at the server.
func putBody(id string) []byte {
	n, _ := strconv.Atoi(id)
	b := make([]byte, putSize)
	for i := range b {
		b[i] = byte((i*31 + n*17 + i/251) % 251)
	}
	return b
}

// toxicCase is one toxic between client and server. attributes gets the
// request method, so that a data limit can be sized to the requests.
type toxicCase struct {
	name, typ, stream string
	toxicity          float64
	attributes        func(method string) string
	// clean: the toxic slows but never breaks anything, so every request
	// must succeed on its first attempt.
	clean bool
	// minOK is the share of logical requests that must succeed.
	minOK float64
	// fresh sends every attempt on a new connection: toxiproxy draws a
	// toxic's toxicity once per connection, so with keep-alive a few lucky
	// connections would carry every request.
	fresh bool
}

func fixed(s string) func(string) string { return func(string) string { return s } }

var toxicCases = []toxicCase{
	{name: "reset_peer/down", fresh: true, typ: "reset_peer", stream: "downstream", toxicity: 0.4, attributes: fixed(`{"timeout":0}`), minOK: 0.7},
	{name: "reset_peer/up", fresh: true, typ: "reset_peer", stream: "upstream", toxicity: 0.4, attributes: fixed(`{"timeout":0}`), minOK: 0.7},
	{name: "timeout/blackhole", fresh: true, typ: "timeout", stream: "upstream", toxicity: 0.4, attributes: fixed(`{"timeout":0}`), minOK: 0.7},
	{name: "timeout/close-50ms", fresh: true, typ: "timeout", stream: "downstream", toxicity: 0.4, attributes: fixed(`{"timeout":50}`), minOK: 0.7},
	{name: "latency", typ: "latency", stream: "downstream", toxicity: 1, attributes: fixed(`{"latency":30,"jitter":10}`), clean: true},
	{name: "slow_close", typ: "slow_close", stream: "downstream", toxicity: 1, attributes: fixed(`{"delay":100}`), clean: true},
	// Every connection carries about two and a half requests, then is cut
	// off in the middle of the third: the server must never take a
	// truncated body for a whole one, and the replay must be whole.
	{name: "limit_data/up", typ: "limit_data", stream: "upstream", toxicity: 1, attributes: func(m string) string {
		if m == http.MethodGet {
			return `{"bytes":300}`
		}
		return fmt.Sprintf(`{"bytes":%d}`, putSize*5/2)
	}, minOK: 0.7},
	// Responses cut off mid-body after the headers reach the caller as a
	// body read error: a failure, but never a short body taken for a whole.
	{name: "limit_data/down", typ: "limit_data", stream: "downstream", toxicity: 1, attributes: fixed(`{"bytes":2500}`), minOK: 0.4},
}

// requestKind is how a logical request is sent.
type requestKind struct {
	name   string
	method string
	build  func(url, id string) (*http.Request, error)
}

var requestKinds = []requestKind{
	{"GET", http.MethodGet, func(url, _ string) (*http.Request, error) {
		return http.NewRequest(http.MethodGet, url, nil)
	}},
	// A body with no GetBody: the transport must capture it to replay it.
	{"PUT-stream", http.MethodPut, func(url, id string) (*http.Request, error) {
		req, err := http.NewRequest(http.MethodPut, url, &plainReader{data: putBody(id)})
		if err == nil {
			req.ContentLength = putSize
		}
		return req, err
	}},
	{"PUT-GetBody", http.MethodPut, func(url, id string) (*http.Request, error) {
		return http.NewRequest(http.MethodPut, url, bytes.NewReader(putBody(id)))
	}},
}

// TestFaultMatrix puts a toxiproxy proxy with one toxic between a client
// using rtx and the loopback server, for GET and for PUT. Whatever the toxic,
// a request the caller saw succeed arrived whole at the server, no body ever
// arrived different from what was sent, and no request reached the server
// more often than the policy's attempts.
func TestFaultMatrix(t *testing.T) {
	const requests, workers = 24, 4
	for _, lib := range selectLibs(t, *matrixLibs) {
		for _, tc := range toxicCases {
			for _, kind := range requestKinds {
				t.Run(lib.Name+"/"+tc.name+"/"+kind.name, func(t *testing.T) {
					runToxicCase(t, lib, tc, kind, requests, workers)
				})
			}
		}
	}
}

func runToxicCase(t *testing.T, lib Library, tc toxicCase, kind requestKind, requests, workers int) {
	srv := faultserver.Start(faultserver.Config{Expect: putBody})
	defer srv.Close()

	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	proxy := toxiproxy.NewProxy(api, "rtx-bench", "127.0.0.1:0", srv.Addr())
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer proxy.Stop()
	toxic := fmt.Sprintf(`{"name":"t","type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`,
		tc.typ, tc.stream, tc.toxicity, tc.attributes(kind.method))
	if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
		t.Fatal(err)
	}

	base := NewBase()
	base.DisableKeepAlives = tc.fresh
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: lib.Wrap(base, matrixPolicy)}
	url := "http://" + proxy.Listen + "/"

	outcome := make([]error, requests)
	ids := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range ids {
				outcome[i] = sendOne(client, kind, url, strconv.Itoa(i))
			}
		})
	}
	for i := range requests {
		ids <- i
	}
	close(ids)
	wg.Wait()

	records := srv.Records()
	ok := 0
	for i, err := range outcome {
		id := strconv.Itoa(i)
		rec := records[id]
		if rec.Attempts > matrixPolicy.Attempts {
			t.Errorf("request %s reached the server %d times, policy allows %d", id, rec.Attempts, matrixPolicy.Attempts)
		}
		if rec.Mismatch > 0 {
			t.Errorf("request %s: %d bodies arrived whole but different from what was sent", id, rec.Mismatch)
		}
		if err != nil {
			if tc.clean {
				t.Errorf("request %s failed under a harmless toxic: %v", id, err)
			}
			continue
		}
		ok++
		if kind.method == http.MethodPut && rec.Complete == 0 {
			t.Errorf("request %s succeeded but its body never arrived whole (%+v)", id, rec)
		}
		if tc.clean && rec.Attempts != 1 {
			t.Errorf("request %s took %d attempts under a harmless toxic", id, rec.Attempts)
		}
	}
	t.Logf("%d/%d succeeded, %d attempts, %d TCP connections", ok, requests, srv.Hits(), srv.Conns())
	if min := int(tc.minOK * float64(requests)); !tc.clean && ok < min {
		t.Errorf("%d/%d succeeded, want at least %d", ok, requests, min)
	}

	client.CloseIdleConnections()
	proxy.Stop()
	if open := srv.WaitOpen(0, 10*time.Second); open != 0 {
		t.Errorf("%d connections still open at the server", open)
	}
}

// sendOne sends one logical request: nil when it ended in a 200 whose body
// is the healthy body in full.
func sendOne(c *http.Client, kind requestKind, url, id string) error {
	req, err := kind.build(url, id)
	if err != nil {
		return err
	}
	req.Header.Set(faultserver.IDHeader, id)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return faultserver.CheckBody(resp)
}

func selectLibs(t *testing.T, names string) []Library {
	t.Helper()
	var out []Library
	for _, name := range strings.Split(names, ",") {
		found := false
		for _, l := range Retrying() {
			if l.Name == strings.TrimSpace(name) {
				out = append(out, l)
				found = true
			}
		}
		if !found {
			t.Fatalf("unknown library %q", name)
		}
	}
	return out
}
