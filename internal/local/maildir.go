package local

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// deliverMaildir writes one message into the Maildir dir (which ends in
// "/") as c: the message is written to tmp/ under a name unique to this
// process, synced, and then linked into new/ under a name made of the
// time, the file's device and inode and the microseconds, and the host
// name (unique on this host for as long as the file exists), and its
// tmp/ name removed. Readers only ever see whole messages in new/. The
// directories are created (mode 0700) when they are missing.
func (a *Agent) deliverMaildir(dir string, c Cred, write func(w io.Writer) error) error {
	return a.asCred(c, func() error {
		for _, sub := range []string{"", "tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				return tempErr(errnoDSN(err, "4.2.0"), "create maildir file %s: %v", filepath.Join(dir, sub), unwrapPath(err))
			}
		}
		now := a.now()
		host := a.cfg.MyHostname
		seq := a.seq.Add(1)
		tmp := filepath.Join(dir, "tmp", fmt.Sprintf("%d.P%dQ%d.%s", now.Unix(), os.Getpid(), seq, host))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return tempErr(errnoDSN(err, "4.2.0"), "create maildir file %s: %v", tmp, unwrapPath(err))
		}
		fail := func(err error) error {
			f.Close()
			_ = os.Remove(tmp)
			var de *deliveryError
			if errors.As(err, &de) {
				return err
			}
			return tempErr(errnoDSN(err, "4.3.0"), "create maildir file %s: %v", tmp, unwrapPath(err))
		}
		bw := bufio.NewWriterSize(f, 64<<10)
		if err := write(bw); err != nil {
			return fail(err)
		}
		if err := bw.Flush(); err != nil {
			return fail(err)
		}
		if err := f.Sync(); err != nil {
			return fail(err)
		}
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
			return fail(err)
		}
		if err := f.Close(); err != nil {
			_ = os.Remove(tmp)
			return tempErr("4.3.0", "create maildir file %s: %v", tmp, unwrapPath(err))
		}
		name := strconv.FormatInt(now.Unix(), 10) + ".V" + strconv.FormatUint(st.Dev, 16) + "I" + strconv.FormatUint(st.Ino, 16) +
			"M" + strconv.Itoa(now.Nanosecond()/1000) + "." + host
		dst := filepath.Join(dir, "new", name)
		// link(2), not rename(2): an existing name is an error instead
		// of a message silently replaced.
		if err := os.Link(tmp, dst); err != nil {
			_ = os.Remove(tmp)
			return tempErr(errnoDSN(err, "4.2.0"), "create maildir file %s: %v", dst, unwrapPath(err))
		}
		_ = os.Remove(tmp)
		if d, err := os.Open(filepath.Join(dir, "new")); err == nil {
			// The new name must survive a crash as the message does.
			err = d.Sync()
			d.Close()
			if err != nil {
				return tempErr("4.3.0", "sync %s: %v", filepath.Join(dir, "new"), err)
			}
		}
		return nil
	})
}
