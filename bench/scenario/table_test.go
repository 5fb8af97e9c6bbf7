package scenario

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestTables(t *testing.T) {
	rs := []Result{{Scenario: "s", Library: "l", Requests: 4, OK: 3, Hits: 6, Conns: 2, P50: 1500 * time.Microsecond, P99: 1234 * time.Millisecond}}
	var b bytes.Buffer
	if err := Table(&b, rs); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"75.0%", "1.5ms", "1.23s", "1.50", " 2"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := Markdown(&b, rs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "| s | l | 75.0% | 1.5ms | 1.23s | 1.50 | 2 |") {
		t.Errorf("markdown:\n%s", b.String())
	}
}
