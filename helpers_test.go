package rtx

import (
	"net"
	"os"
	"runtime"
	"syscall"

	"github.com/sony/gobreaker/v2"
)

type netOpError struct{}

func (netOpError) err() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
}

type runtimeMem struct{ bytes uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.bytes = s.TotalAlloc
}

// circuitState returns the state of the engine's circuit called name
// (closed when there is none).
func circuitState(e *engine, name string) gobreaker.State {
	st := gobreaker.StateClosed
	e.eachCircuit(func(c *circuit) {
		if c.name == name {
			st = c.peek(e.cfg.circuits.OnStateChange)
		}
	})
	return st
}
