package e2e

import (
	"fmt"
	"io"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/internal/local"
	"sluice/internal/spool"
	"sluice/internal/testutil"
	"sluice/internal/testutil/fakesmtp"
)

// newLocalMTA is an in-process sluice whose mydestination mail goes to
// a test mail spool, with a test alias file and an injected user table
// (every user is the test's own uid, so no root is needed).
func newLocalMTA(t *testing.T, aliases string, mainCf ...string) (*mta, string) {
	t.Helper()
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(spoolDir, 0o755); err != nil {
		t.Fatal(err)
	}
	aliasFile := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliasFile, []byte(aliases), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMTA(t, append([]string{"mail_spool_directory = " + spoolDir, "alias_maps = texthash:" + aliasFile, "recipient_delimiter = +"}, mainCf...)...)
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	m.users = local.StaticUsers{
		"alice": {Name: "alice", UID: uid, GID: gid, Home: filepath.Join(dir, "alice"), Shell: "/bin/sh"},
	}
	return m, spoolDir
}

func TestLocalDeliveryToMailbox(t *testing.T) {
	m, spoolDir := newLocalMTA(t, "postmaster: root\nroot: alice\n")
	m.start()
	m.send("carol@src.test", []string{"alice+news@sluice.test"}, "for alice's mailbox")
	mbox := filepath.Join(spoolDir, "alice")
	m.waitFor("the mailbox", func() bool {
		b, _ := os.ReadFile(mbox)
		return strings.Contains(string(b), "for alice's mailbox")
	})
	id := m.queueID("alice+news@sluice.test")
	m.waitFor("removal", func() bool { return m.logNow(id + ": removed") })
	if !m.logHas(id+": to=<alice+news@sluice.test>, relay=local, delay=") || !m.logHas(", dsn=2.0.0, status=sent (delivered to mailbox)") {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
	if !strings.Contains(m.logbuf.String(), "postfix/local[") {
		t.Errorf("delivery not logged by local:\n%s", m.logbuf.String())
	}
	b, _ := os.ReadFile(mbox)
	if !strings.HasPrefix(string(b), "From carol@src.test  ") || !strings.Contains(string(b), "\nReturn-Path: <carol@src.test>\nX-Original-To: alice+news@sluice.test\nDelivered-To: alice+news@sluice.test\nReceived: from ") {
		t.Errorf("mailbox:\n%s", b)
	}
	if n := len(m.sink.Delivered()); n != 0 {
		t.Errorf("%d transactions went to the relay", n)
	}

	// Postmaster follows the aliases to alice; the log says so.
	m.send("carol@src.test", []string{"postmaster@sluice.test"}, "to the postmaster")
	m.waitFor("postmaster's mail", func() bool { return m.logNow("to=<alice@sluice.test>, orig_to=<postmaster@sluice.test>, relay=local") })
	if !m.logHas("status=sent (delivered to mailbox)") {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
}

func TestBounceToLocalSenderLandsInMailbox(t *testing.T) {
	m, spoolDir := newLocalMTA(t, "postmaster: root\nroot: alice\n")
	m.sink.RcptReply("nobody@dest.test", fakesmtp.Reply{Text: "550 5.1.1 <nobody@dest.test>: no such user"})
	m.start()
	// A local user's message (a cron job's, say) that a remote server refuses.
	m.send("alice@sluice.test", []string{"nobody@dest.test"}, "cron output")
	mbox := filepath.Join(spoolDir, "alice")
	m.waitFor("the bounce in alice's mailbox", func() bool {
		b, _ := os.ReadFile(mbox)
		return strings.Contains(string(b), "Undelivered Mail Returned to Sender") || strings.Contains(string(b), "no such user")
	})
	b, _ := os.ReadFile(mbox)
	if !strings.HasPrefix(string(b), "From MAILER-DAEMON  ") || !strings.Contains(string(b), "\nReturn-Path: <>\n") || !strings.Contains(string(b), "Final-Recipient: rfc822; nobody@dest.test") {
		t.Errorf("bounce in mailbox:\n%s", b)
	}
	if !m.logHas("to=<alice@sluice.test>, relay=local") {
		t.Errorf("mail log:\n%s", m.logbuf.String())
	}
}

// TestLocalUnknownUserRefusedAtRCPT: over SMTP an unknown local user is
// refused at RCPT (local_recipient_maps), as Postfix's smtpd does, and
// nothing is queued for it.
func TestLocalUnknownUserRefusedAtRCPT(t *testing.T) {
	m, _ := newLocalMTA(t, "postmaster: root\nroot: alice\n")
	m.start()
	err := smtp.SendMail(m.addr, nil, "carol@dest.test", []string{"ghost@sluice.test"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "User unknown in local recipient table") {
		t.Fatalf("SendMail to an unknown user: %v", err)
	}
	m.waitFor("the reject line", func() bool {
		return m.logNow("NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <ghost@sluice.test>: Recipient address rejected: User unknown in local recipient table;") ||
			m.logNow("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <ghost@sluice.test>: Recipient address rejected: User unknown in local recipient table;")
	})
	// Postmaster and the aliases' names are known.
	m.send("carol@dest.test", []string{"postmaster@sluice.test", "alice@sluice.test"}, "known")
}

// TestLocalUnknownUserBounces: mail that reaches the local agent for a
// user who does not exist (here with no local recipient table, so smtpd
// takes it; sendmail's mail has no RCPT check either) bounces to the
// sender.
func TestLocalUnknownUserBounces(t *testing.T) {
	m, _ := newLocalMTA(t, "postmaster: root\nroot: alice\n", "local_recipient_maps =")
	m.start()
	m.send("carol@dest.test", []string{"ghost@sluice.test"}, "to nobody")
	m.waitFor("the bounce", func() bool {
		return m.logNow(`to=<ghost@sluice.test>, relay=local`) && m.logNow(`dsn=5.1.1, status=bounced (unknown user: "ghost")`)
	})
	m.waitFor("the DSN to the sender", func() bool { return len(m.delivered("carol@dest.test")) == 1 })
}

// TestLocalRealUserSendmail runs the sluice binary as root with a real
// user made for the test (useradd, removed after): cron's mail to root
// goes through sendmail, pickup and the aliases postmaster -> root ->
// the user, into a mailbox the user owns.
func TestLocalRealUserSendmail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (useradd, delivery as another user)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Fatal("no useradd (package passwd)")
	}
	name := fmt.Sprintf("sluicet%d", time.Now().UnixNano()%1000000)
	if out, err := exec.Command("useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(strings.TrimSpace(string(out)))

	sink := fakesmtp.Start(t, fakesmtp.Options{})
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "mail")
	if err := os.Mkdir(spoolDir, 0o775); err != nil {
		t.Fatal(err)
	}
	aliasFile := filepath.Join(dir, "aliases")
	if err := os.WriteFile(aliasFile, []byte("# test aliases\npostmaster: root\nroot: "+name+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, sink.Addr, "mail_spool_directory = "+spoolDir, "alias_maps = hash:"+aliasFile)
	d.start()
	defer d.kill()
	if out, err := d.tool("Subject: Cron <root@host> run-parts\n\ncron output\nFrom the job.\n", "sendmail", "-f", "root", "-i", "root"); err != nil {
		t.Fatalf("sendmail: %v\n%s", err, out)
	}
	mbox := filepath.Join(spoolDir, name)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(d.mailLog(), "status=sent (delivered to mailbox)") {
		time.Sleep(20 * time.Millisecond)
	}
	log := d.mailLog()
	if !strings.Contains(log, "to=<"+name+"@sluice.test>, orig_to=<root>, relay=local") || !strings.Contains(log, "status=sent (delivered to mailbox)") {
		t.Fatalf("mail log:\n%s\nstderr:\n%s", log, d.stderr.String())
	}
	b, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "From root@sluice.test  ") || !strings.Contains(string(b), "\nX-Original-To: root\nDelivered-To: root@sluice.test\n") ||
		!strings.Contains(string(b), "\n>From the job.\n") {
		t.Errorf("mailbox:\n%s", b)
	}
	fi, _ := os.Stat(mbox)
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid || fi.Mode().Perm() != 0o600 {
		t.Errorf("mailbox owner %d mode %v, want %d 0600", st.Uid, fi.Mode().Perm(), uid)
	}
	if len(sink.Delivered()) != 0 {
		t.Error("local mail went to the relayhost")
	}
	d.waitEmpty(10 * time.Second)
}

// TestLocalDeliverRefuses: the hidden local-deliver command runs only as
// root, with the queue file as a read-only descriptor 3, a pipe as
// standard output and a well-formed job; anything else ends it with exit
// 75 before it delivers anything. The same call with all of them right
// delivers.
func TestLocalDeliverRefuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (local-deliver runs as root only)")
	}
	dir := t.TempDir()
	mail := filepath.Join(dir, "mail")
	os.Mkdir(mail, 0o755)
	conf := filepath.Join(dir, "etc")
	os.Mkdir(conf, 0o755)
	os.WriteFile(filepath.Join(dir, "aliases"), []byte("postmaster: root\n"), 0o644)
	os.WriteFile(filepath.Join(conf, "main.cf"), []byte("queue_directory = "+filepath.Join(dir, "spool")+"\nmyhostname = sluice.test\n"+
		"mail_spool_directory = "+mail+"\nalias_maps = texthash:"+filepath.Join(dir, "aliases")+"\n"), 0o644)
	sp := spool.New(filepath.Join(dir, "spool"))
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	qf, err := sp.NewFile(spool.Incoming, now)
	if err != nil {
		t.Fatal(err)
	}
	qf.WriteEnvelope(&spool.NewEnvelope{Arrival: now, Sender: "cron@sluice.test", Recipients: []spool.NewRecipient{{Address: "postmaster@sluice.test"}}})
	qf.WriteLine([]byte("Subject: refused or not"))
	if err := qf.Commit(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(qf.Path, &st); err != nil {
		t.Fatal(err)
	}
	job := fmt.Sprintf(`{"queue_id":"%s","sender":"cron@sluice.test","recipients":[{"address":"postmaster@sluice.test"}],"time_limit":60000000000,"message":{"dev":%d,"ino":%d}}`, qf.ID, st.Dev, st.Ino)
	otherFile := strings.Replace(job, fmt.Sprintf(`"ino":%d`, st.Ino), fmt.Sprintf(`"ino":%d`, st.Ino+1), 1)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	// A copy of the binary nobody may run.
	testutil.Reachable(t, dir)
	bin := filepath.Join(dir, "sluice")
	if b, err := os.ReadFile(sluiceBinary(t)); err != nil || os.WriteFile(bin, b, 0o755) != nil {
		t.Fatalf("copy the binary: %v", err)
	}

	run := func(cred *syscall.Credential, stdin string, fd3 int, pipeOut bool) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, "local-deliver", "-c", conf)
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		cmd.Stdin = strings.NewReader(stdin)
		var errb strings.Builder
		cmd.Stderr = &errb
		if fd3 >= 0 {
			f, err := os.OpenFile(qf.Path, fd3, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.ExtraFiles = []*os.File{f}
		}
		var r, w *os.File
		if pipeOut {
			if r, w, err = os.Pipe(); err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cmd.Stdout = w
		} else {
			f, err := os.Create(filepath.Join(dir, "stdout"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd.Stdout = f
		}
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		err := cmd.Start()
		if w != nil {
			w.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		if r != nil {
			out, _ = io.ReadAll(r)
		}
		cmd.Wait()
		return cmd.ProcessState.ExitCode(), string(out), errb.String()
	}
	for _, c := range []struct {
		name    string
		cred    *syscall.Credential
		stdin   string
		fd3     int
		pipeOut bool
		want    string
	}{
		{"not root", nobody, job, os.O_RDONLY, true, "local-deliver: fatal: local-deliver is run as root by the sluice serve master, not by users (effective uid 65534)\n"},
		{"no queue file", nil, job, -1, true, "local-deliver: fatal: descriptor 3 is not the job's queue file (local-deliver is run by the sluice serve master, not by users)\n"},
		{"another queue file", nil, otherFile, os.O_RDONLY, true, "local-deliver: fatal: descriptor 3 is not the job's queue file (local-deliver is run by the sluice serve master, not by users)\n"},
		{"queue file writable", nil, job, os.O_RDWR, true, "local-deliver: fatal: the queue file is not open read-only (local-deliver is run by the sluice serve master, not by users)\n"},
		{"output not a pipe", nil, job, os.O_RDONLY, false, "local-deliver: fatal: standard output is not the results pipe (local-deliver is run by the sluice serve master, not by users)\n"},
		{"job not JSON", nil, "postmaster@sluice.test\n", os.O_RDONLY, true, "local-deliver: fatal: malformed job: invalid character 'p' looking for beginning of value\n"},
		{"job with a bad queue ID", nil, strings.Replace(job, qf.ID, "../"+qf.ID, 1), os.O_RDONLY, true, "local-deliver: fatal: malformed job: bad queue ID \"../" + qf.ID + "\"\n"},
		{"job with an unknown field", nil, strings.Replace(job, `"sender"`, `"config":"/tmp","sender"`, 1), os.O_RDONLY, true, "local-deliver: fatal: malformed job: json: unknown field \"config\"\n"},
	} {
		code, stdout, stderr := run(c.cred, c.stdin, c.fd3, c.pipeOut)
		if code != 75 || stdout != "" || stderr != c.want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 75, %q", c.name, code, stdout, stderr, c.want)
		}
	}
	if ents, _ := os.ReadDir(mail); len(ents) != 0 {
		t.Fatalf("a refused local-deliver wrote %v", ents)
	}
	code, stdout, stderr := run(nil, job, os.O_RDONLY, true)
	if code != 0 || stderr != "" || !strings.Contains(stdout, `"results":[{"status":"sent","dsn":"2.0.0","reason":"delivered to mailbox","finals":[{"to":"root@sluice.test"`) {
		t.Fatalf("local-deliver with all right: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(mail, "root")); !strings.Contains(string(b), "\nSubject: refused or not\n") {
		t.Errorf("root's mailbox:\n%s", b)
	}
}
