package faultserver

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestFaults checks each fault as a plain client sees it, and the counts.
func TestFaults(t *testing.T) {
	want := []byte("request body")
	s := Start(Config{
		Decide: func(id string, n int) Fault {
			f, _ := strconv.Atoi(id)
			return Fault(f)
		},
		Expect:    func(string) []byte { return want },
		SlowDelay: time.Millisecond,
	})
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	do := func(f Fault, body []byte) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPut, s.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(IDHeader, strconv.Itoa(int(f)))
		return c.Do(req)
	}
	for _, tc := range []struct {
		f      Fault
		status int
	}{{None, 200}, {Status503, 503}, {Status429, 429}, {Slow, 200}} {
		resp, err := do(tc.f, want)
		if err != nil {
			t.Fatalf("fault %d: %v", tc.f, err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("fault %d: status %d, want %d", tc.f, resp.StatusCode, tc.status)
		}
		if tc.status == 200 {
			if err := CheckBody(resp); err != nil {
				t.Errorf("fault %d: %v", tc.f, err)
			}
		} else {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if _, err := do(Reset, want); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Errorf("reset: %v, want ECONNRESET or EOF", err)
	}
	resp, err := do(None, []byte("something else"))
	if err != nil {
		t.Fatal(err)
	}
	_ = CheckBody(resp)

	if got := s.Hits(); got != 6 {
		t.Errorf("hits %d, want 6", got)
	}
	if r := s.Records()["0"]; r.Attempts != 2 || r.Complete != 1 || r.Mismatch != 1 {
		t.Errorf("record 0 = %+v, want 2 attempts, 1 complete, 1 mismatch", r)
	}
	tr.CloseIdleConnections()
	if open := s.WaitOpen(0, 5*time.Second); open != 0 {
		t.Errorf("%d connections still open", open)
	}
	if s.Conns() < 2 {
		t.Errorf("conns %d: the reset must have cost a connection", s.Conns())
	}
}
