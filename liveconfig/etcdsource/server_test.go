package etcdsource_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdBinary finds the etcd server: $ETCD_BIN, etcd on $PATH, or Debian's
// /usr/bin/etcd. Without one the test is skipped, except in CI, where the
// server is part of the environment and its absence is a failure.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ETCD_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/etcd"); err == nil {
		return "/usr/bin/etcd"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no etcd server binary (install Debian's etcd-server, or set ETCD_BIN)")
	}
	t.Skip("no etcd server binary (install Debian's etcd-server, or set ETCD_BIN)")
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// etcdServer is a single-member etcd on loopback ports, with its data in a
// temporary directory, that a test can stop and start again.
type etcdServer struct {
	bin, dir           string
	clientURL, peerURL string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	out  bytes.Buffer // the server's log, shown when a test fails
}

func startEtcd(t *testing.T) *etcdServer {
	t.Helper()
	s := &etcdServer{
		bin:       etcdBinary(t),
		dir:       t.TempDir(),
		clientURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		peerURL:   fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
	}
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("etcd log:\n%s", s.log())
		}
	})
	s.start(t)
	return s
}

func (s *etcdServer) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

type lockedWriter struct{ s *etcdServer }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// start runs the server and waits until it reports itself healthy.
func (s *etcdServer) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(s.bin,
		"--name", "rtx-test",
		"--data-dir", s.dir,
		"--listen-client-urls", s.clientURL,
		"--advertise-client-urls", s.clientURL,
		"--listen-peer-urls", s.peerURL,
		"--initial-advertise-peer-urls", s.peerURL,
		"--initial-cluster", "rtx-test="+s.peerURL,
		"--initial-cluster-state", "new",
	)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdout = lockedWriter{s}
	cmd.Stderr = lockedWriter{s}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(s.clientURL + "/health")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"true"`)) {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("etcd exited before it was healthy:\n%s", s.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd not healthy within 20s (last error %v):\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server (SIGTERM, then SIGKILL) and reaps it.
func (s *etcdServer) stop(t *testing.T) {
	t.Helper()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// client returns a client of the server through endpoint (the server's own
// URL unless a proxy is given), closed by the test's cleanup.
func (s *etcdServer) client(t *testing.T, endpoint string) *clientv3.Client {
	t.Helper()
	if endpoint == "" {
		endpoint = s.clientURL
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// proxy forwards loopback TCP connections to an address until cut, which
// drops every connection and refuses new ones until restore.
type proxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		l.Close()
		p.drop()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(up, c); up.Close(); c.Close() })
		p.wg.Go(func() { io.Copy(c, up); up.Close(); c.Close() })
	}
}

func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Cut drops every connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
	p.drop()
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}
