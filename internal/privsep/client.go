package privsep

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"sluice/internal/config"
	"sluice/internal/pickup"
)

// ErrNoHelper says that the setgid helper is not installed.
var ErrNoHelper = errors.New("the setgid helper " + HelperName + " is not installed (sluice install puts it in place)")

// HelperPath finds the setgid helper: beside the running binary (where
// sluice install puts it), else in command_directory. It must be
// set-group-ID to be of use.
func HelperPath(cfg *config.Config) (string, error) {
	var dirs []string
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dirs = append(dirs, filepath.Dir(exe))
	}
	if cfg != nil && cfg.Get("command_directory") != "" {
		dirs = append(dirs, cfg.Get("command_directory"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, HelperName)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSetgid != 0 {
			return p, nil
		}
	}
	return "", ErrNoHelper
}

// helperArgs is the helper's argv for a configuration directory: -c only
// when it is not the default (the helper accepts others only when the
// default main.cf lists them in alternate_config_directories).
func helperArgs(configDir string, rest ...string) []string {
	args := []string{HelperName}
	if configDir != "" && filepath.Clean(configDir) != config.DefaultDir {
		args = append(args, "-c", configDir)
	}
	return append(args, rest...)
}

// DialPublic connects to public/name through the helper, for a user
// whom public/ (mode 2710, group setgid_group) keeps out: the helper
// connects and hands the socket back over a socketpair.
func DialPublic(helper, configDir, name string) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "helper socket")
	theirs := os.NewFile(uintptr(fds[1]), "helper socket")
	defer ours.Close()
	var stderr bytes.Buffer
	cmd := &exec.Cmd{Path: helper, Args: helperArgs(configDir, "connect", name), ExtraFiles: []*os.File{theirs}, Stderr: &stderr}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", helper, err)
	}
	fc, err := net.FileConn(ours)
	if err != nil {
		cmd.Wait()
		return nil, err
	}
	defer fc.Close()
	buf, oob := make([]byte, 1), make([]byte, syscall.CmsgSpace(4))
	n, oobn, _, _, rerr := fc.(*net.UnixConn).ReadMsgUnix(buf, oob)
	werr := cmd.Wait()
	if rerr != nil || n != 1 || oobn == 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" && werr != nil {
			msg = werr.Error()
		}
		return nil, fmt.Errorf("%s connect %s: %s", HelperName, name, msg)
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("%s connect %s: bad answer", HelperName, name)
	}
	got, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		return nil, fmt.Errorf("%s connect %s: bad answer", HelperName, name)
	}
	f := os.NewFile(uintptr(got[0]), "public/"+name)
	defer f.Close()
	return net.FileConn(f)
}

// PipeDrop writes a maildrop file through the helper: the records go to
// the helper's standard input, which checks them and writes the file.
// It has pickup.Drop's methods, so sendmail writes either the same way.
type PipeDrop struct {
	pickup.DropRecords
	ID   string
	cmd  *exec.Cmd
	pipe *os.File
	out  bytes.Buffer
	errb bytes.Buffer
	done bool
}

// NewPipeDrop starts the helper's drop.
func NewPipeDrop(helper, configDir string) (*PipeDrop, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	d := &PipeDrop{DropRecords: pickup.NewDropRecords(bufio.NewWriterSize(w, 32<<10)), pipe: w}
	d.cmd = &exec.Cmd{Path: helper, Args: helperArgs(configDir, "drop"), Stdin: r, Stdout: &d.out, Stderr: &d.errb}
	err = d.cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("run %s: %w", helper, err)
	}
	return d, nil
}

// Commit ends the stream and waits for the helper, which has the file
// synced and ready when it exits 0.
func (d *PipeDrop) Commit(extracted []string) error {
	if d.done {
		return errors.New("maildrop file already committed or aborted")
	}
	d.done = true
	d.End(extracted)
	ferr := d.Flush()
	d.pipe.Close()
	werr := d.cmd.Wait()
	if werr != nil || ferr != nil {
		msg := strings.TrimSpace(d.errb.String())
		if msg == "" {
			msg = fmt.Sprint(werr, ferr)
		}
		return fmt.Errorf("%s", msg)
	}
	d.ID = strings.TrimSpace(d.out.String())
	return nil
}

// Abort ends the helper without an end record: it removes its file.
func (d *PipeDrop) Abort() {
	if d.done {
		return
	}
	d.done = true
	d.pipe.Close()
	d.cmd.Wait()
}
