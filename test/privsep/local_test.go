package privsep_test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestLocalDeliveryProcess: under privilege separation local mail is
// delivered by `sluice local-deliver`, a root process the master starts
// for each delivery, not by the master and not by the mail system (the
// child, mail_owner), which logs the results. Seen from outside: the
// mailbox is the user's own (0600) though the child cannot create files
// for others; a command named in the aliases finds its parent process
// to be root's local-deliver, a child of the master and not the mail
// system; the delivery lines come from the child; forwarded mail goes
// through maildrop/ and pickup.
func TestLocalDeliveryProcess(t *testing.T) {
	e := setup(t)
	mail := filepath.Join(e.top, "mail")
	os.Mkdir(mail, 0o775) // root's, not world-writable: Debian's /var/mail
	probeDir := filepath.Join(e.top, "probe")
	os.Mkdir(probeDir, 0o777)
	os.Chmod(probeDir, 0o777)
	probe := filepath.Join(probeDir, "out")
	aliases := filepath.Join(e.top, "aliases")
	os.WriteFile(aliases, []byte("postmaster: root\nroot: "+e.submitter+"\n"+
		"probe: \"|cat /proc/$PPID/status /proc/$PPID/cmdline > "+probe+"; id -u >> "+probe+"\"\n"+
		"fwd: friend@example.com\n"), 0o644)
	e.writeConf(e.conf, "mail_spool_directory = "+mail, "alias_maps = texthash:"+aliases)
	e.start()
	ou, err := user.Lookup(e.owner)
	if err != nil {
		t.Fatal(err)
	}
	e.ownerUID, _ = strconv.Atoi(ou.Uid)
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}

	r := e.as(-1, "Subject: Cron <root@host> run-parts\n\ncron output\nFrom the job.\n", "sendmail", "-C", e.conf, "-f", "cron", "root", "probe", "fwd")
	if r.code != 0 {
		t.Fatalf("sendmail: %+v", r)
	}
	e.waitLog("status=sent (delivered to mailbox)")
	e.waitLog("status=sent (delivered to command: ")
	e.waitLog("status=sent (forwarded as ")

	master := e.daemon.Process.Pid
	children := childrenOf(t, master)
	if len(children) != 1 {
		t.Fatalf("master %d has children %v after the deliveries, want the mail system only", master, children)
	}
	child := children[0]
	if uids, _ := statusIDs(t, fmt.Sprintf("/proc/%d/status", child)); uids[0] != e.ownerUID || uids[1] != e.ownerUID {
		t.Fatalf("the mail system runs as %v, not as mail_owner %d", uids, e.ownerUID)
	}

	// The mailbox: made for the user, with the user's mail.
	mbox := filepath.Join(mail, e.submitter)
	fi, err := os.Stat(mbox)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != e.userUID || fi.Mode().Perm() != 0o600 {
		t.Errorf("mailbox uid %d mode %v, want %d 0600", st.Uid, fi.Mode().Perm(), e.userUID)
	}
	b, _ := os.ReadFile(mbox)
	if !strings.HasPrefix(string(b), "From cron@privsep.test  ") || !strings.Contains(string(b), "\nX-Original-To: root\nDelivered-To: root@privsep.test\n") || !strings.Contains(string(b), "\n>From the job.\n") {
		t.Errorf("mailbox:\n%s", b)
	}

	// The command's parent: root's local-deliver, the master's child,
	// run with the master's configuration directory.
	out, err := os.ReadFile(probe)
	if err != nil {
		t.Fatal(err)
	}
	field := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `:\s*(.*)$`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("no %s in the probe:\n%s", name, out)
		}
		return strings.Join(strings.Fields(m[1]), " ")
	}
	if got := field("Uid"); got != "0 0 0 0" {
		t.Errorf("local-deliver's Uid: %s, want root", got)
	}
	if ppid := field("PPid"); ppid != strconv.Itoa(master) {
		t.Errorf("local-deliver's parent %s, want the master %d", ppid, master)
	}
	if pid := field("Pid"); pid == strconv.Itoa(child) || pid == strconv.Itoa(master) {
		t.Errorf("local-deliver's pid %s is the master's or the child's", pid)
	}
	if !strings.Contains(string(out), "sluice\x00local-deliver\x00-c\x00"+e.conf+"\x00") {
		t.Errorf("local-deliver's command line:\n%q", out)
	}
	// The command itself as default_privs.
	// (cmdline ends in a NUL, not a newline.)
	if i := strings.LastIndexByte(string(out), 0); i < 0 || strings.TrimSpace(string(out[i+1:])) != nobody.Uid {
		t.Errorf("the command ran as %q, want nobody (%s)", out[i+1:], nobody.Uid)
	}

	// The mail log: the child's lines, as for in-process delivery.
	log, _ := os.ReadFile(e.log)
	for _, want := range []string{
		fmt.Sprintf(`postfix/local\[%d\]: [0-9A-F]+: to=<%s@privsep\.test>, orig_to=<root>, relay=local, delay=[0-9.]+, delays=[0-9./]+, dsn=2\.0\.0, status=sent \(delivered to mailbox\)`, child, e.submitter),
		fmt.Sprintf(`postfix/local\[%d\]: [0-9A-F]+: to=<probe@privsep\.test>, orig_to=<probe>, relay=local, .*status=sent \(delivered to command: cat `, child),
		fmt.Sprintf(`postfix/local\[%d\]: [0-9A-F]+: to=<friend@example\.com>, orig_to=<fwd>, relay=local, .*status=sent \(forwarded as [0-9A-F]+\)`, child),
		`postfix/pickup\[[0-9]+\]: [0-9A-F]+: uid=0 from=<cron@privsep\.test>`,
	} {
		if !regexp.MustCompile(want).Match(log) {
			t.Errorf("no line like %s in the mail log:\n%s", want, log)
		}
	}
	// The forwarded copy is queued for friend@example.com.
	e.waitLog("to=<friend@example.com>, relay=")
}
