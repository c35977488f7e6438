package promharness

import "syscall"

// sysProcAttr makes the kernel SIGKILL the child when the thread that
// started it, and so the test process, dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
