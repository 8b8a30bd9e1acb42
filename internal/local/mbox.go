package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Locking is mailbox_delivery_lock and its retry parameters.
type Locking struct {
	Dotlock  bool          // path.lock, created exclusively
	Fcntl    bool          // a POSIX write lock on the whole file
	Flock    bool          // flock(2) on the file
	Attempts int           // deliver_lock_attempts (20)
	Delay    time.Duration // deliver_lock_delay (1s)
	Stale    time.Duration // stale_lock_time (500s): an older dotlock is removed
}

// mboxTarget is where and how one mbox append happens.
type mboxTarget struct {
	path   string
	owner  Cred // the file's owner: new files get it, existing ones must have it (mailboxes)
	opener Cred // who opens, locks and creates (root for a spool that is not world-writable)
	writer Cred // who writes (the recipient, for quotas)
	// checkOwner refuses an existing file that is not owner's (the
	// user's mailbox); file destinations from aliases and .forward may
	// be anybody's that the writer can open.
	checkOwner bool
	// dotlockMayFail: a file destination in a directory where the
	// writer cannot create a lock file is still written, as Postfix
	// does for files.
	dotlockMayFail bool
	refuseExec     bool  // a file with an executable bit is refused (file destinations)
	sizeLimit      int64 // mailbox_size_limit; 0 for none
}

// deliveryError carries the DSN status of a failed delivery step.
type deliveryError struct {
	dsn  string // 4.x.x defers, 5.x.x bounces
	text string
}

func (e *deliveryError) Error() string { return e.text }

func tempErr(dsn, format string, args ...any) *deliveryError {
	return &deliveryError{dsn: dsn, text: fmt.Sprintf(format, args...)}
}

// errnoDSN maps a file-system error to a status as Postfix's mailbox
// code does: a busy lock and a stale NFS handle are 4.2.0, a full disk
// 4.3.0, an exceeded quota 4.2.2 (all temporary), other errors def.
func errnoDSN(err error, def string) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		switch en {
		case syscall.EAGAIN, syscall.ESTALE:
			return "4.2.0"
		case syscall.ENOSPC:
			return "4.3.0"
		case syscall.EDQUOT:
			return "4.2.2"
		case syscall.EFBIG:
			return "5.2.2"
		}
	}
	return def
}

// appendMbox appends one message to an mbox file under its locks. The
// write is all or nothing: on any failure after the file is opened it is
// truncated back to its size before the message, so no partial message
// stays behind for a mail reader to trip over.
func (a *Agent) appendMbox(t mboxTarget, write func(w io.Writer) error) error {
	var unlockDot func()
	if a.cfg.Lock.Dotlock {
		err := a.asCred(t.opener, func() error {
			var err error
			unlockDot, err = a.dotlock(t.path)
			return err
		})
		if err != nil {
			var pe *privError
			if errors.As(err, &pe) {
				return err
			}
			if !(t.dotlockMayFail && (errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS))) {
				return err
			}
		}
	}
	if unlockDot != nil {
		defer func() { _ = a.asCred(t.opener, func() error { unlockDot(); return nil }) }()
	}
	var f *os.File
	err := a.asCred(t.opener, func() error {
		var err error
		f, err = openMbox(t)
		return err
	})
	if err != nil {
		return err
	}
	defer f.Close()
	if err := a.kernelLock(f); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return tempErr("4.2.0", "cannot update mailbox: %v", err)
	}
	orig := fi.Size()
	cw := &countWriter{w: f}
	bw := bufio.NewWriterSize(cw, 64<<10)
	werr := write(bw)
	if werr == nil {
		werr = bw.Flush()
	}
	if werr == nil && t.sizeLimit > 0 && orig+cw.n > t.sizeLimit {
		werr = &deliveryError{dsn: "5.2.2", text: "error writing message: File too large"}
	}
	if werr == nil {
		werr = f.Sync()
	}
	if werr != nil {
		if terr := f.Truncate(orig); terr != nil {
			werr = fmt.Errorf("%w (and truncating back failed: %v)", werr, terr)
		}
		var de *deliveryError
		if errors.As(werr, &de) {
			return werr
		}
		return tempErr(errnoDSN(werr, "4.3.0"), "error writing message: %v", unwrapPath(werr))
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// openMbox opens the file for appending, or creates it with mode 0600
// owned by t.owner. It refuses symbolic links, files with more than one
// link, things that are not regular files and (for mailboxes) files that
// belong to someone else: a user must not be able to point another
// user's delivery at a file of their choice.
func openMbox(t mboxTarget) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_APPEND | syscall.O_NOFOLLOW | syscall.O_CLOEXEC | syscall.O_NONBLOCK
	for tries := 0; tries < 3; tries++ {
		f, err := os.OpenFile(t.path, flags, 0)
		created := false
		if errors.Is(err, os.ErrNotExist) {
			f, err = os.OpenFile(t.path, flags|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, os.ErrExist) {
				continue // created by someone else meanwhile: open it
			}
			created = true
		}
		if err != nil {
			if errors.Is(err, syscall.ELOOP) {
				return nil, tempErr("5.2.0", "cannot open file: %s is a symbolic link", t.path)
			}
			return nil, tempErr(errnoDSN(err, "4.2.0"), "cannot open file: %v", unwrapPath(err))
		}
		if created {
			var st syscall.Stat_t
			if err := syscall.Fstat(int(f.Fd()), &st); err == nil && (st.Uid != t.owner.UID || st.Gid != t.owner.GID) {
				if err := f.Chown(int(t.owner.UID), int(t.owner.GID)); err != nil {
					f.Close()
					_ = os.Remove(t.path)
					return nil, tempErr("4.2.0", "cannot set owner of %s: %v", t.path, unwrapPath(err))
				}
			}
			return f, nil
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, tempErr("4.2.0", "cannot stat %s: %v", t.path, err)
		}
		var why string
		switch {
		case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
			why = "file is not a regular file"
		case st.Nlink != 1:
			why = fmt.Sprintf("file has %d hard links", st.Nlink)
		case t.checkOwner && st.Uid != t.owner.UID:
			why = fmt.Sprintf("file has user id %d, not %d", st.Uid, t.owner.UID)
		case t.refuseExec && st.Mode&0o111 != 0:
			why = "executable bit is set"
		}
		if why != "" {
			f.Close()
			return nil, tempErr("5.2.0", "cannot open file %s: %s", t.path, why)
		}
		// O_NONBLOCK was only for the open (a FIFO must not hang us).
		if err := syscall.SetNonblock(int(f.Fd()), false); err != nil {
			f.Close()
			return nil, tempErr("4.2.0", "cannot open file %s: %v", t.path, err)
		}
		return f, nil
	}
	return nil, tempErr("4.2.0", "cannot open file %s: it keeps changing", t.path)
}

