package privsep

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Local delivery into users' mailboxes needs each recipient's identity,
// which the unprivileged mail system (mail_owner) cannot take. As
// Postfix's local(8) runs as root and takes the recipient's privileges
// per delivery, sluice's local delivery agent runs as root in a process
// of its own, `sluice local-deliver`, started for each delivery by the
// root master on the child's request, over a channel made at start: a
// SOCK_SEQPACKET socket pair whose other end the child inherits
// ("deliver" in EnvFDs).
//
// A request is one packet: JSON (DeliveryRequest: an id, the queue ID,
// the sender, the recipients with their original addresses, a time
// limit) and, as SCM_RIGHTS, two descriptors: the queue file, opened
// read-only by the child (the master never opens one), and the write end
// of a pipe for the results. The master takes a request only from the
// child's process (the kernel's SCM_CREDENTIALS on every packet), checks
// its fields and its descriptors (a regular file open read-only, a pipe
// open for writing), and runs `sluice local-deliver -c CONFIG_DIR` from
// its own binary, as root: the job (LocalJob) on standard input, the
// results pipe as standard output, the queue file as descriptor 3, an
// environment of its own (PATH, and TZ when the master has it; nothing
// from the child), in a new session, under the time limit (at most
// MaxDeliveryTime). The configuration directory is the master's, never
// the child's word. The master reads neither the message nor the
// results: local-deliver writes its outcome (LocalOutcome: one result
// per recipient, with its final deliveries, and the warnings for the
// mail log) straight to the child, which logs it. When local-deliver
// ends, the master answers one packet: JSON DeliveryResult {id, status}
// (its exit status, 128+N for signal N, or -1 and an error when the
// request was refused or could not run; the last line local-deliver
// wrote to standard error comes with a failure, and every such line is
// logged by the master). Requests run concurrently; answers carry their
// request's id.
//
// What local-deliver does is fixed by its own code and the daemon's
// main.cf: a compromised mail_owner can make it deliver a queue file of
// its choosing to recipients of its choosing (as it could by writing a
// queue file), never run another program as root or read another
// configuration.

// DeliveryRequest is one local delivery the child asks the master for.
type DeliveryRequest struct {
	ID         uint64              `json:"id"`
	QueueID    string              `json:"queue_id"`
	Sender     string              `json:"sender"`
	Recipients []DeliveryRecipient `json:"recipients"`
	Timeout    time.Duration       `json:"timeout,omitempty"` // 0: MaxDeliveryTime
}

// DeliveryRecipient is one envelope recipient of a request.
type DeliveryRecipient struct {
	Address string `json:"address"`        // as queued
	Orig    string `json:"orig,omitempty"` // the original recipient (O record)
}

// LocalJob is what `sluice local-deliver` reads on standard input: the
// request as the master checked it, the time it has, and which file its
// descriptor 3 must be (the Go runtime itself may hold a descriptor 3
// when none was passed).
type LocalJob struct {
	QueueID    string              `json:"queue_id"`
	Sender     string              `json:"sender"`
	Recipients []DeliveryRecipient `json:"recipients"`
	TimeLimit  time.Duration       `json:"time_limit"`
	Message    FileID              `json:"message"`
}

// FileID names a file by device and inode.
type FileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

