//go:build linux

package showq

import "syscall"

const sysFstatat = syscall.SYS_NEWFSTATAT
