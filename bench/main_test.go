package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// leakOptions ignores the goroutines of toxiproxy's own links. When a toxic
// or a reset ends a link mid-stream, a stage before it (the link's reader or
// a NoopToxic) can block forever sending a chunk to a stage that has already
// exited; Proxy.Stop does not free it. Those goroutines belong to the proxy,
// not to any transport under test, and nothing of ours runs in them: the
// connections they held are closed, which the tests check at the server.
var leakOptions = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write"),
	goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, leakOptions...)
}
