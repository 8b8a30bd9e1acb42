package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/config"
)

func TestPostconf(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("# comment\nrelayhost = [127.0.0.1]:9\nmyhostname = facts.test\nmyorigin = $mydomain\nfoo_bar = 1\n"), 0o644)
	unused := "postconf: warning: " + filepath.Join(dir, "main.cf") + ": unused parameter: foo_bar=1\n"
	cases := []struct {
		name           string
		args           []string
		stdout, stderr string
		status         int
	}{
		{"-n sorted", []string{"-n"}, "config_directory = " + dir + "\nmyhostname = facts.test\nmyorigin = $mydomain\nrelayhost = [127.0.0.1]:9\n", unused, 0},
		{"config_directory", []string{"config_directory"}, "config_directory = " + dir + "\n", unused, 0},
		{"-d config_directory", []string{"-d", "config_directory"}, "config_directory = /etc/sluice\n", unused, 0},
		{"names in order", []string{"relayhost", "myorigin", "mynetworks"}, "relayhost = [127.0.0.1]:9\nmyorigin = $mydomain\nmynetworks = 127.0.0.0/8 [::1]/128\n", unused, 0},
		{"empty value", []string{"-d", "relayhost"}, "relayhost =\n", unused, 0},
		{"unknown", []string{"nosuch", "myhostname"}, "myhostname = facts.test\n", "postconf: warning: nosuch: unknown parameter\n" + unused, 0},
		{"-h", []string{"-h", "myorigin", "relayhost"}, "$mydomain\n[127.0.0.1]:9\n", unused, 0},
		{"-x", []string{"-x", "myorigin"}, "myorigin = localdomain\n", unused, 0},
		{"-d", []string{"-d", "myorigin", "mydestination"}, "myorigin = $myhostname\nmydestination = $myhostname, localhost.$mydomain, localhost\n", unused, 0},
		{"-dhx", []string{"-dhx", "myorigin"}, "localhost\n", unused, 0},
		{"-n with a name not set", []string{"-n", "mynetworks", "relayhost"}, "relayhost = [127.0.0.1]:9\n", unused, 0},
		{"-o", []string{"-o", "relayhost=mx.test", "relayhost"}, "relayhost = mx.test\n", unused, 0},
		{"bad option", []string{"-z"}, "", "postconf: invalid option -- 'z'\npostconf: fatal: usage: postconf [-dhnx] [-c config_dir] [-o name=value] [name ...]\n", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, status := runSendmailTool(t, append([]string{"postconf", "-c", dir}, c.args...), "")
			if stdout != c.stdout || stderr != c.stderr || status != c.status {
				t.Errorf("got %d\n%s--- stderr\n%s\nwant %d\n%s--- stderr\n%s", status, stdout, stderr, c.status, c.stdout, c.stderr)
			}
		})
	}
}

func TestPostconfAll(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = facts.test\n"), 0o644)
	stdout, stderr, status := runSendmailTool(t, []string{"sluice", "postconf", "-c", dir}, "")
	if status != 0 || stderr != "" {
		t.Fatalf("%d %s", status, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(config.Params) {
		t.Errorf("%d lines for %d parameters", len(lines), len(config.Params))
	}
	for i := 1; i < len(lines); i++ {
		if lines[i-1] >= lines[i] {
			t.Errorf("not sorted: %q before %q", lines[i-1], lines[i])
		}
	}
	if !strings.Contains(stdout, "\nmyhostname = facts.test\n") || !strings.Contains(stdout, "\nsyslog_name = postfix\n") {
		t.Errorf("output:\n%s", stdout)
	}
}

// TestPostconfLikePostfix compares postconf -n and -h with Postfix's own
// postconf, when installed, on a main.cf that only holds parameters both
// know.
func TestPostconfLikePostfix(t *testing.T) {
	pc := "/usr/sbin/postconf"
	if _, err := os.Stat(pc); err != nil {
		t.Skip("Postfix's postconf not installed")
	}
	dir := t.TempDir()
	cf := filepath.Join(dir, "main.cf")
	os.WriteFile(cf, []byte("relayhost = [127.0.0.1]:9\nmyhostname = facts.test\nmyorigin = $mydomain\nmynetworks = 10.0.0.0/8, 192.0.2.1\nmessage_size_limit=1000\n"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(cf, old, old)
	for _, args := range [][]string{{"-n"}, {"-h", "myorigin", "relayhost"}, {"mynetworks", "message_size_limit"}, {"-d", "relayhost", "myorigin", "mydestination", "message_size_limit", "minimal_backoff_time"}} {
		want, err := exec.Command(pc, append([]string{"-c", dir}, args...)...).Output()
		if err != nil {
			t.Fatalf("postconf %v: %v", args, err)
		}
		got, _, status := runSendmailTool(t, append([]string{"postconf", "-c", dir}, args...), "")
		if status != 0 || got != string(want) {
			t.Errorf("postconf %v:\n got %q\nwant %q", args, got, want)
		}
	}
}

func TestPostconfMissingConfig(t *testing.T) {
	_, stderr, status := runSendmailTool(t, []string{"postconf", "-c", "/nonexistent/dir"}, "")
	if status != 1 || stderr != "postconf: fatal: open /nonexistent/dir/main.cf: No such file or directory\n" {
		t.Errorf("%d %q", status, stderr)
	}
}
