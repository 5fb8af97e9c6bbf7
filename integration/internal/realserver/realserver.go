// Package realserver starts real server programs (Prometheus, the
// Prometheus Pushgateway) on loopback for a test, and reads their own
// metrics so a test can compare what a server counted with what its client
// sent.
//
// A server is started with a free port on 127.0.0.1 and a data directory in
// t.TempDir(), is waited for by polling its readiness endpoint against a
// deadline, and is stopped (SIGTERM, then SIGKILL) and reaped in t.Cleanup.
// When the program is not installed the test is skipped, except when the
// environment has CI=true: there a missing program fails the test.
package realserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// StartTimeout bounds how long a server may take to become ready.
const StartTimeout = 60 * time.Second

// Server is a running server program.
type Server struct {
	// URL is the server's base URL, "http://127.0.0.1:<port>".
	URL string
	// Log is the path of the file that holds the program's output.
	Log string

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
}

// Binary returns the path of the program name. When it is not installed it
// skips t, or fails it when CI=true (CI must install it: .ci/integration.sh).
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found and CI=true: install it (apt-get install %s; .ci/integration.sh does): %v", name, name, err)
		return ""
	}
	t.Skipf("%s not installed (apt-get install %s), skipping: %v", name, name, err)
	return ""
}

// Prometheus starts Debian's prometheus with a configuration that scrapes
// nothing, so the only requests it counts are the test's.
func Prometheus(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t, "prometheus")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  evaluation_interval: 1h\nscrape_configs: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return start(t, bin, "/-/ready", func(addr string) []string {
		return []string{
			"--config.file=" + cfg,
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + addr,
			"--log.level=warn",
		}
	})
}

// Pushgateway starts Debian's prometheus-pushgateway, keeping metrics in
// memory only.
func Pushgateway(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t, "prometheus-pushgateway")
	return start(t, bin, "/-/ready", func(addr string) []string {
		return []string{
			"--web.listen-address=" + addr,
			"--persistence.file=",
			"--log.level=warn",
		}
	})
}

// start runs bin with the arguments args gives for a listen address, and
// waits until readyPath answers 200. A port taken between choosing and
// binding it makes the program exit: start then tries another port.
func start(t testing.TB, bin, readyPath string, args func(addr string) []string) *Server {
	t.Helper()
	var lastErr error
	for try := 0; try < 3; try++ {
		s, err := launch(t, bin, args)
		if err != nil {
			t.Fatal(err)
		}
		err = s.waitReady(readyPath, StartTimeout)
		if err == nil {
			return s
		}
		lastErr = err
		select {
		case <-s.done: // it exited (port taken?): try again
		default:
			t.Fatalf("%s: %v\n%s", filepath.Base(bin), err, tail(s.Log))
		}
	}
	t.Fatalf("%s did not start: %v", filepath.Base(bin), lastErr)
	return nil
}

func launch(t testing.TB, bin string, args func(addr string) []string) (*Server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp(t.TempDir(), filepath.Base(bin)+"-*.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args(addr)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &Server{URL: "http://" + addr, Log: logf.Name(), cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // reaps the process
		close(s.done)
	}()
	t.Cleanup(s.stop)
	return s, nil
}

// stop asks the process to exit, kills it if it does not within 10s, and
// returns once it has been reaped.
func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Exited reports whether the process has exited and been reaped.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) waitReady(path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		last = err
		select {
		case <-s.done:
			return fmt.Errorf("exited before ready (last poll: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		case <-tick.C:
		}
	}
}

// Counter returns the value of the counter (or gauge) name whose labels
// include labels, as the server at s.URL exposes it on /metrics, read
// directly (not through any proxy). A series that does not exist yet
// counts 0.
func (s *Server) Counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, err := Scrape(s.URL+"/metrics", name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Scrape reads the metrics page at url and returns the sum of the series
// of family name whose labels include labels.
func Scrape(url, name string, labels map[string]string) (float64, error) {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", url, err)
	}
	mf, ok := families[name]
	if !ok {
		return 0, nil
	}
	sum := 0.0
	for _, m := range mf.GetMetric() {
		if matches(m, labels) {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum, nil
}

func matches(m *dto.Metric, want map[string]string) bool {
	have := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
