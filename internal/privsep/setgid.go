package privsep

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"sluice/internal/config"
	"sluice/internal/pickup"
	"sluice/internal/spool"
)

// HelperName is the setgid copy of the binary that sluice install puts
// beside it.
const HelperName = "sluice-postdrop"

// Exit statuses of the helper (sysexits.h), which sendmail passes on.
const (
	exUsage       = 64
	exDataErr     = 65
	exUnavailable = 69
	exSoftware    = 70
	exTempFail    = 75
)

// trustedConfigDir is the configuration directory the helper reads
// without asking: config.DefaultDir, unless the build names another
// with -ldflags "-X sluice/internal/privsep.trustedConfigDir=DIR" (as
// Postfix fixes its config_directory when it is compiled; the tests do
// this). Nothing changes it at run time.
var trustedConfigDir = config.DefaultDir

// publicNames are the public/ sockets the helper connects to.
var publicNames = []string{"sluice-control", "pickup"}

// IsSetgid reports whether this process runs with a group (or user) that
// is not its caller's: then it must run nothing but SetgidMain.
func IsSetgid() bool {
	return os.Getegid() != os.Getgid() || os.Geteuid() != os.Getuid()
}

// SetgidMain is the whole program when the binary runs set-group-ID (see
// the package comment). It never returns to the caller's code paths:
// main exits with its status.
func SetgidMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	const name = HelperName
	fatal := func(status int, format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: fatal: %s\n", name, fmt.Sprintf(format, a...))
		return status
	}
	if os.Geteuid() != os.Getuid() {
		return fatal(exSoftware, "refusing to run set-user-ID: install %s set-group-ID only", name)
	}
	if !cleanEnv(os.Environ()) {
		// Start over with nothing from the caller's environment, so no
		// GODEBUG, GOTRACEBACK, GOGC or GOMAXPROCS reaches the runtime
		// that does the work (it read them before main). The kernel
		// makes the new image set-group-ID again.
		argv := []string{name}
		if dir, ok := os.LookupEnv("MAIL_CONFIG"); ok && !slices.Contains(args[1:], "-c") {
			argv = append(argv, "-c", dir)
		}
		argv = append(argv, args[1:]...)
		err := syscall.Exec("/proc/self/exe", argv, []string{})
		return fatal(exSoftware, "re-execute with an empty environment: %v", err)
	}
	syscall.Umask(0o022)

	rest := args[1:]
	dir := trustedConfigDir
	if len(rest) >= 2 && rest[0] == "-c" {
		dir, rest = rest[1], rest[2:]
	}
	cfg, status, err := trustedConfig(dir, stderr)
	if err != nil {
		return fatal(status, "%v", err)
	}
	sp := spool.New(cfg.Get("queue_directory"))
	sp.SetHashQueues(cfg.Get("hash_queue_names"))
	sp.LongIDs = cfg.Bool("enable_long_queue_ids")
	switch {
	case len(rest) == 1 && rest[0] == "drop":
		id, status, err := drop(sp, stdin, time.Now())
		if err != nil {
			return fatal(status, "%v", err)
		}
		// Wake pickup; without a daemon the file waits for its start.
		_ = pickup.WakeDaemon(sp)
		fmt.Fprintln(stdout, id)
		return 0
	case len(rest) == 2 && rest[0] == "connect":
		if err := connect(sp, rest[1], os.NewFile(3, "fd 3")); err != nil {
			return fatal(exUnavailable, "%v", err)
		}
		return 0
	}
	return fatal(exUsage, "usage: %s [-c config_dir] drop | connect %s", name, strings.Join(publicNames, "|"))
}

// cleanEnv reports whether env is what a re-executed helper sees: empty
// but for GOTRACEBACK=none, which the Go runtime itself adds to the
// environment of a set-group-ID process.
func cleanEnv(env []string) bool {
	for _, kv := range env {
		if kv != "GOTRACEBACK=none" {
			return false
		}
	}
	return true
}

