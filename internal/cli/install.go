package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"sluice/internal/privsep"
)

// installHelp is sluice install's manual.
const installHelp = `usage: sluice install [-prefix DIR] [--force] [-c config_dir]

Puts sluice in place as the host's mail system, under DIR (default /):

  usr/sbin/sluice            this binary
  usr/sbin/sluice-postdrop   a copy, root:setgid_group mode 2755: the setgid
                             helper through which local users submit mail
                             and reach the daemon's public/ sockets
  usr/sbin/sendmail, postqueue, postsuper, postcat, qshape -> sluice
  usr/bin/mailq, usr/bin/newaliases, usr/lib/sendmail -> ../sbin/sluice
  etc/systemd/system/sluice.service   ExecStart=/usr/sbin/sluice serve,
                             ExecReload=kill -HUP

Nothing that is not sluice's is replaced — Postfix's sendmail, mailq
or postqueue, any other file or link — unless --force is given; without
it, sluice install names what is in the way and changes nothing.
setgid_group (from main.cf, default postdrop) is created when missing.
Installing needs root (the helper's owner and mode).
`

// unitMarker marks a systemd unit that sluice install wrote.
const unitMarker = "# Installed by sluice install."

// installItem is one thing install puts in place.
type installItem struct {
	rel    string // path under the prefix
	link   string // symlink target; "" for a file
	what   string // "binary", "helper" or "unit"
	exists bool
	ours   bool
	was    string // what is there now, for messages
}

func runInstall(env *Env) int {
	prefix, force, confDir := "/", false, ""
	args := env.Args
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "--help":
			fmt.Fprint(env.Stdout, installHelp)
			return 0
		case a == "--force" || a == "-force":
			force = true
		case (a == "-prefix" || a == "--prefix" || a == "-c") && i+1 < len(args):
			if a == "-c" {
				confDir = args[i+1]
			} else {
				prefix = args[i+1]
			}
			i++
		case strings.HasPrefix(a, "-prefix=") || strings.HasPrefix(a, "--prefix="):
			prefix = a[strings.IndexByte(a, '=')+1:]
		default:
			fmt.Fprint(env.Stderr, installHelp)
			return 2
		}
	}
	env.Name = "sluice install"
	if os.Geteuid() != 0 {
		return env.Fatalf(1, "must be run as root: the setgid helper is made root:setgid_group, mode 2755")
	}
	cfg, err := env.LoadConfig(confDir)
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return env.Fatalf(1, "find this binary: %v", err)
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return env.Fatalf(1, "find this binary: %v", err)
	}
	items := []*installItem{
		{rel: "usr/sbin/sluice", what: "binary"},
		{rel: "usr/sbin/" + privsep.HelperName, what: "helper"},
		{rel: "etc/systemd/system/sluice.service", what: "unit"},
	}
	for _, n := range []string{"sendmail", "postqueue", "postsuper", "postcat", "qshape"} {
		items = append(items, &installItem{rel: "usr/sbin/" + n, link: "sluice"})
	}
	for _, n := range []string{"usr/bin/mailq", "usr/bin/newaliases", "usr/lib/sendmail"} {
		items = append(items, &installItem{rel: n, link: "../sbin/sluice"})
	}
	// First look at everything, then change: a refusal leaves the
	// system as it was.
	var blocked []string
	for _, it := range items {
		if err := inspect(prefix, it); err != nil {
			return env.Fatalf(1, "%v", err)
		}
		if it.exists && !it.ours {
			blocked = append(blocked, fmt.Sprintf("%s (%s)", filepath.Join(prefix, it.rel), it.was))
		}
	}
	if len(blocked) > 0 && !force {
		for _, b := range blocked {
			fmt.Fprintf(env.Stderr, "%s: not replacing %s: it is not sluice's\n", env.Name, b)
		}
		return env.Fatalf(1, "nothing installed; --force replaces these")
	}
	acc, err := privsep.EnsureAccounts(cfg.Get("mail_owner"), cfg.Get("setgid_group"), cfg.Get("queue_directory"), func(f string, a ...any) {
		fmt.Fprintf(env.Stdout, "%s: %s\n", env.Name, fmt.Sprintf(f, a...))
	})
	if err != nil {
		return env.Fatalf(1, "%v", err)
	}
	for _, it := range items {
		dst := filepath.Join(prefix, it.rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return env.Fatalf(1, "%v", err)
		}
		switch {
		case it.link != "":
			err = replaceSymlink(it.link, dst)
		case it.what == "binary":
			if same, _ := sameFile(self, dst); !same {
				err = copyFile(self, dst, 0, 0, 0o755)
			}
		case it.what == "helper":
			err = copyFile(self, dst, 0, acc.SetgidGID, 0o755|fs.ModeSetgid)
		case it.what == "unit":
			// The unit names the path the binary has on the installed
			// system, whatever the prefix.
			err = writeFileAtomic(dst, []byte(unitText("/usr/sbin/sluice")), 0o644)
		}
		if err != nil {
			return env.Fatalf(1, "install %s: %v", dst, err)
		}
		note := ""
		if it.exists && !it.ours {
			note = " (replaced " + it.was + ")"
		}
		fmt.Fprintf(env.Stdout, "%s: %s%s\n", env.Name, dst, note)
	}
	return 0
}

// inspect fills in whether it.rel exists and whether it is sluice's: a
// link to our binary, our binary or helper (by name: nobody else ships
// them), or a unit we wrote.
func inspect(prefix string, it *installItem) error {
	dst := filepath.Join(prefix, it.rel)
	fi, err := os.Lstat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	it.exists = true
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(dst)
		if err != nil {
			return err
		}
		it.was = "a link to " + target
		abs := target
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(filepath.Dir(dst), target)
		}
		it.ours = it.link != "" && filepath.Clean(abs) == filepath.Join(prefix, "usr/sbin/sluice")
	case it.what == "binary" || it.what == "helper":
		it.was, it.ours = "a file", fi.Mode().IsRegular()
	case it.what == "unit":
		b, err := os.ReadFile(dst)
		if err != nil {
			return err
		}
		it.was, it.ours = "a unit file", bytes.HasPrefix(b, []byte(unitMarker))
	default:
		it.was = "a file"
	}
	return nil
}

// unitText is sluice.service. KillMode=mixed: systemd signals only the
// root master, which forwards the signal to the mail system and exits
// with it.
func unitText(bin string) string {
	return unitMarker + ` It replaces this file when it runs again.
[Unit]
Description=sluice mail transfer agent
Documentation=man:sluice(8)
After=network-online.target
Wants=network-online.target
Conflicts=postfix.service

[Service]
Type=simple
ExecStart=` + bin + ` serve
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
Restart=on-failure
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
`
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// replaceSymlink makes dst a link to target, atomically (a new link
// renamed over the old entry).
func replaceSymlink(target, dst string) error {
	tmp := dst + ".sluice-new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// copyFile copies src to dst with owner uid:gid and mode, atomically;
// the mode is set after the owner (chown clears set-id bits).
func copyFile(src, dst string, uid, gid int, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".sluice-new"
	os.Remove(tmp)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chown(uid, gid)
	}
	if err == nil {
		err = out.Chmod(mode)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func writeFileAtomic(dst string, b []byte, mode fs.FileMode) error {
	tmp := dst + ".sluice-new"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
