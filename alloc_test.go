package rtx

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// fixedTransport answers every request with the same 200, allocating nothing.
type fixedTransport struct{ resp http.Response }

func (f *fixedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &f.resp, nil
}

func newFixed() *fixedTransport {
	return &fixedTransport{resp: http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
}

func TestFirstTryGETAllocatesNothingMoreThanBare(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector; CI runs this test without -race too")
	}
	base := newFixed()
	tr := New(testFactory(t, quick), "quick", WithBase(base))
	req := mustGet(t, "http://api.test/x")
	bare := testing.AllocsPerRun(200, func() { base.RoundTrip(req) })
	withRTX := testing.AllocsPerRun(200, func() {
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	})
	if withRTX > bare {
		t.Errorf("rtx allocates %.1f per first-try GET, bare %.1f", withRTX, bare)
	}
}

func TestStreamedPOSTCaptureIsPooled(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector; CI runs this test without -race too")
	}
	base := newFixed()
	tr := New(testFactory(t, quick), "quick", WithBase(base))
	payload := strings.Repeat("x", 64<<10)
	var r strings.Reader
	req, _ := http.NewRequest("POST", "http://api.test/x", nil)
	run := func() {
		r.Reset(payload)
		req.Body = io.NopCloser(&r)
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	run()
	var m1, m2 runtimeMem
	m1.read()
	const n = 200
	for i := 0; i < n; i++ {
		run()
	}
	m2.read()
	perOp := float64(m2.bytes-m1.bytes) / n
	t.Logf("%.0f bytes per 64 KiB streamed POST", perOp)
	if perOp > 0.1*float64(len(payload)) {
		t.Errorf("%.0f bytes allocated per request, want under 10%% of %d", perOp, len(payload))
	}
}