// trustedConfig loads dir if the caller may name it: the default, or a
// directory the default main.cf lists in alternate_config_directories.
func trustedConfig(dir string, stderr io.Writer) (*config.Config, int, error) {
	def, err := config.Load(trustedConfigDir)
	if err != nil {
		return nil, exTempFail, err
	}
	if filepath.Clean(dir) == filepath.Clean(trustedConfigDir) {
		return def, 0, nil
	}
	allowed := false
	for _, d := range strings.FieldsFunc(def.Get("alternate_config_directories"), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		allowed = allowed || filepath.Clean(d) == filepath.Clean(dir)
	}
	if !allowed {
		fmt.Fprintf(stderr, "%s: error: unauthorized configuration directory name: %s\n", HelperName, dir)
		return nil, exTempFail, fmt.Errorf("specify \"alternate_config_directories = %s\" in %s", dir, filepath.Join(trustedConfigDir, "main.cf"))
	}
	cfg, err := config.Load(dir)
	if err != nil {
		return nil, exTempFail, err
	}
	return cfg, 0, nil
}

// connect dials public/name and passes the connection over sock (a unix
// socket the caller holds the other end of) with SCM_RIGHTS.
func connect(sp *spool.Spool, name string, sock *os.File) error {
	if !slices.Contains(publicNames, name) {
		return fmt.Errorf("connect: unknown service %q", name)
	}
	c, err := net.DialTimeout("unix", filepath.Join(sp.Root, "public", name), 5*time.Second)
	if err != nil {
		return fmt.Errorf("connect to public/%s: %w", name, err)
	}
	defer c.Close()
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		return err
	}
	defer f.Close()
	back, err := net.FileConn(sock)
	if err != nil {
		return fmt.Errorf("fd 3 is not the caller's socket: %w", err)
	}
	defer back.Close()
	uc, ok := back.(*net.UnixConn)
	if !ok {
		return errors.New("fd 3 is not a unix socket")
	}
	_, _, err = uc.WriteMsgUnix([]byte{'c'}, syscall.UnixRights(int(f.Fd())), nil)
	return err
}

// maxDropRecord bounds one record of a maildrop stream: sendmail splits
// content lines at 2048 bytes and envelope fields are short.
const maxDropRecord = 1 << 20

// drop writes the record stream on in to a new maildrop file, checking
// it as it goes; a stream that breaks the rules leaves no file.
func drop(sp *spool.Spool, in io.Reader, now time.Time) (string, int, error) {
	if _, err := os.Stat(filepath.Join(sp.Root, spool.Maildrop)); err != nil {
		return "", exTempFail, fmt.Errorf("maildrop directory: %w (is the mail system installed? run sluice serve once as root)", err)
	}
	f, id, err := sp.CreateNamed(spool.Maildrop, now, 0o600)
	if err != nil {
		return "", exTempFail, err
	}
	path := sp.Path(spool.Maildrop, id)
	fail := func(status int, err error) (string, int, error) {
		f.Close()
		os.Remove(path)
		return "", status, err
	}
	w := bufio.NewWriterSize(f, 32<<10)
	var v dropValidator
	if err := copyRecords(w, bufio.NewReaderSize(in, 32<<10), &v); err != nil {
		var ve validationError
		if errors.As(err, &ve) {
			return fail(exDataErr, err)
		}
		return fail(exTempFail, err)
	}
	if err := w.Flush(); err != nil {
		return fail(exTempFail, err)
	}
	if err := f.Sync(); err != nil {
		return fail(exTempFail, err)
	}
	if err := f.Chmod(pickup.ModeMaildrop); err != nil {
		return fail(exTempFail, err)
	}
	if err := f.Sync(); err != nil {
		return fail(exTempFail, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", exTempFail, err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		// maildrop/ is not readable for the group, so this open may
		// fail; the file itself is synced and ready either way.
		d.Sync()
		d.Close()
	}
	return id, 0, nil
}

type validationError struct{ msg string }

func (e validationError) Error() string { return "malformed input: " + e.msg }

// copyRecords copies records from r to w, each checked by v, until the
// end record, and then requires the end of input.
func copyRecords(w io.Writer, r *bufio.Reader, v *dropValidator) error {
	var buf []byte
	for {
		typ, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return validationError{"premature end of input (no end record)"}
			}
			return err
		}
		n, err := readLength(r)
		if err != nil {
			return err
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return validationError{"premature end of input in a record"}
		}
		if err := v.check(typ, buf); err != nil {
			return err
		}
		rec := spool.AppendRecord(nil, typ, buf)
		if _, err := w.Write(rec); err != nil {
			return err
		}
		if typ == spool.RecEnd {
			if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
				return validationError{"data after the end record"}
			}
			return nil
		}
	}
}

