//go:build linux

package lambdatest

import "syscall"

// sysProcAttr puts each process in its own group (so the whole tree can be
// frozen and killed) and kills it if the platform's process dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
