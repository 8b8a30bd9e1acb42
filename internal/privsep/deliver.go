package privsep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Local delivery into a user's mailbox needs that user's identity,
// which the unprivileged mail system (mail_owner) cannot take. The root
// master keeps that one power and offers it over a channel made at
// start: a SOCK_SEQPACKET socket pair whose other end the child inherits
// ("deliver" in EnvFDs).
//
// A request is one packet: JSON {id, user, args, timeout} and, as
// SCM_RIGHTS, two descriptors: the message, already open for reading
// (the child opened its queue file; the master never opens one), and the
// write end of a pipe for the helper's output. The master looks the user
// up, refuses root (root's mail goes through an alias) and unknown
// users, and runs `sluice local-deliver ARGS...` from its own binary
// with the user's uid, gid and groups, the message as standard input,
// the pipe as standard output and error, an environment of PATH, HOME,
// USER, LOGNAME and SHELL only, and the time limit. When the helper
// ends, the master answers one packet: JSON {id, status} (the exit
// status, 128+N for signal N, or -1 and an error when it could not run
// it). Requests run concurrently; answers carry their request's id.
//
// What the helper may be asked is fixed by its own code: a compromised
// mail_owner can make it deliver as any user but root, never run as root
// or run another program.

// DeliveryRequest is one local delivery the child asks the master for.
type DeliveryRequest struct {
	ID      uint64        `json:"id"`
	User    string        `json:"user"`
	Args    []string      `json:"args"`    // after "local-deliver"
	Timeout time.Duration `json:"timeout"` // 0: MaxDeliveryTime
}

// DeliveryResult is the master's answer.
type DeliveryResult struct {
	ID     uint64 `json:"id"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// MaxDeliveryTime bounds one helper run (Postfix's command_time_limit
// default).
const MaxDeliveryTime = 1000 * time.Second

// DeliveryServer is the master's side of the channel.
type DeliveryServer struct {
	Conn *net.UnixConn
	// Exe and Argv0 are the binary run as the helper ("/proc/self/exe",
	// "sluice") and Env extra environment (tests).
	Exe, Argv0 string
	Env        []string
	Logf       func(format string, args ...any)
}

// Serve answers requests until the child closes its end.
func (s *DeliveryServer) Serve() error {
	var wg sync.WaitGroup
	var wmu sync.Mutex
	defer wg.Wait()
	buf, oob := make([]byte, 64<<10), make([]byte, syscall.CmsgSpace(2*4))
	for {
		n, oobn, _, _, err := s.Conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // the child closed its end
		}
		fds := rights(oob[:oobn])
		var req DeliveryRequest
		if err := json.Unmarshal(buf[:n], &req); err != nil || len(fds) != 2 {
			closeAll(fds)
			s.logf("warning: malformed delivery request (%d descriptors): %v", len(fds), err)
			continue
		}
		msg, out := os.NewFile(uintptr(fds[0]), "message"), os.NewFile(uintptr(fds[1]), "result")
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := s.run(req, msg, out)
			b, _ := json.Marshal(res)
			wmu.Lock()
			s.Conn.Write(b)
			wmu.Unlock()
		}()
	}
}

func (s *DeliveryServer) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *DeliveryServer) run(req DeliveryRequest, msg, out *os.File) DeliveryResult {
	defer msg.Close()
	defer out.Close()
	res := DeliveryResult{ID: req.ID, Status: -1}
	u, err := user.Lookup(req.User)
	if err != nil {
		res.Error = fmt.Sprintf("unknown user %q", req.User)
		return res
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		res.Error = fmt.Sprintf("user %s: bad uid or gid", req.User)
		return res
	}
	if uid == 0 {
		res.Error = "refusing to deliver as root"
		return res
	}
	groups := []uint32{uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil && n != gid && n != 0 {
				groups = append(groups, uint32(n))
			}
		}
	}
	limit := req.Timeout
	if limit <= 0 || limit > MaxDeliveryTime {
		limit = MaxDeliveryTime
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Exe)
	cmd.Args = append([]string{s.Argv0, "local-deliver"}, req.Args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + u.HomeDir, "USER=" + u.Username, "LOGNAME=" + u.Username, "SHELL=/bin/sh"}, s.Env...)
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = msg, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, Setsid: true}
	err = cmd.Run()
	if err == nil {
		res.Status = 0
		return res
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Status = 128 + int(ws.Signal())
		} else {
			res.Status = ee.ExitCode()
		}
		if ctx.Err() != nil {
			res.Error = "time limit exceeded"
		}
		return res
	}
	res.Error = err.Error()
	return res
}

func rights(oob []byte) []int {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// DeliveryClient is the child's side: Deliver may be called from many
// goroutines at once.
type DeliveryClient struct {
	conn    *net.UnixConn
	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan DeliveryResult
	err     error
}

// NewDeliveryClient starts reading answers on conn.
func NewDeliveryClient(conn *net.UnixConn) *DeliveryClient {
	c := &DeliveryClient{conn: conn, waiting: map[uint64]chan DeliveryResult{}}
	go c.read()
	return c
}

func (c *DeliveryClient) read() {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.conn.Read(buf)
		if err == nil && n == 0 {
			err = errors.New("the master closed the delivery channel")
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			for id, ch := range c.waiting {
				ch <- DeliveryResult{ID: id, Status: -1, Error: err.Error()}
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		var res DeliveryResult
		if json.Unmarshal(buf[:n], &res) != nil {
			continue
		}
		c.mu.Lock()
		if ch, ok := c.waiting[res.ID]; ok {
			ch <- res
			delete(c.waiting, res.ID)
		}
		c.mu.Unlock()
	}
}

// Deliver asks the master to run `sluice local-deliver args...` as user
// with message (open for reading) as its input; the helper's output is
// written to out. It returns the helper's exit status.
func (c *DeliveryClient) Deliver(ctx context.Context, usr string, args []string, timeout time.Duration, message *os.File, out *os.File) (DeliveryResult, error) {
	ch := make(chan DeliveryResult, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return DeliveryResult{}, c.err
	}
	c.next++
	id := c.next
	c.waiting[id] = ch
	c.mu.Unlock()
	b, err := json.Marshal(DeliveryRequest{ID: id, User: usr, Args: args, Timeout: timeout})
	if err == nil {
		_, _, err = c.conn.WriteMsgUnix(b, syscall.UnixRights(int(message.Fd()), int(out.Fd())), nil)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		return DeliveryResult{}, fmt.Errorf("delivery channel: %w", err)
	}
	select {
	case res := <-ch:
		if res.Status < 0 {
			return res, fmt.Errorf("local delivery as %s: %s", usr, res.Error)
		}
		return res, nil
	case <-ctx.Done():
		return DeliveryResult{}, ctx.Err()
	}
}

// DeliveryPair makes the channel's two ends: the master's connection
// and the file the child inherits.
func DeliveryPair() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("delivery channel: %w", err)
	}
	mf := os.NewFile(uintptr(fds[0]), "delivery channel")
	defer mf.Close()
	c, err := net.FileConn(mf)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "delivery channel"), nil
}

// DeliveryConn turns an inherited channel file into the child's
// connection.
func DeliveryConn(f *os.File) (*net.UnixConn, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, errors.New("delivery channel: not a unix socket")
	}
	return uc, nil
}
