package privsep

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/config"
	"sluice/internal/pickup"
	"sluice/internal/spool"
)

// stream builds a record stream from (type, data) pairs.
func stream(recs ...string) []byte {
	var b []byte
	for _, r := range recs {
		b = spool.AppendRecordString(b, r[0], r[1:])
	}
	return b
}

// TestDropValidator: the helper accepts what sendmail writes and nothing
// that would let a local user put other records into the queue.
func TestDropValidator(t *testing.T) {
	good := []string{"T1700000000 12", "Arewrite_context=local", "Aenvelope_id=x", "Aret_flags=1", "FJo User", "Sjo",
		"Anotify_flags=2", "Adsn_orig_rcpt=rfc822;a@b", "Ra@b", "M", "NSubject: x", "N", "Lpart", "Nrest", "X", "Rextra@b", "E"}
	for _, tt := range []struct {
		name string
		recs []string
		ok   bool
	}{
		{"sendmail's stream", good, true},
		{"minimal", []string{"T1 0", "Sjo", "Ra@b", "M", "N", "X", "E"}, true},
		{"recipient only from -t", []string{"T1 0", "S", "M", "NTo: a@b", "X", "Ra@b", "E"}, true},
		{"no recipient", []string{"T1 0", "Sjo", "M", "N", "X", "E"}, false},
		{"no time first", []string{"Sjo", "T1 0", "Ra@b", "M", "X", "E"}, false},
		{"bad time", []string{"Tsoon", "Sjo", "Ra@b", "M", "X", "E"}, false},
		{"two senders", []string{"T1 0", "Sjo", "Sroot", "Ra@b", "M", "X", "E"}, false},
		{"foreign attribute", []string{"T1 0", "Alog_client_address=1.2.3.4", "Sjo", "Ra@b", "M", "X", "E"}, false},
		{"other rewrite context", []string{"T1 0", "Arewrite_context=remote", "Sjo", "Ra@b", "M", "X", "E"}, false},
		{"size record", []string{"T1 0", "C1 2 3", "Sjo", "Ra@b", "M", "X", "E"}, false},
		{"content filter", []string{"T1 0", "Lsmtp:evil", "Sjo", "Ra@b", "M", "X", "E"}, false},
		{"done recipient", []string{"T1 0", "Sjo", "Da@b", "Ra@b", "M", "X", "E"}, false},
		{"envelope record in content", []string{"T1 0", "Sjo", "Ra@b", "M", "Rb@c", "X", "E"}, false},
		{"no end", []string{"T1 0", "Sjo", "Ra@b", "M", "N", "X"}, false},
		{"after end", []string{"T1 0", "Sjo", "Ra@b", "M", "N", "X", "E", "Rb@c"}, false},
		{"NUL in sender", []string{"T1 0", "Sj\x00o", "Ra@b", "M", "X", "E"}, false},
	} {
		var out bytes.Buffer
		var v dropValidator
		err := copyRecords(&out, bufio.NewReader(bytes.NewReader(stream(tt.recs...))), &v)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err == nil && !bytes.Equal(out.Bytes(), stream(tt.recs...)) {
			t.Errorf("%s: copied stream differs", tt.name)
		}
	}
	// A length that claims more than the limit is refused before any
	// allocation of that size.
	huge := append([]byte{'T'}, 0xff, 0xff, 0xff, 0xff, 0x0f)
	var v dropValidator
	if err := copyRecords(&bytes.Buffer{}, bufio.NewReader(bytes.NewReader(huge)), &v); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("huge record: %v", err)
	}
}

