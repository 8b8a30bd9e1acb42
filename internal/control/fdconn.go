package control

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// fdConn is the client's end of the control socket: it keeps the files
// the daemon passes with its answer (SCM_RIGHTS, see frameFile) in the
// order they came, for the frames that name them.
type fdConn struct {
	*net.UnixConn
	mu    sync.Mutex
	files []*os.File
	oob   []byte
}

// maxPassed is the most files one read takes; the daemon passes one
// with each frame that names one.
const maxPassed = 64

// wrapConn makes a unix connection an fdConn; others are left as they
// are (and get no files).
func wrapConn(c net.Conn) net.Conn {
	if uc, ok := c.(*net.UnixConn); ok {
		return &fdConn{UnixConn: uc, oob: make([]byte, syscall.CmsgSpace(maxPassed*4))}
	}
	return c
}

func (c *fdConn) Read(p []byte) (int, error) {
	n, oobn, flags, _, err := c.UnixConn.ReadMsgUnix(p, c.oob)
	if oobn > 0 {
		c.keep(c.oob[:oobn])
	}
	if n < 0 {
		n = 0
	}
	switch {
	case err != nil:
	case flags&syscall.MSG_CTRUNC != 0:
		err = errors.New("control: more files passed than one read takes")
	case n == 0 && len(p) > 0:
		// recvmsg(2) gives 0 bytes at the end of a stream; Read
		// says io.EOF.
		err = io.EOF
	}
	return n, err
}

// keep takes the files out of control messages.
func (c *fdConn) keep(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range msgs {
		fds, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			c.files = append(c.files, os.NewFile(uintptr(fd), "listing segment"))
		}
	}
}

// takeFile returns the next file passed, or nil.
func (c *fdConn) takeFile() *os.File {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.files) == 0 {
		return nil
	}
	f := c.files[0]
	c.files = c.files[1:]
	filesTaken.Add(1)
	return f
}

// filesTaken counts the files taken, for tests.
var filesTaken atomic.Int64

func (c *fdConn) Close() error {
	c.mu.Lock()
	for _, f := range c.files {
		f.Close()
	}
	c.files = nil
	c.mu.Unlock()
	return c.UnixConn.Close()
}

// copyFile writes bytes [off, off+n) of f to out: with sendfile(2) when
// out is a file that takes it (a pipe, /dev/null, a regular file), so the
// bytes are not copied through this process; else by reading them.
func copyFile(out io.Writer, f *os.File, off, n int64) error {
	if of, ok := out.(*os.File); ok {
		sent, err := sendfile(of, f, off, n)
		if err == nil {
			return nil
		}
		if sent > 0 || !fallBack(err) {
			return err
		}
	}
	_, err := io.Copy(out, io.NewSectionReader(f, off, n))
	return err
}

// sendfile sends all n bytes, or says why not and how many went.
func sendfile(out, in *os.File, off, n int64) (int64, error) {
	orc, err := out.SyscallConn()
	if err != nil {
		return 0, err
	}
	var sent int64
	var serr error
	err = orc.Write(func(ofd uintptr) bool {
		for sent < n {
			o := off + sent
			k, err := unix.Sendfile(int(ofd), int(in.Fd()), &o, int(min(n-sent, 1<<30)))
			if k > 0 {
				sent += int64(k)
			}
			switch {
			case errors.Is(err, syscall.EAGAIN):
				return false // wait until out takes more
			case errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
				serr = err
				return true
			case k == 0:
				serr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return sent, err
}

// fallBack reports whether sendfile's error means out does not take it
// (a terminal, a socket of some kinds), so the bytes are to be copied.
func fallBack(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EBADF)
}
