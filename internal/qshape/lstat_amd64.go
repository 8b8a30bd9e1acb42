//go:build linux

package qshape

import "syscall"

const sysFstatat = syscall.SYS_NEWFSTATAT
