package local

import (
	"fmt"
	"os/exec"
	"runtime"
	"syscall"
	"unsafe"
)

// Cred is the identity one delivery step runs as: a recipient, the owner
// of an alias table or :include: file, or default_privs.
type Cred struct {
	Name   string // for messages
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, the primary one included
}

// privileged reports whether this process can act as any user.
func (a *Agent) privileged() bool { return a.euid == 0 }

// canActAs says whether a step as c is possible at all: as root always;
// as an ordinary user only as that same user (development), never as
// anyone else, so a mailbox is never created with the wrong owner.
func (a *Agent) canActAs(c Cred) error {
	if a.privileged() || c.UID == uint32(a.euid) {
		return nil
	}
	return &privError{c: c, euid: a.euid}
}

// privError is the deferral reason of a delivery that needs root.
type privError struct {
	c    Cred
	euid int
}

func (e *privError) Error() string {
	return fmt.Sprintf("cannot deliver as user %s (uid %d): sluice runs as uid %d, not as root", e.c.Name, e.c.UID, e.euid)
}

// asCred is the privileged part of local delivery, and the only one:
// it runs fn with the file-system identity of c (fsuid, fsgid and
// supplementary groups), so that every open, create, mkdir and link in
// fn is checked and owned as c's, as Postfix's local(8) does with
// set_eugid. It changes the identity of one OS thread only (raw
// setfsuid/setfsgid/setgroups system calls on a locked thread; Go's own
// Setuid would change every thread of the daemon), and puts it back
// afterwards; if putting it back fails the thread is left locked, so the
// Go runtime ends it instead of reusing it. fn must not start
// goroutines that touch the file system.
//
// When the process is not root, fn runs as the process itself, and only
// for c being the process's own user (canActAs).
func (a *Agent) asCred(c Cred, fn func() error) error {
	if err := a.canActAs(c); err != nil {
		return err
	}
	if !a.privileged() || (c.UID == 0 && c.GID == 0) {
		return fn()
	}
	runtime.LockOSThread()
	saved, err := syscall.Getgroups()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("getgroups: %w", err)
	}
	if err := setThreadCred(c.UID, c.GID, c.Groups); err != nil {
		if restoreThreadCred(saved) == nil {
			runtime.UnlockOSThread()
		}
		return err
	}
	ferr := fn()
	if err := restoreThreadCred(saved); err != nil {
		// Keep the thread locked: it dies with this goroutine.
		return fmt.Errorf("local: restore thread credentials: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func setThreadCred(uid, gid uint32, groups []uint32) error {
	if len(groups) == 0 {
		groups = []uint32{gid}
	}
	if err := rawSetgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(gid), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(uid), 0, 0)
	// setfsuid/setfsgid return the old value, never an error; asking
	// with an invalid id (-1) returns the current one without a change.
	if cur, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(cur) != uid {
		return fmt.Errorf("setfsuid %d did not take", uid)
	}
	if cur, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(cur) != gid {
		return fmt.Errorf("setfsgid %d did not take", gid)
	}
	return nil
}

func restoreThreadCred(saved []int) error {
	syscall.RawSyscall(syscall.SYS_SETFSUID, 0, 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSGID, 0, 0, 0)
	if cur, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); cur != 0 {
		return fmt.Errorf("fsuid is %d, not 0", cur)
	}
	gs := make([]uint32, len(saved))
	for i, g := range saved {
		gs[i] = uint32(g)
	}
	return rawSetgroups(gs)
}

// rawSetgroups sets the supplementary groups of the calling thread only.
func rawSetgroups(gs []uint32) error {
	var p unsafe.Pointer
	if len(gs) > 0 {
		p = unsafe.Pointer(&gs[0])
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(gs)), uintptr(p), 0); e != 0 {
		return e
	}
	return nil
}

// commandCred makes cmd run as c: the child process gets c's uid, gid
// and groups (as root), or runs as the process itself when that is c.
func (a *Agent) commandCred(cmd *exec.Cmd, c Cred) error {
	if err := a.canActAs(c); err != nil {
		return err
	}
	if a.privileged() {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups},
			Setsid:     true,
		}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	return nil
}
