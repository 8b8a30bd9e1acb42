package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// sysexits(3) codes and what Postfix makes of them: the status, and the
// text of the reason. A code whose status starts with 4 defers the
// recipient; any other failure bounces it.
var sysexits = map[int]struct{ dsn, text string }{
	64: {"5.3.0", "command line usage error"},
	65: {"5.6.0", "data format error"},
	66: {"5.3.0", "cannot open input"},
	67: {"5.1.1", "user unknown"},
	68: {"5.1.2", "host name unknown"},
	69: {"5.3.0", "service unavailable"},
	70: {"5.3.0", "internal software error"},
	71: {"4.3.0", "system resource problem"},
	72: {"5.3.0", "critical OS file missing"},
	73: {"5.2.0", "can't create user output file"},
	74: {"5.3.0", "input/output error"},
	75: {"4.3.0", "temporary failure"},
	76: {"5.5.0", "remote error in protocol"},
	77: {"5.7.0", "permission denied"},
	78: {"5.3.5", "local configuration error"},
}

// commandEnv is what a command learns of its delivery, in the
// environment variables Postfix's local(8) sets.
type commandEnv struct {
	user                      *User // nil for alias commands without a user context
	cred                      Cred
	sender, recipient, orig   string
	local, extension, domain_ string
}

// maxOutput is how much of a failed command's output goes into the
// reason (Postfix keeps a short excerpt too).
const maxOutput = 512

// runCommand runs cmdline with /bin/sh -c as e.cred, the message on its
// standard input, in the user's home directory when there is one (else
// /), with a minimal environment, for at most the command time limit.
// Exit 0 is delivered; a sysexits(3) code maps as the table above; any
// other exit status bounces ("Command died with status N"); death by a
// signal or the time limit defers.
func (a *Agent) runCommand(ctx context.Context, cmdline string, e commandEnv, write func(w io.Writer) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CommandTimeLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.cfg.Shell, "-c", cmdline)
	if err := a.commandCred(cmd, e.cred); err != nil {
		return err
	}
	cmd.Cancel = func() error {
		// The whole process group: a shell's children too.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	home, shell, logname := "/", a.cfg.Shell, e.cred.Name
	if e.user != nil {
		if e.user.Home != "" {
			home = e.user.Home
		}
		if e.user.Shell != "" {
			shell = e.user.Shell
		}
		logname = e.user.Name
	}
	cmd.Dir = "/"
	if a.cfg.CommandDir != "" {
		cmd.Dir = a.cfg.CommandDir
	}
	cmd.Env = []string{
		"HOME=" + home, "LOGNAME=" + logname, "USER=" + logname, "SHELL=" + shell,
		"PATH=/usr/bin:/bin",
		"SENDER=" + e.sender, "RECIPIENT=" + e.recipient, "ORIGINAL_RECIPIENT=" + e.orig,
		"LOCAL=" + e.local, "EXTENSION=" + e.extension, "DOMAIN=" + e.domain_,
	}
	if tz := a.getenv("TZ"); tz != "" {
		cmd.Env = append(cmd.Env, "TZ="+tz)
	}
	var out limitedBuffer
	out.max = maxOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return tempErr("4.3.0", "cannot run command: %v", err)
	}
	if err := cmd.Start(); err != nil {
		return tempErr("4.3.0", "cannot run command %q: %v", cmdline, err)
	}
	werr := write(stdin)
	cerr := stdin.Close()
	err = cmd.Wait()
	output := ""
	if s := strings.TrimSpace(out.String()); s != "" {
		output = ". Command output: " + strings.Join(strings.Fields(s), " ")
	}
	if ctx.Err() == context.DeadlineExceeded {
		return tempErr("4.3.0", "Command time limit exceeded: %q%s", cmdline, output)
	}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && enhancedStatus(out.String()) != "":
		// Output that begins with an RFC 3463 status code decides the
		// outcome over the exit status.
		return &deliveryError{dsn: enhancedStatus(out.String()), text: strings.Join(strings.Fields(out.String()), " ")}
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return tempErr("4.3.0", "Command died with signal %d: %q%s", ws.Signal(), cmdline, output)
		}
		code := ee.ExitCode()
		if se, ok := sysexits[code]; ok {
			return &deliveryError{dsn: se.dsn, text: se.text + output}
		}
		return &deliveryError{dsn: "5.3.0", text: fmt.Sprintf("Command died with status %d: %q%s", code, cmdline, output)}
	case err != nil:
		return tempErr("4.3.0", "command %q: %v", cmdline, err)
	}
	// A command that exits 0 without reading all of its input has
	// accepted the message (procmail may stop early); a broken pipe is
	// not a failure then.
	if werr != nil && !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, os.ErrClosed) {
		return tempErr("4.3.0", "write to command %q: %v", cmdline, werr)
	}
	_ = cerr
	return nil
}

// limitedBuffer keeps the first max bytes written to it and discards
// the rest, so a chatty command cannot fill memory.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.buf.String() }

// enhancedStatus returns the RFC 3463 code at the start of s ("5.1.1 no
// such list"), or "".
func enhancedStatus(s string) string {
	s = strings.TrimSpace(s)
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	parts := strings.Split(f[0], ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return ""
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return ""
		}
	}
	if parts[0] == "2" {
		return ""
	}
	return f[0]
}
