package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"sluice/internal/cleanup"
	"sluice/internal/config"
	"sluice/internal/pickup"
	"sluice/internal/privsep"
	"sluice/internal/smtpd"
	"sluice/internal/spool"
)

// sendmailHelp is the manual of sluice sendmail.
const sendmailHelp = `usage: sendmail [options] [recipient ...]

Queue a message read from standard input, as Postfix's sendmail does:
the message goes to the maildrop queue and the daemon's pickup moves it
into the mail queue (at once when the daemon runs, else when it starts).

  -t          also take recipients from the To:, Cc: and Bcc: headers
  -f SENDER   envelope sender (-r too); "<>" or "" is the null sender
  -F NAME     the sender's full name, for a From: header that is missing
  -i, -oi     a line with only "." does not end the message
  -N FLAGS    DSN notify: never, or success,delay,failure
  -R RET      DSN return: full or hdrs
  -V ENVID    DSN envelope ID
  -C DIR      configuration directory (also MAIL_CONFIG)
  -bm         queue a message (the default)
  -bs         speak SMTP on standard input and output
  -bp         list the queue (mailq)
  -bi, -I     newaliases: sluice keeps no aliases; does nothing
  -q          flush the queue (postqueue -f)
  -oX, -v, -B, -h, -n, -U, -X, -L, -G, -m, -e, -x, -p  accepted and ignored

Exit status: 0 when queued; 64 usage error; 65 message too big;
75 the queue could not be written (try again).`

// Exit statuses from sysexits.h, which sendmail callers expect.
const (
	exUsage    = 64
	exDataErr  = 65
	exSoftware = 70
	exTempFail = 75
)

type sendmailOpts struct {
	sender    string
	senderSet bool
	fullName  string
	extract   bool
	dotEnds   bool
	notify    int
	ret       int
	envID     string
	configDir string
	mode      string
}

func runSendmail(env *Env) int {
	if len(env.Args) == 1 && env.Args[0] == "--help" {
		fmt.Fprintln(env.Stdout, sendmailHelp)
		return 0
	}
	o := sendmailOpts{dotEnds: true, mode: "m"}
	opts, rcpts, err := Getopt(env.Args, "B:C:F:GIL:N:R:UV:X:b:ce:f:h:imno:p:q:r:tvx")
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return env.Fatalf(exUsage, "usage: %s [options] [recipient ...]", env.Name)
	}
	for _, op := range opts {
		switch op.Name {
		case 'C':
			o.configDir = op.Arg
		case 'F':
			o.fullName = op.Arg
		case 'f', 'r':
			o.sender, o.senderSet = strings.TrimSuffix(strings.TrimPrefix(op.Arg, "<"), ">"), true
		case 't':
			o.extract = true
		case 'i':
			o.dotEnds = false
		case 'o':
			if op.Arg == "i" {
				o.dotEnds = false
			}
		case 'b':
			o.mode = op.Arg
		case 'I':
			o.mode = "i"
		case 'q':
			o.mode = "q"
		case 'N':
			n, err := parseNotify(op.Arg)
			if err != nil {
				return env.Fatalf(exUsage, "%v", err)
			}
			o.notify = n
		case 'R':
			switch strings.ToLower(op.Arg) {
			case "full":
				o.ret = cleanup.RetFull
			case "hdrs":
				o.ret = cleanup.RetHdrs
			default:
				return env.Fatalf(exUsage, "bad -R option value: %s", op.Arg)
			}
		case 'V':
			o.envID = op.Arg
		}
	}
	switch o.mode {
	case "p":
		return runQueueListing(env, o.configDir)
	case "i":
		return 0
	case "q":
		return runFlush(env, o.configDir)
	case "m", "s":
	default:
		return env.Fatalf(exUsage, "unsupported: -b%s", o.mode)
	}
	cfg, err := env.LoadConfig(o.configDir)
	if err != nil {
		return env.Fatalf(exTempFail, "%v", err)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return env.Fatalf(exTempFail, "%v", err)
	}
	if o.mode == "s" {
		return sendmailSMTP(env, cfg, sp)
	}
	if len(rcpts) == 0 && !o.extract {
		return env.Fatalf(exUsage, "Recipient addresses must be specified on the command line or via the -t option")
	}
	limit, err := cfg.Int("message_size_limit")
	if err != nil {
		return env.Fatalf(exSoftware, "%v", err)
	}
	login, gecos := currentUser()
	if !o.senderSet {
		o.sender = login
	}
	if o.fullName == "" && env.Getenv != nil {
		o.fullName = env.Getenv("NAME")
	}
	if o.fullName == "" {
		o.fullName = gecos
	}
	de := &pickup.DropEnvelope{
		Arrival: time.Now(), FullName: o.fullName, Sender: o.sender, EnvID: o.envID, Ret: o.ret,
	}
	for _, r := range rcpts {
		for _, a := range cleanup.ParseAddressList(r) {
			de.Recipients = append(de.Recipients, pickup.DropRecipient{Address: a, Notify: o.notify})
		}
	}
	id, status, err := writeDrop(newDropper(cfg, sp), de, env.Stdin, o.dotEnds, o.extract, limit)
	if err != nil {
		return env.Fatalf(status, "%v", err)
	}
	_ = id // Postfix's sendmail does not print the maildrop ID either
	// A daemon that is not running picks the file up when it starts.
	_ = pickup.WakeDaemon(sp)
	return 0
}

