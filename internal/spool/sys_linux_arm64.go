//go:build linux && arm64

package spool

import "syscall"

const sysFstatat = syscall.SYS_FSTATAT