// dotlock creates path.lock exclusively (O_CREAT|O_EXCL is atomic on a
// local file system), retrying deliver_lock_attempts times
// deliver_lock_delay apart; a lock file older than stale_lock_time is
// taken to be left over from a crash and removed. It returns the unlock.
func (a *Agent) dotlock(path string) (func(), error) {
	lock := path + ".lock"
	l := a.cfg.Lock
	var err error
	for i := 0; i < max(l.Attempts, 1); i++ {
		if i > 0 {
			a.sleep(l.Delay)
		}
		var f *os.File
		f, err = os.OpenFile(lock, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err == nil {
			f.Close()
			return func() { _ = os.Remove(lock) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, tempErr(errnoDSN(err, "4.2.0"), "unable to create lock file %s: %v", lock, unwrapPath(err))
		}
		if fi, serr := os.Lstat(lock); serr == nil && l.Stale > 0 && a.now().Sub(fi.ModTime()) > l.Stale {
			if rerr := os.Remove(lock); rerr == nil {
				a.warn("removed stale lock file %s", lock)
				i-- // not an attempt: the lock was dead
			}
		}
	}
	return nil, tempErr("4.2.0", "unable to create lock file %s: %v", lock, unwrapPath(err))
}

// kernelLock takes the fcntl (and/or flock) write lock on f, retrying as
// dotlock does.
func (a *Agent) kernelLock(f *os.File) error {
	l := a.cfg.Lock
	if !l.Fcntl && !l.Flock {
		return nil
	}
	var err error
	for i := 0; i < max(l.Attempts, 1); i++ {
		if i > 0 {
			a.sleep(l.Delay)
		}
		err = nil
		if l.Fcntl {
			lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
			err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk)
		}
		if err == nil && l.Flock {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EWOULDBLOCK) {
			break
		}
	}
	return tempErr("4.2.0", "unable to lock for exclusive access: %v", syscall.EAGAIN)
}

// unwrapPath drops the "open /path: " of an *os.PathError when the
// message names the path already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// copyMessage writes the message text from src to w, each line ending in
// "\n" (a last line without one gets one). With quote, lines that begin
// with "From " get a '>' in front (mbox's From_ quoting); with blank, an
// empty line follows the message, which separates it from the next one.
func copyMessage(w io.Writer, src io.Reader, quote, blank bool) error {
	br := bufio.NewReaderSize(src, 64<<10)
	atStart := true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && quote && bytes.HasPrefix(chunk, []byte("From ")) {
				if _, werr := w.Write([]byte{'>'}); werr != nil {
					return werr
				}
			}
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
			atStart = chunk[len(chunk)-1] == '\n'
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
	}
	if !atStart {
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return err
		}
	}
	if blank {
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return err
		}
	}
	return nil
}
