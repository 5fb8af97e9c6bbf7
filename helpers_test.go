package rtx

import (
	"net"
	"os"
	"syscall"
)

type netOpError struct{}

func (netOpError) err() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
}