// TestPipeDropWritesWhatDropWrites: the records sendmail sends the
// helper are byte for byte the maildrop file sendmail writes itself.
func TestPipeDropWritesWhatDropWrites(t *testing.T) {
	sp := spool.New(t.TempDir())
	sp.NoSync = true
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	e := &pickup.DropEnvelope{
		Arrival: time.Unix(1700000000, 123456000), FullName: "Jö User", Sender: "jo", EnvID: "env1", Ret: 2,
		Recipients: []pickup.DropRecipient{{Address: "a@b", Notify: 6, ORCPT: "rfc822;a@b"}, {Address: "c@d"}},
	}
	lines := [][]byte{[]byte("Subject: hi"), nil, bytes.Repeat([]byte("x"), 5000), []byte("end")}
	d, err := pickup.NewDrop(sp, e.Arrival)
	if err != nil {
		t.Fatal(err)
	}
	d.WriteEnvelope(e)
	for _, l := range lines {
		d.WriteLine(l)
	}
	if err := d.Commit([]string{"x@y"}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(d.Path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	p := &PipeDrop{DropRecords: pickup.NewDropRecords(bufio.NewWriter(&buf))}
	p.WriteEnvelope(e)
	for _, l := range lines {
		p.WriteLine(l)
	}
	p.End([]string{"x@y"})
	p.Flush()
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("helper stream and maildrop file differ:\n%q\n%q", buf.Bytes(), want)
	}
	if p.Size() != d.Size() {
		t.Errorf("sizes %d and %d", p.Size(), d.Size())
	}
	// And the helper accepts it as it is.
	var v dropValidator
	if err := copyRecords(&bytes.Buffer{}, bufio.NewReader(bytes.NewReader(want)), &v); err != nil {
		t.Errorf("the helper refuses sendmail's own file: %v", err)
	}
}

// TestDropFile: drop writes a ready maildrop file (0744) named by its
// ID, and leaves nothing behind when the stream is refused.
func TestDropFile(t *testing.T) {
	sp := spool.New(t.TempDir())
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	recs := stream("T1700000000 0", "Arewrite_context=local", "F", "Sjo", "Ra@b", "M", "NSubject: x", "X", "E")
	id, status, err := drop(sp, bytes.NewReader(recs), time.Now())
	if err != nil || status != 0 {
		t.Fatalf("drop: %d %v", status, err)
	}
	fi, err := os.Stat(sp.Path(spool.Maildrop, id))
	if err != nil || fi.Mode().Perm() != 0o744 {
		t.Fatalf("maildrop file: %v %v", fi, err)
	}
	if b, _ := os.ReadFile(sp.Path(spool.Maildrop, id)); !bytes.Equal(b, recs) {
		t.Errorf("file content differs from the stream")
	}
	_, status, err = drop(sp, bytes.NewReader(stream("T1 0", "Sjo", "Ra@b", "M", "Dx")), time.Now())
	if err == nil || status != exDataErr {
		t.Errorf("bad stream: %d %v", status, err)
	}
	names, _ := os.ReadDir(filepath.Join(sp.Root, spool.Maildrop))
	if len(names) != 1 {
		t.Errorf("maildrop holds %d entries after a refused stream, want 1", len(names))
	}
}

// TestUserList: authorized_*_users as Postfix reads them.
func TestUserList(t *testing.T) {
	uid := os.Getuid()
	name := userName(uid)
	for _, tt := range []struct {
		v    string
		want bool
	}{
		{"static:anyone", true},
		{"static:nobody", true}, // a static table answers every lookup
		{"", false},
		{name, true},
		{"someone-else, " + name, true},
		{"!" + name + ", static:anyone", false},
		{"someone-else", false},
	} {
		l, err := parseUserList("authorized_mailq_users", tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if got := l.match(uid); got != tt.want {
			t.Errorf("%q: match %v, want %v", tt.v, got, tt.want)
		}
	}
	if _, err := parseUserList("authorized_mailq_users", "hash:/etc/postfix/users"); err == nil {
		t.Error("an unsupported table was accepted")
	}
}

// TestPolicy: root and mail_owner may always; others as the lists say.
func TestPolicy(t *testing.T) {
	cfg, err := config.Parse(strings.NewReader("authorized_mailq_users = root\nauthorized_flush_users =\n"), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.MailOwnerUID = 4242
	for _, tt := range []struct {
		uid                  int
		list, flush, changes bool
	}{
		{0, true, true, true},
		{4242, true, true, true},
		{4243, false, false, false},
	} {
		if p.MayList(tt.uid) != tt.list || p.MayFlush(tt.uid) != tt.flush || p.MayChange(tt.uid) != tt.changes {
			t.Errorf("uid %d: list %v flush %v change %v", tt.uid, p.MayList(tt.uid), p.MayFlush(tt.uid), p.MayChange(tt.uid))
		}
	}
	if got := ListRefusal(0); got != "User root(0) is not allowed to view the mail queue" {
		t.Errorf("ListRefusal: %q", got)
	}
	if got := FlushRefusal(0); got != "User root(0) is not allowed to flush the mail queue" {
		t.Errorf("FlushRefusal: %q", got)
	}
}

func TestCleanEnv(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want bool
	}{
		{nil, true},
		{[]string{"GOTRACEBACK=none"}, true},
		{[]string{"GOTRACEBACK=none", "GODEBUG=x=1"}, false},
		{[]string{"MAIL_CONFIG=/tmp"}, false},
	} {
		if got := cleanEnv(tt.env); got != tt.want {
			t.Errorf("%q: %v", tt.env, got)
		}
	}
}

// TestReachable: a 0700 directory of another owner stops mail_owner.
func TestReachable(t *testing.T) {
	requireRoot(t)
	top := t.TempDir()
	os.Chmod(filepath.Dir(top), 0o755)
	os.Chmod(top, 0o700)
	f := filepath.Join(top, "main.cf")
	os.WriteFile(f, nil, 0o644)
	a := Accounts{Owner: "x", UID: 54321, GID: 54321}
	if err := a.Reachable(f, true); err == nil || !strings.Contains(err.Error(), top+" is closed") {
		t.Errorf("closed directory: %v", err)
	}
	os.Chmod(top, 0o711)
	if err := a.Reachable(f, true); err != nil {
		t.Errorf("open directory: %v", err)
	}
	os.Chmod(f, 0o600)
	if err := a.Reachable(f, true); err == nil {
		t.Error("unreadable main.cf accepted")
	}
}

// requireRoot fails a test that needs root when it runs as another user,
// unless SLUICE_TEST_NONROOT is set (a run known to be unprivileged),
// which skips it.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SLUICE_TEST_NONROOT") != "" {
		t.Skip("needs root; SLUICE_TEST_NONROOT is set")
	}
	t.Fatal("this test needs root (set SLUICE_TEST_NONROOT=1 to skip the tests that do)")
}
