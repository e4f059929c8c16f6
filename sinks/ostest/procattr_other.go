//go:build !linux

package ostest

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
