package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"unsafe"

	"sluice/internal/control"
	"sluice/internal/qshape"
)

// qshapeUsage is qshape's help text (-h, or any bad option), as Postfix's
// qshape prints it, plus the order of rows Postfix leaves to chance.
const qshapeUsage = `Usage: qshape [ -s ] [ -p ] [ -m <min_subdomains> ] [ -l ]
	[ -b <bucket_count> ] [ -t <bucket_time> ] [ -w <terminal_width> ]
	[ -N <batch_msg_count> ] [ -n <batch_top_domains> ]
	[ -c <config_directory> ] [ <queue_name> ... ]
The 's' option shows sender domain counts.
The 'p' option shows address counts by for parent domains.
Parent domains are shown with a leading '.' before the domain name.
Parent domains are only shown if the domain is not a TLD, and at
least <min_subdomains> (default 5) subdomains are shown in the output.

The bucket age ranges in units of <bucket_time> minutes are
[0,1), [1,2), [2,4), [4,8), [8, 16), ... i.e.:
	the first bucket is [0, bucket_time) minutes
	the second bucket is [bucket_time, 2*bucket_time) minutes
	the third bucket is [2*bucket_time, 4*bucket_time) minutes...
'-l' makes the ages linear, the number of buckets shown is <bucket_count>

The default summary is for the incoming and active queues. An explicit
list of queue names can be given on the command line. Non-absolute queue
names are interpreted relative to the Postfix queue directory. Use
<config_directory> to specify a non-default Postfix instance.

Rows are sorted by total count (largest first), then by name length
(shortest first); rows equal in both are listed in byte order of the
name (Postfix lists those in a random order). The interim results of
-N and the row limit of -n apply only when standard output is a terminal.
`

// runQshape is Postfix's qshape (see package qshape for what it counts).
// Exit status: 0 after printing the table, even when some queue was
// missing or some file could not be read (those are warned about on
// stderr); 255 after the help text, for -h or an unknown option, as the
// script's die; 1 when the configuration or the queue directory cannot be
// read. Where the script reads queue_directory with "postconf -h" and
// refuses $name expansions, sluice expands them.
func runQshape(env *Env) int {
	flags, args, bad := qshape.ParseArgs(env.Args)
	queues := append([]string(nil), args...)
	if bad != 0 || hasFlag(flags, 'h') {
		if bad != 0 && !hasFlag(flags, 'h') {
			fmt.Fprintf(env.Stderr, "%s: Unknown option: %c\n", env.Name, bad)
		}
		io.WriteString(env.Stderr, qshapeUsage)
		return 255
	}
	if len(queues) == 0 {
		queues = qshape.DefaultQueues()
	}
	for i, q := range queues {
		if strings.HasPrefix(q, "/") {
			continue
		}
		// Relative names are under queue_directory; the configuration
		// is read only when some name needs it.
		cfg, err := env.LoadConfig(qshapeConfigDir(flags))
		if err != nil {
			return env.Fatalf(1, "%v", err)
		}
		qdir := cfg.Get("queue_directory")
		if fi, err := os.Stat(qdir); err != nil || !fi.IsDir() {
			if err == nil {
				err = syscall.ENOTDIR
			}
			return env.Fatalf(1, "chdir(%s): %v", qdir, unwrapPathError(err))
		}
		for j := i; j < len(queues); j++ {
			if !strings.HasPrefix(queues[j], "/") {
				queues[j] = strings.TrimSuffix(qdir, "/") + "/" + queues[j]
			}
		}
		break
	}
	opt := qshape.FromFlags(flags, isTerminal(env.Stdout))
	opt.Warnf = env.Warnf
	if opt.BatchMsgs.F > 0 {
		// As the script does, ask clear(1) for the terminal's sequence.
		cmd := exec.Command("clear")
		cmd.Stderr = env.Stderr
		out, _ := cmd.Output()
		opt.Clear = string(out)
	}
	if cfg, err := env.LoadConfig(qshapeConfigDir(flags)); err == nil {
		if code, refused := checkAccess(env, cfg, control.AccessList); refused {
			return code
		}
	}
	if code, ok := qshapeFromDaemon(env, flags, queues, opt); ok {
		return code
	}
	// Reading the files: a queue this user may not read is an error,
	// not a row of zeros (the script only warns).
	for _, q := range queues {
		f, err := os.Open(q)
		if err == nil {
			_, err = f.Readdirnames(1)
			f.Close()
		}
		if errors.Is(err, fs.ErrPermission) {
			return env.Fatalf(1, "cannot read the queue and no sluice daemon answers: %v", err)
		}
	}
	if err := qshape.Run(opt, queues, env.Stdout); err != nil {
		return env.Fatalf(1, "%v", err)
	}
	return 0
}

// qshapeConfigDir is the configuration directory -c names, or "".
func qshapeConfigDir(flags map[byte]*string) string {
	v, ok := flags['c']
	if !ok {
		return ""
	}
	if v == nil {
		return "/" // -c without a value: Postfix then reads /main.cf
	}
	return *v
}

// qshapeFromDaemon has the daemon running on the configuration's spool
// compute the table from its cache, at its time. ok is false when there
// is no daemon, or it failed (or refused queues outside its spool) before
// anything was printed: the caller then reads the files itself.
func qshapeFromDaemon(env *Env, flags map[byte]*string, queues []string, opt qshape.Options) (code int, ok bool) {
	cfg, err := env.LoadConfig(qshapeConfigDir(flags))
	if err != nil {
		return 0, false
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		return 0, false
	}
	r, c, _ := queueRoute(cfg, sp)
	if r != routeDaemon {
		return 0, false
	}
	defer c.Close()
	req := control.QshapeRequest{Flags: map[string]*string{}, Terminal: isTerminal(env.Stdout), Clear: opt.Clear, Queues: queues}
	for k, v := range flags {
		req.Flags[string(rune(k))] = v
	}
	started, err := c.Qshape(req, env.Stdout, func(msg string) { env.Warnf("%s", msg) })
	var fatal *control.FatalError
	var out *control.OutputError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &fatal):
		return env.Fatalf(1, "%s", fatal.Msg), true
	case errors.As(err, &out):
		return env.Fatalf(1, "%v", out.Err), true
	case started:
		return env.Fatalf(1, "%v", err), true
	}
	return 0, false
}

func hasFlag(flags map[byte]*string, c byte) bool {
	_, ok := flags[c]
	return ok
}

// isTerminal reports whether a standard stream is a terminal, as Perl's
// -t does: it asks for the terminal's attributes (/dev/null is a
// character device too, so the file mode cannot tell).
func isTerminal(stream any) bool {
	f, ok := stream.(*os.File)
	if !ok {
		return false
	}
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