// parseNotify parses sendmail -N: "never" or a list of success, delay,
// failure.
func parseNotify(v string) (int, error) {
	n := 0
	for _, f := range strings.Split(strings.ToLower(v), ",") {
		switch strings.TrimSpace(f) {
		case "never":
			n |= cleanup.NotifyNever
		case "success":
			n |= cleanup.NotifySuccess
		case "delay":
			n |= cleanup.NotifyDelay
		case "failure":
			n |= cleanup.NotifyFailure
		default:
			return 0, fmt.Errorf("bad -N option value: %s", v)
		}
	}
	if n&cleanup.NotifyNever != 0 && n != cleanup.NotifyNever {
		return 0, fmt.Errorf("bad -N option value: %s", v)
	}
	return n, nil
}

// currentUser returns the login name and full name of the user running
// sendmail, as the envelope sender and From: name default to them.
func currentUser() (login, gecos string) {
	uid := strconv.Itoa(os.Getuid())
	u, err := user.LookupId(uid)
	if err != nil {
		return "#" + uid, ""
	}
	name, _, _ := strings.Cut(u.Name, ",")
	return u.Username, name
}

// writeDrop copies the message from r into a new maildrop file, the way
// Postfix's sendmail reads its input: lines end at LF (a CR before it is
// dropped), a first line "From " (an mbox separator) is skipped, a line
// with only "." ends the message unless -i, and with -t the addresses in
// To:, Cc: and Bcc: become recipients. It returns the maildrop ID, or an
// exit status and error.
func writeDrop(newDrop func(time.Time) (dropSink, error), de *pickup.DropEnvelope, r io.Reader, dotEnds, extract bool, limit int64) (string, int, error) {
	d, err := newDrop(de.Arrival)
	if err != nil {
		return "", exTempFail, err
	}
	d.WriteEnvelope(de)
	br := bufio.NewReaderSize(r, 64<<10)
	var extracted []string
	inHeaders, first := true, true
	var header strings.Builder // the current header, for -t
	endHeader := func() {
		if header.Len() == 0 {
			return
		}
		h := header.String()
		header.Reset()
		name, value, _ := strings.Cut(h, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "to", "cc", "bcc":
			extracted = append(extracted, cleanup.ParseAddressList(value)...)
		}
	}
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if limit > 0 && d.Size()+int64(len(line)) > limit {
				d.Abort()
				return "", exDataErr, errors.New("message file too big")
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			d.Abort()
			return "", exTempFail, fmt.Errorf("read message: %w", err)
		}
		if len(line) == 0 && err != nil {
			break
		}
		l := line
		if n := len(l); n > 0 && l[n-1] == '\n' {
			l = l[:n-1]
			if n := len(l); n > 0 && l[n-1] == '\r' {
				l = l[:n-1]
			}
		}
		skip := false
		switch {
		case dotEnds && len(l) == 1 && l[0] == '.':
			err = io.EOF
			skip = true
		case first && strings.HasPrefix(string(l), "From "):
			skip = true
		}
		first = false
		if !skip {
			if extract && inHeaders {
				switch {
				case len(l) > 0 && (l[0] == ' ' || l[0] == '\t'):
					header.Write(l)
				case len(l) == 0 || !strings.Contains(string(l), ":"):
					endHeader()
					inHeaders = false
				default:
					endHeader()
					header.Write(l)
				}
			}
			d.WriteLine(l)
			if limit > 0 && d.Size() > limit {
				d.Abort()
				return "", exDataErr, errors.New("message file too big")
			}
		}
		line = line[:0]
		if err != nil {
			break
		}
	}
	if inHeaders {
		endHeader()
	}
	if len(de.Recipients) == 0 && len(extracted) == 0 {
		d.Abort()
		return "", exUsage, errors.New("No recipient addresses found in message header")
	}
	if err := d.Commit(extracted); err != nil {
		return "", exTempFail, err
	}
	switch d := d.(type) {
	case *pickup.Drop:
		return d.ID, 0, nil
	case *privsep.PipeDrop:
		return d.ID, 0, nil
	}
	return "", 0, nil
}

