//go:build !linux

package promharness

import "syscall"

// sysProcAttr has no parent-death signal outside Linux: children are
// stopped by Stop and Close only.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