// FileIDOf returns the FileID of an open file.
func FileIDOf(fd int) (FileID, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// LocalOutcome is what local-deliver writes to the results pipe.
type LocalOutcome struct {
	Results  []LocalResult `json:"results"` // one per recipient, in order
	Warnings []string      `json:"warnings,omitempty"`
}

// LocalResult is what became of one recipient (local.Result).
type LocalResult struct {
	Status string       `json:"status"` // sent, deferred or bounced
	DSN    string       `json:"dsn"`
	Reason string       `json:"reason"`
	Finals []LocalFinal `json:"finals,omitempty"`
}

// LocalFinal is one final delivery of a recipient (local.Final).
type LocalFinal struct {
	To     string `json:"to"`
	Status string `json:"status"`
	DSN    string `json:"dsn"`
	Text   string `json:"text"`
}

// DeliveryResult is the master's answer.
type DeliveryResult struct {
	ID     uint64 `json:"id"`
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// MaxDeliveryTime bounds one local-deliver run (Postfix's
// command_time_limit default).
const MaxDeliveryTime = 1000 * time.Second

// The limits of a request. A packet is at most MaxRequestSize bytes (the
// child splits a delivery with many recipients into several requests:
// RequestBatches); addresses are at most maxAddress bytes of UTF-8
// without control characters that could break a log line.
const (
	MaxRequestSize = 60 << 10
	maxRecipients  = 1000
	maxAddress     = 2048
	maxOutcome     = 16 << 20
)

// Check reports what is wrong with a request, if anything.
func (r *DeliveryRequest) Check() error {
	if r.QueueID == "" || len(r.QueueID) > 32 || strings.Trim(r.QueueID, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
		return fmt.Errorf("bad queue ID %q", r.QueueID)
	}
	if len(r.Recipients) == 0 || len(r.Recipients) > maxRecipients {
		return fmt.Errorf("%d recipients (1 to %d)", len(r.Recipients), maxRecipients)
	}
	if err := checkAddress("sender", r.Sender, true); err != nil {
		return err
	}
	for _, rc := range r.Recipients {
		if err := checkAddress("recipient", rc.Address, false); err != nil {
			return err
		}
		if err := checkAddress("original recipient", rc.Orig, true); err != nil {
			return err
		}
	}
	if r.Timeout < 0 {
		return errors.New("negative time limit")
	}
	return nil
}

func checkAddress(what, a string, emptyOK bool) error {
	switch {
	case a == "" && !emptyOK:
		return fmt.Errorf("empty %s", what)
	case len(a) > maxAddress:
		return fmt.Errorf("%s longer than %d bytes", what, maxAddress)
	case !utf8.ValidString(a):
		// JSON would replace the bytes and deliver to another address.
		return fmt.Errorf("%s %q is not UTF-8", what, a)
	case strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return fmt.Errorf("%s %q has control characters", what, a)
	}
	return nil
}

// RequestBatches splits recipients into groups that each fit in one
// request packet, in order.
func RequestBatches(rcpts []DeliveryRecipient) [][]DeliveryRecipient {
	// The envelope of a request (id, queue ID, sender, field names) is
	// well below this reserve; each recipient costs its JSON.
	const budget = MaxRequestSize - 2*maxAddress - 512
	var out [][]DeliveryRecipient
	start, size := 0, 0
	for i, rc := range rcpts {
		b, _ := json.Marshal(rc)
		n := len(b) + 1
		if i > start && (size+n > budget || i-start >= maxRecipients) {
			out = append(out, rcpts[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(rcpts) {
		out = append(out, rcpts[start:])
	}
	return out
}

// DeliveryServer is the master's side of the channel.
type DeliveryServer struct {
	Conn *net.UnixConn
	// Exe and Argv0 are the binary run as local-deliver
	// ("/proc/self/exe", "sluice"); Args follow "local-deliver" (the
	// master's "-c", config_dir). Env is its environment besides PATH.
	Exe, Argv0 string
	Args       []string
	Env        []string
	// PeerPID, when not 0, is the only process whose requests are taken
	// (the child).
	PeerPID int
	Logf    func(format string, args ...any)
}

// Serve answers requests until the child closes its end.
func (s *DeliveryServer) Serve() error {
	if err := passCred(s.Conn); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var wmu sync.Mutex
	defer wg.Wait()
	answer := func(res DeliveryResult) {
		b, _ := json.Marshal(res)
		wmu.Lock()
		s.Conn.Write(b)
		wmu.Unlock()
	}
	buf := make([]byte, MaxRequestSize+1)
	oob := make([]byte, syscall.CmsgSpace(2*4)+syscall.CmsgSpace(syscall.SizeofUcred))
	for {
		n, oobn, flags, _, err := s.Conn.ReadMsgUnix(buf, oob)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err == nil && n == 0 && oobn == 0 {
			return nil // the child closed its end, or the master is done
		}
		if err != nil {
			return err
		}
		fds, cred := controlData(oob[:oobn])
		var req DeliveryRequest
		jerr := json.Unmarshal(buf[:n], &req)
		refuse := func(why string) {
			closeAll(fds)
			s.logf("warning: local delivery request refused: %s", why)
			answer(DeliveryResult{ID: req.ID, Status: -1, Error: "request refused: " + why})
		}
		switch {
		case s.PeerPID != 0 && (cred == nil || int(cred.Pid) != s.PeerPID):
			pid := -1
			if cred != nil {
				pid = int(cred.Pid)
			}
			refuse(fmt.Sprintf("from pid %d, not from the mail system (pid %d)", pid, s.PeerPID))
		case flags&(syscall.MSG_TRUNC|syscall.MSG_CTRUNC) != 0:
			refuse("truncated")
		case jerr != nil:
			refuse(fmt.Sprintf("malformed: %v", jerr))
		case len(fds) != 2:
			refuse(fmt.Sprintf("%d descriptors, want 2", len(fds)))
		default:
			if err := req.Check(); err != nil {
				refuse(err.Error())
				continue
			}
			msg, out := os.NewFile(uintptr(fds[0]), "message"), os.NewFile(uintptr(fds[1]), "results")
			if err := checkFDs(msg, out); err != nil {
				msg.Close()
				out.Close()
				fds = nil
				refuse(err.Error())
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				answer(s.run(req, msg, out))
			}()
		}
	}
}

// checkFDs: local-deliver, which runs as root, gets a regular file it
// can only read and a pipe it can only write.
func checkFDs(msg, out *os.File) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(msg.Fd()), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return errors.New("the message is not a regular file")
	}
	if fl, err := fcntlFlags(msg); err != nil || fl&syscall.O_ACCMODE != syscall.O_RDONLY {
		return errors.New("the message is not open read-only")
	}
	if err := syscall.Fstat(int(out.Fd()), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return errors.New("the results descriptor is not a pipe")
	}
	if fl, err := fcntlFlags(out); err != nil || fl&syscall.O_ACCMODE != syscall.O_WRONLY {
		return errors.New("the results pipe is not open for writing only")
	}
	return nil
}

func fcntlFlags(f *os.File) (int, error) {
	fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_GETFL, 0)
	if e != 0 {
		return 0, e
	}
	return int(fl), nil
}

// passCred makes the kernel attach the sender's credentials to every
// packet the master reads.
func passCred(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("delivery channel: SO_PASSCRED: %w", serr)
	}
	return nil
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
	limit := req.Timeout
	if limit <= 0 || limit > MaxDeliveryTime {
		limit = MaxDeliveryTime
	}
	id, err := FileIDOf(int(msg.Fd()))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	job, err := json.Marshal(LocalJob{QueueID: req.QueueID, Sender: req.Sender, Recipients: req.Recipients, TimeLimit: limit, Message: id})
	if err != nil {
		res.Error = err.Error()
		return res
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var stderr tailBuffer
	cmd := exec.CommandContext(ctx, s.Exe)
	cmd.Args = append([]string{s.Argv0, "local-deliver"}, s.Args...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, s.Env...)
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(job), out, &stderr
	cmd.ExtraFiles = []*os.File{msg}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// A process local-deliver left behind holding its standard error
	// must not hold the answer up.
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	lines := stderr.lines()
	for _, l := range lines {
		s.logf("warning: local-deliver %s: %s", req.QueueID, l)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.Status = 0
		return res
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Status = 128 + int(ws.Signal())
		} else {
			res.Status = ee.ExitCode()
		}
		switch {
		case ctx.Err() != nil:
			res.Error = fmt.Sprintf("time limit (%v) exceeded", limit)
		case len(lines) > 0:
			res.Error = lines[len(lines)-1]
		}
		return res
	}
	res.Error = err.Error()
	return res
}

// tailBuffer keeps the first 8 KiB written to it: a helper's complaint,
// not an unbounded stream.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := 8<<10 - len(t.b); room > 0 {
		t.b = append(t.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, l := range strings.Split(string(t.b), "\n") {
		if l = strings.TrimSpace(l); l != "" && len(out) < 20 {
			out = append(out, strings.ToValidUTF8(l, "?"))
		}
	}
	return out
}

// controlData returns the descriptors and the sender's credentials a
// packet carried.
func controlData(oob []byte) ([]int, *syscall.Ucred) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, nil
	}
	var fds []int
	var cred *syscall.Ucred
	for i := range msgs {
		if got, err := syscall.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		} else if c, err := syscall.ParseUnixCredentials(&msgs[i]); err == nil {
			cred = c
		}
	}
	return fds, cred
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

