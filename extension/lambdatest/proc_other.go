//go:build unix && !linux

package lambdatest

import "syscall"

// sysProcAttr puts each process in its own group so the whole tree can be
// frozen and killed.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
