package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// leakOptions ignores one goroutine of toxiproxy's own: a link's first stage
// (a NoopToxic) blocks forever sending a chunk to a stage that has already
// closed, when a toxic or a reset ends the link mid-stream. It belongs to the
// proxy, not to any transport under test, and nothing of ours runs in it.
var leakOptions = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/Shopify/toxiproxy/v2/toxics.(*NoopToxic).Pipe"),
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions...)
}
