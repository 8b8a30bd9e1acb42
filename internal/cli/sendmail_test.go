package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sluice/internal/cleanup"
	"sluice/internal/pickup"
	"sluice/internal/spool"
)

// mailConfig makes a configuration directory whose spool is a temporary
// directory, and returns both.
func mailConfig(t *testing.T, extra string) (dir, queue string) {
	t.Helper()
	dir = t.TempDir()
	queue = filepath.Join(t.TempDir(), "spool")
	cf := "queue_directory = " + queue + "\nmyhostname = facts.test\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, queue
}

func runSendmailTool(t *testing.T, argv []string, stdin string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errb bytes.Buffer
	status = Main(argv, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), status
}

// maildropFiles returns the records of every file in maildrop/, rendered
// one per line as "T data", content lines as "N data".
func maildropFiles(t *testing.T, queue string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(queue, spool.Maildrop))
	var out []string
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(queue, spool.Maildrop, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o744 {
			t.Errorf("maildrop file mode %v", fi.Mode().Perm())
		}
		r := spool.NewBytesReader(data)
		var b strings.Builder
		for {
			rec, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.Type == spool.RecTime {
				b.WriteString("T (time)\n")
				continue
			}
			b.WriteString(string(rec.Type) + " " + string(rec.Data) + "\n")
		}
		out = append(out, b.String())
	}
	return out
}