func readLength(r *bufio.Reader) (int, error) {
	n, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, validationError{"premature end of input in a record length"}
		}
		n |= int(b&0x7f) << shift
		if n > maxDropRecord {
			return 0, validationError{"record too long"}
		}
		if b&0x80 == 0 {
			return n, nil
		}
		shift += 7
	}
}

// dropValidator accepts what sendmail writes (pickup.Drop's format):
//
//	T  A rewrite_context=local  [A envelope_id=]  [A ret_flags=]  F  S
//	{ [A notify_flags=] [A dsn_orig_rcpt=] R }...  M  { N | L }...  X  { R }...  E
type dropValidator struct {
	state  int // 0 envelope, 1 content, 2 extracted, 3 done
	seenT  bool
	seenS  bool
	seenF  bool
	nrcpts int
}

var dropAttrs = []string{"rewrite_context", "envelope_id", "ret_flags", "notify_flags", "dsn_orig_rcpt"}

func (v *dropValidator) check(typ byte, data []byte) error {
	bad := func(format string, a ...any) error { return validationError{fmt.Sprintf(format, a...)} }
	switch v.state {
	case 0:
		if typ != spool.RecTime && !v.seenT {
			return bad("the first record is %q, not a time record", typ)
		}
		if typ != spool.RecMesg && typ != spool.RecTime && strings.IndexByte(string(data), 0) >= 0 {
			return bad("NUL byte in a %q record", typ)
		}
		switch typ {
		case spool.RecTime:
			if v.seenT || !isTime(data) {
				return bad("bad or repeated time record")
			}
			v.seenT = true
		case spool.RecAttr:
			name, val, ok := strings.Cut(string(data), "=")
			if !ok || !slices.Contains(dropAttrs, name) {
				return bad("attribute %q is not allowed", name)
			}
			if name == "rewrite_context" && val != "local" {
				return bad("rewrite_context=%q is not allowed", val)
			}
			if (name == "ret_flags" || name == "notify_flags") && !isDigits(val) {
				return bad("%s=%q is not a number", name, val)
			}
		case spool.RecFullName:
			if v.seenF {
				return bad("repeated full name record")
			}
			v.seenF = true
		case spool.RecSender:
			if v.seenS {
				return bad("repeated sender record")
			}
			v.seenS = true
		case spool.RecRcpt:
			v.nrcpts++
		case spool.RecMesg:
			if !v.seenS || len(data) != 0 {
				return bad("content starts before the sender")
			}
			v.state = 1
		default:
			return bad("record type %q is not allowed in the envelope", typ)
		}
	case 1:
		switch typ {
		case spool.RecNorm, spool.RecCont:
		case spool.RecXtra:
			if len(data) != 0 {
				return bad("non-empty extracted-segment record")
			}
			v.state = 2
		default:
			return bad("record type %q is not allowed in the content", typ)
		}
	case 2:
		switch typ {
		case spool.RecRcpt:
			if strings.IndexByte(string(data), 0) >= 0 {
				return bad("NUL byte in a recipient")
			}
			v.nrcpts++
		case spool.RecEnd:
			if len(data) != 0 {
				return bad("non-empty end record")
			}
			if v.nrcpts == 0 {
				return bad("no recipients")
			}
			v.state = 3
		default:
			return bad("record type %q is not allowed after the content", typ)
		}
	default:
		return bad("record after the end record")
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isTime(b []byte) bool {
	sec, usec, ok := strings.Cut(string(b), " ")
	return ok && isDigits(sec) && isDigits(usec)
}
