package realserver

import (
	"fmt"
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPrometheusStartsAndStops(t *testing.T) {
	var s *Server
	t.Run("run", func(t *testing.T) {
		s = Prometheus(t)
		before := s.Counter(t, "prometheus_http_requests_total", map[string]string{"handler": "/-/healthy"})
		resp, err := http.Get(s.URL + "/-/healthy")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		http.DefaultTransport.(*http.Transport).CloseIdleConnections()
		after := s.Counter(t, "prometheus_http_requests_total", map[string]string{"handler": "/-/healthy"})
		if after-before != 1 {
			t.Errorf("prometheus counted %v requests to /-/healthy, want 1", after-before)
		}
	})
	if s != nil && !s.Exited() {
		t.Error("prometheus still running after its test's cleanup")
	}
}

func TestPushgatewayStartsAndStops(t *testing.T) {
	var s *Server
	t.Run("run", func(t *testing.T) {
		s = Pushgateway(t)
		if _, err := Scrape(s.URL+"/metrics", "pushgateway_build_info", nil); err != nil {
			t.Fatal(err)
		}
	})
	if s != nil && !s.Exited() {
		t.Error("pushgateway still running after its test's cleanup")
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of
// stopping the goroutine, so Binary's decision can be checked.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

func TestBinaryMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{{"true", true}, {"", false}, {"false", false}} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		if got := Binary(r, "prometheus"); got != "" {
			t.Errorf("CI=%q: Binary = %q, want \"\"", tc.ci, got)
		}
		if gotFatal := r.fatal != ""; gotFatal != tc.wantFatal || (r.skip != "") == tc.wantFatal {
			t.Errorf("CI=%q: fatal %q skip %q, want fatal=%v (else skip)", tc.ci, r.fatal, r.skip, tc.wantFatal)
		}
	}
}
