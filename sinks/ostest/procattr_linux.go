package ostest

import "syscall"

// procAttr has the kernel kill the node if this process dies without
// closing its standard input (SIGKILL of the test binary).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
