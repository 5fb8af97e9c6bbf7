package hostport

import (
	"net"
	"net/url"
	"strings"
	"testing"
)

func TestAppend(t *testing.T) {
	for in, want := range map[string]string{
		"http://API.Example.com":       "api.example.com:80",
		"https://api.example.com":      "api.example.com:443",
		"https://api.example.com:8443": "api.example.com:8443",
		"http://[::1]:9000/x":          "[::1]:9000",
		"https://[::1]":                "[::1]:443",
		"http://127.0.0.1:1/?q=1":      "127.0.0.1:1",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(Append(nil, u)); got != want {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
}

// FuzzAppend checks Append against the standard library's spelling.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"http://a:1", "https://B", "http://[::1]:2", "http://x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || !ascii(u.Host) {
			return // hosts on the wire are ASCII (IDNA); only those are lower-cased
		}
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		want := net.JoinHostPort(strings.ToLower(u.Hostname()), port)
		if got := string(Append(nil, u)); got != want {
			t.Fatalf("%q: got %q, want %q", s, got, want)
		}
	})
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestScan(t *testing.T) {
	for b := 0; b < 256; b++ {
		for pos := range 19 {
			s := []byte("abcdefghijklmnopqrs")
			s[pos] = byte(b)
			colon, upper := scan(string(s))
			if want := 'A' <= b && b <= 'Z'; upper != want {
				t.Fatalf("scan(%q): upper %v", s, upper)
			}
			if want := strings.LastIndexByte(string(s), ':'); colon != want {
				t.Fatalf("scan(%q): colon %d, want %d", s, colon, want)
			}
		}
	}
	for _, s := range []string{"", ":", "a:b:c", "[::1]:8080", "::::::::::::::::", "h000123.bench.invalid:8443", "A:"} {
		colon, _ := scan(s)
		if want := strings.LastIndexByte(s, ':'); colon != want {
			t.Errorf("scan(%q): colon %d, want %d", s, colon, want)
		}
	}
}
