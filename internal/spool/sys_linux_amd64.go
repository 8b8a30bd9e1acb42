//go:build linux && amd64

package spool

import "syscall"

const sysFstatat = syscall.SYS_NEWFSTATAT