func TestSendmail(t *testing.T) {
	user, gecos := currentUser()
	cases := []struct {
		name   string
		args   []string
		stdin  string
		want   string // the maildrop file's records
		status int
		stderr string
	}{
		{
			name:  "PHP mail(): -t -i, recipients only in headers",
			args:  []string{"-t", "-i"},
			stdin: "To: a@example.com, \"B\" <b@example.com>\r\nSubject: php\r\nBcc: c@example.com\r\n\r\nline\r\n.\r\nafter dot\r\n",
			want: "A rewrite_context=local\nF " + gecos + "\nS " + user + "\nM \nN To: a@example.com, \"B\" <b@example.com>\nN Subject: php\nN Bcc: c@example.com\nN \nN line\nN .\nN after dot\n" +
				"X \nR a@example.com\nR b@example.com\nR c@example.com\nE \n",
		},
		{
			name:  "cron: -f -F -oi, recipient argument, From_ line skipped",
			args:  []string{"-FCron Daemon", "-oi", "-f", "root", "admin"},
			stdin: "From root  Sun Nov 29 00:00:00 2026\nSubject: cron\n\noutput\n.\n",
			want:  "A rewrite_context=local\nF Cron Daemon\nS root\nR admin\nM \nN Subject: cron\nN \nN output\nN .\nX \nE \n",
		},
		{
			name:  "a lone dot ends the message without -i",
			args:  []string{"-f", "<a@b.test>", "x@y.test", "z@y.test"},
			stdin: "Subject: dot\n\nbefore\n.\nafter\n",
			want:  "A rewrite_context=local\nF " + gecos + "\nS a@b.test\nR x@y.test\nR z@y.test\nM \nN Subject: dot\nN \nN before\nX \nE \n",
		},
		{
			name:  "null sender, DSN options, folded To: with -t and a command-line recipient",
			args:  []string{"-f", "<>", "-t", "-N", "success,delay", "-R", "hdrs", "-V", "env1", "-v", "-oem", "cmd@example.com"},
			stdin: "To: one@example.com,\n two@example.com\nSubject: x\n\nb\n",
			want: "A rewrite_context=local\nA envelope_id=env1\nA ret_flags=2\nF " + gecos + "\nS \nA notify_flags=10\nR cmd@example.com\nM \nN To: one@example.com,\nN  two@example.com\nN Subject: x\nN \nN b\n" +
				"X \nR one@example.com\nR two@example.com\nE \n",
		},
		{
			name: "no recipients", args: []string{"-f", "a"}, stdin: "x\n", status: 64,
			stderr: "sendmail: fatal: Recipient addresses must be specified on the command line or via the -t option\n",
		},
		{
			name: "-t but no recipient headers", args: []string{"-t"}, stdin: "Subject: x\n\nb\n", status: 64,
			stderr: "sendmail: fatal: No recipient addresses found in message header\n",
		},
		{
			name: "bad -N", args: []string{"-N", "never,success", "a@b"}, stdin: "x\n", status: 64,
			stderr: "sendmail: fatal: bad -N option value: never,success\n",
		},
		{
			name: "unsupported mode", args: []string{"-bd"}, status: 64, stderr: "sendmail: fatal: unsupported: -bd\n",
		},
		{
			name: "too big", args: []string{"a@b"}, stdin: "Subject: big\n\n" + strings.Repeat("x", 3000) + "\n", status: 65,
			stderr: "sendmail: fatal: message file too big\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, queue := mailConfig(t, "message_size_limit = 2000\n")
			argv := append([]string{"/usr/sbin/sendmail", "-C", dir}, c.args...)
			_, stderr, status := runSendmailTool(t, argv, c.stdin)
			if status != c.status || stderr != c.stderr {
				t.Fatalf("status %d, stderr %q; want %d, %q", status, stderr, c.status, c.stderr)
			}
			files := maildropFiles(t, queue)
			if c.status != 0 {
				if len(files) != 0 {
					t.Errorf("a failed submission left %d maildrop files", len(files))
				}
				return
			}
			if len(files) != 1 {
				t.Fatalf("%d maildrop files", len(files))
			}
			if got := strings.TrimPrefix(files[0], "T (time)\n"); got != c.want {
				t.Errorf("maildrop file:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestSendmailThroughPickup follows a message from sendmail into the
// queue, with no daemon running: it waits in maildrop/ until a pickup
// runs.
func TestSendmailThroughPickup(t *testing.T) {
	dir, queue := mailConfig(t, "")
	_, stderr, status := runSendmailTool(t, []string{"sluice", "sendmail", "-C", dir, "-f", "alice", "-F", "Alice Q", "bob"}, "Subject: t1\nTo: x@example.com\n\nbody1\n")
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	sp := spool.New(queue)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	cl := cleanup.New(cleanup.Config{Spool: sp, MyHostname: "facts.test"})
	p := pickup.New(pickup.Config{Spool: sp, Cleanup: cl})
	if n, err := p.Scan(context.Background()); n != 1 || err != nil {
		t.Fatalf("pickup: %d, %v", n, err)
	}
	ents, _ := os.ReadDir(filepath.Join(queue, spool.Incoming))
	if len(ents) != 1 {
		t.Fatalf("%d queued", len(ents))
	}
	c, err := spool.OpenContent(sp.Path(spool.Incoming, ents[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	text, _ := io.ReadAll(c)
	if c.Envelope.Sender != "alice@facts.test" || c.Envelope.Recipients[0].Address != "bob@facts.test" || !strings.Contains(string(text), "From: Alice Q <alice@facts.test>\n") {
		t.Errorf("queued %+v\n%s", c.Envelope, text)
	}
}

func TestSendmailBS(t *testing.T) {
	dir, queue := mailConfig(t, "")
	script := "EHLO local\r\nMAIL FROM:<a@b.test> RET=FULL\r\nRCPT TO:<c@anywhere.example> NOTIFY=FAILURE\r\nDATA\r\nSubject: bs\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n"
	stdout, stderr, status := runSendmailTool(t, []string{"sendmail", "-C", dir, "-bs"}, script)
	if status != 0 {
		t.Fatalf("status %d: %s", status, stderr)
	}
	m := regexp.MustCompile(`(?m)^250 2\.0\.0 Ok: queued as ([0-9A-F]+)\r$`).FindStringSubmatch(stdout)
	if m == nil || !strings.HasPrefix(stdout, "220 facts.test ESMTP") || !strings.Contains(stdout, "221 ") {
		t.Fatalf("session:\n%s", stdout)
	}
	files := maildropFiles(t, queue)
	want := "A rewrite_context=local\nA ret_flags=1\nF "
	if len(files) != 1 || !strings.Contains(files[0], want) || !strings.Contains(files[0], "S a@b.test\nA notify_flags=4\nR c@anywhere.example\nM \nN Subject: bs\nN \nN body\nN .dot\nX \nE \n") {
		t.Errorf("maildrop files %q", files)
	}
	if _, err := os.Stat(filepath.Join(queue, spool.Maildrop, m[1])); err != nil {
		t.Errorf("queued as %s, but: %v", m[1], err)
	}
}

func TestSendmailHelp(t *testing.T) {
	stdout, _, status := runSendmailTool(t, []string{"sendmail", "--help"}, "")
	if status != 0 || !strings.Contains(stdout, "-bs") {
		t.Errorf("help: %d %q", status, stdout)
	}
}