// Deliver asks the master to run local-deliver for req (its ID is filled
// in here) on message, the queue file open for reading, and returns what
// local-deliver reported. An error means no outcome: the request was
// refused, the helper failed, or ctx ended first.
func (c *DeliveryClient) Deliver(ctx context.Context, req DeliveryRequest, message *os.File) (*LocalOutcome, error) {
	if err := req.Check(); err != nil {
		return nil, fmt.Errorf("local delivery request: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("local delivery: %w", err)
	}
	defer r.Close()
	ch := make(chan DeliveryResult, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		w.Close()
		return nil, c.err
	}
	c.next++
	req.ID = c.next
	c.waiting[req.ID] = ch
	c.mu.Unlock()
	b, err := json.Marshal(req)
	if err == nil && len(b) > MaxRequestSize {
		err = fmt.Errorf("request of %d bytes (at most %d)", len(b), MaxRequestSize)
	}
	if err == nil {
		_, _, err = c.conn.WriteMsgUnix(b, syscall.UnixRights(int(message.Fd()), int(w.Fd())), nil)
	}
	// The master holds its own copy of the write end now: ours must go,
	// so that the pipe ends when local-deliver and the master are done.
	w.Close()
	if err != nil {
		c.mu.Lock()
		delete(c.waiting, req.ID)
		c.mu.Unlock()
		return nil, fmt.Errorf("delivery channel: %w", err)
	}
	type read struct {
		b   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(r, maxOutcome))
		got <- read{b, err}
	}()
	var res DeliveryResult
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.Status != 0 {
		if res.Status < 0 {
			return nil, fmt.Errorf("local delivery: %s", res.Error)
		}
		if res.Error != "" {
			return nil, fmt.Errorf("local-deliver exit status %d: %s", res.Status, res.Error)
		}
		return nil, fmt.Errorf("local-deliver exit status %d", res.Status)
	}
	var rd read
	select {
	case rd = <-got:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if rd.err != nil {
		return nil, fmt.Errorf("local delivery results: %w", rd.err)
	}
	var out LocalOutcome
	if err := json.Unmarshal(rd.b, &out); err != nil {
		return nil, fmt.Errorf("local delivery results: %w", err)
	}
	if len(out.Results) != len(req.Recipients) {
		return nil, fmt.Errorf("local delivery results: %d for %d recipients", len(out.Results), len(req.Recipients))
	}
	return &out, nil
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
	uc := c.(*net.UnixConn)
	if err := passCred(uc); err != nil {
		uc.Close()
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return uc, os.NewFile(uintptr(fds[1]), "delivery channel"), nil
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
