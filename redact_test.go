package rtx

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestRedactURLBareParameters(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://api.test/p?BAREt0ken", "https://api.test/p?REDACTED"},
		{"https://api.test/p?a=1&BAREt0ken&b=2", "https://api.test/p?a=REDACTED&b=REDACTED&REDACTED"},
		{"https://api.test/p?one&two", "https://api.test/p?REDACTED"},
		{"https://api.test/p?key=", "https://api.test/p?key=REDACTED"},
		{"https://api.test/p?token=s3cr3t&token=again&page=2", "https://api.test/p?page=REDACTED&token=REDACTED"},
		{"https://api.test/p?a%20b=x", "https://api.test/p?a+b=REDACTED"},
		{"https://api.test/p?a=1&&", "https://api.test/p?a=REDACTED"},
		{"https://api.test/p?bad%zz=1", "https://api.test/p?REDACTED"},
		{"https://api.test/p?a=1;s3cr3t", "https://api.test/p?REDACTED"},
		{"https://bob:pw@api.test/p#frag", "https://api.test/p"},
	}
	for _, tc := range cases {
		u, err := url.Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := RedactURL(u); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactErrorBareParameter(t *testing.T) {
	const raw = "https://api.test/p?BAREt0ken&page=2"
	err := &url.Error{Op: "Get", URL: raw, Err: errors.New("connection reset")}
	got := redactError(err)
	if strings.Contains(got, "BAREt0ken") || strings.Contains(got, "=2") {
		t.Fatalf("redactError kept a secret: %q", got)
	}
	if want := `Get "https://api.test/p?page=REDACTED&REDACTED": connection reset`; got != want {
		t.Errorf("redactError = %q, want %q", got, want)
	}
}
