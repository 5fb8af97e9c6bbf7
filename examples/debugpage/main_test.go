package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/athomic-go/rtx"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitForTrouble waits until the page's JSON shows an open circuit and a
// give-up for lack of budget, and returns it.
func waitForTrouble(t *testing.T, d *demo) rtx.DebugState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := fetch(d.URL + "?format=json")
		if err == nil && len(st.Targets) == 2 {
			backends := st.Targets[0]
			budget := false
			for _, g := range backends.GiveUps {
				budget = budget || g.Reason == rtx.ReasonBudget
			}
			if backends.Upstreams.Open > 0 && budget && len(st.Targets[1].GiveUps) > 0 {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no open circuit and budget give-up within 30s: %+v %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fetch(url string) (rtx.DebugState, error) {
	var st rtx.DebugState
	resp, err := http.Get(url)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	http.DefaultClient.CloseIdleConnections()
	return st, err
}

func TestDemoJSON(t *testing.T) {
	d, err := start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	st := waitForTrouble(t, d)
	if u := st.Targets[0].Upstreams.Entries[0]; u.Key != "recommendations.internal:80" || u.Circuit.State != "open" || u.Circuit.FailMax != 2 {
		t.Errorf("first upstream listed: %+v", u)
	}
	s := st.Settings[0]
	if s.Version != 3 || s.Rejected == nil || !strings.Contains(s.Rejected.Error, "max_attempts") {
		t.Errorf("settings: version %d, rejected %+v", s.Version, s.Rejected)
	}
	for _, g := range st.Targets[0].GiveUps {
		if strings.Contains(g.URL, "4111") || strings.Contains(g.URL, "s3cr3t") || strings.Contains(g.URL, "alice") {
			t.Errorf("give-up shows a query value: %s", g.URL)
		}
	}
}

func TestRunDuration(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	if err := run([]string{"-duration", "300ms"}, &out); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("ran %v", took)
	}
	if !strings.HasPrefix(out.String(), "debug page: http://127.0.0.1:") {
		t.Errorf("output: %q", out.String())
	}
}

// TestBrowser renders the page in a real headless chromium: the DOM it
// builds shows the open circuit first and the give-ups, and it takes a
// screenshot. RTX_DEBUG_SCREENSHOT=path keeps the screenshot there (the
// README's picture is docs/debug-page.png, made so).
func TestBrowser(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium; .ci/run installs it): the page was not rendered in a browser")
	}
	d, err := start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	waitForTrouble(t, d)
	time.Sleep(time.Second) // let every backend's numbers fill in

	dom := runChromium(t, chromium, "--dump-dom", d.URL)
	for _, want := range []string{
		"recommendations.internal:80", `<span class="st open">open</span>`,
		"retry budget exhausted", "payments.internal:80", "Last update rejected", "ledger",
		"/v1/charge?card=REDACTED&amp;session=REDACTED",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	open, closed := strings.Index(dom, `class="st open"`), strings.Index(dom, `class="st closed"`)
	if open < 0 || closed < 0 || open > closed {
		t.Errorf("open circuit at %d, closed at %d: the open one must come first", open, closed)
	}
	for _, secret := range []string{"4111", "s3cr3t", "alice", "<script"} {
		if strings.Contains(dom, secret) {
			t.Errorf("the rendered page shows %q", secret)
		}
	}

	shot := os.Getenv("RTX_DEBUG_SCREENSHOT")
	if shot == "" {
		shot = t.TempDir() + "/debug-page.png"
	}
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1200,900", "--hide-scrollbars", d.URL)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Errorf("screenshot: %d bytes, not a picture of the page", len(png))
	}
}
