package rtx

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Regression: a panic in a hedged attempt (base transport, user class) runs on a
// goroutine of rtx's: the caller cannot recover it; the process dies.
func TestHedgePanicReachesTheCaller(t *testing.T) {
	if os.Getenv("RTX_TEST_CHILD") == "1" {
		var calls atomic.Int32
		base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if calls.Add(1) == 1 {
				time.Sleep(50 * time.Millisecond)
				return nil, netOpError{}.err()
			}
			panic("boom in base")
		})
		tr := New(testFactory(t, loserSettings), "h", WithBase(base))
		defer func() { recover() }() // the caller tries to contain it
		tr.RoundTrip(mustGet(t, "http://example.test/"))
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHedgePanicReachesTheCaller$")
	cmd.Env = append(os.Environ(), "RTX_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "boom in base") {
		t.Fatalf("a recovering caller still crashed: %v\n%s", err, firstLines(string(out), 6))
	}
}

func firstLines(s string, n int) string {
	l := strings.SplitN(s, "\n", n+1)
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}