// dropSink is a maildrop file being written: by sendmail itself
// (pickup.Drop) or by the setgid helper (privsep.PipeDrop).
type dropSink interface {
	WriteEnvelope(*pickup.DropEnvelope)
	WriteLine([]byte)
	Size() int64
	Commit(extracted []string) error
	Abort()
}

// newDropper returns how sendmail makes its maildrop file: itself when
// it may write maildrop/ (root, mail_owner, the owner of a development
// spool), else through the setgid helper, as Postfix's sendmail runs
// postdrop. The helper's file is owned by the caller, so pickup logs
// the submitting uid either way.
func newDropper(cfg *config.Config, sp *spool.Spool) func(time.Time) (dropSink, error) {
	return func(now time.Time) (dropSink, error) {
		d, err := pickup.NewDrop(sp, now)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, fs.ErrPermission) {
			return nil, err
		}
		helper, herr := privsep.HelperPath(cfg)
		if herr != nil {
			return nil, fmt.Errorf("%w; %v", err, herr)
		}
		return privsep.NewPipeDrop(helper, cfg.Dir)
	}
}

// sendmailSMTP is sendmail -bs: an SMTP session on standard input and
// output through the same server code as the daemon's listener. Each
// message goes to maildrop/, so "queued as" names the maildrop file.
// Access control is off, as in Postfix's stand-alone mode: the user
// could as well run sendmail with any recipient.
func sendmailSMTP(env *Env, cfg *config.Config, sp *spool.Spool) int {
	_, gecos := currentUser()
	limit, err := cfg.Int("message_size_limit")
	if err != nil {
		return env.Fatalf(exSoftware, "%v", err)
	}
	all, _ := smtpd.ParseNetworks([]string{"0.0.0.0/0", "::/0"})
	srv, err := smtpd.New(smtpd.Config{
		Hostname:         cfg.Get("myhostname"),
		MyOrigin:         cfg.Get("myorigin"),
		MyNetworks:       all,
		MessageSizeLimit: limit,
		Submit: func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
			de := &pickup.DropEnvelope{Arrival: time.Now(), FullName: gecos, Sender: m.Sender, EnvID: m.EnvID, Ret: m.Ret}
			for _, rc := range m.Recipients {
				de.Recipients = append(de.Recipients, pickup.DropRecipient{Address: rc.Address, Notify: rc.Notify, ORCPT: rc.ORCPT})
			}
			id, status, err := writeDrop(newDropper(cfg, sp), de, r, false, false, limit)
			switch {
			case err == nil:
				_ = pickup.WakeDaemon(sp)
				return id, nil
			case status == exDataErr:
				return "", cleanup.ErrTooBig
			}
			return "", fmt.Errorf("%w: %v", cleanup.ErrQueueWrite, err)
		},
	})
	if err != nil {
		return env.Fatalf(exSoftware, "%v", err)
	}
	conn := &stdioConn{r: env.Stdin, w: env.Stdout}
	if err := srv.ServeConn(context.Background(), conn); err != nil {
		return env.Fatalf(exTempFail, "%v", err)
	}
	return 0
}

// stdioConn is standard input and output as a connection from the local
// host.
type stdioConn struct {
	r io.Reader
	w io.Writer
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) Close() error                { return nil }
func (c *stdioConn) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0))
}
func (c *stdioConn) RemoteAddr() net.Addr             { return c.LocalAddr() }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

// runQueueListing is sendmail -bp: mailq.
func runQueueListing(env *Env, configDir string) int {
	cmd := lookup("mailq")
	if cmd == nil {
		return env.Fatalf(exSoftware, "mailq is not available")
	}
	args := []string{}
	if configDir != "" {
		args = append(args, "-C", configDir)
	}
	return cmd.Run(&Env{Name: "mailq", Args: args, Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr, Getenv: env.Getenv})
}

// runFlush is sendmail -q: postqueue -f.
func runFlush(env *Env, configDir string) int {
	cmd := lookup("postqueue")
	if cmd == nil {
		return env.Fatalf(exSoftware, "postqueue is not available")
	}
	args := []string{"-f"}
	if configDir != "" {
		args = append(args, "-c", configDir)
	}
	return cmd.Run(&Env{Name: "postqueue", Args: args, Stdin: env.Stdin, Stdout: env.Stdout, Stderr: env.Stderr, Getenv: env.Getenv})
}
