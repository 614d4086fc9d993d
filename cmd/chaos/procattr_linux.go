package main

import "syscall"

// childAttr makes a child die with the chaos process, so that no worker
// outlives a chaos run that was killed.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
