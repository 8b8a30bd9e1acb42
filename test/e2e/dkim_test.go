package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOpenDKIMSigns runs Debian's OpenDKIM as sluice's smtpd_milters
// with a key made for the test, relays a message through sluice to the
// receiving server, and verifies the DKIM signature of what arrived with
// dkimpy against the generated public key. The test fails, never skips,
// when a tool is missing: scripts/test.sh installs them.
func TestOpenDKIMSigns(t *testing.T) {
	opendkim := mustTool(t, "opendkim", "opendkim")
	genkey := mustTool(t, "opendkim-genkey", "opendkim-tools")
	// Debian's python3 (not another one on PATH) has python3-dkim.
	python := "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import dkim").CombinedOutput(); err != nil {
		t.Fatalf("dkimpy is missing (apt-get install python3-dkim): %v: %s", err, out)
	}

	dir := t.TempDir()
	if out, err := exec.Command(genkey, "-D", dir, "-d", "src.test", "-s", "sel", "-b", "2048").CombinedOutput(); err != nil {
		t.Fatalf("opendkim-genkey: %v: %s", err, out)
	}
	key := filepath.Join(dir, "sel.private")
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "opendkim.sock")
	conf := filepath.Join(dir, "opendkim.conf")
	// Running as whoever runs the test (root in CI): no UserID, so the
	// key and the socket stay ours.
	if err := os.WriteFile(conf, []byte(strings.Join([]string{
		"Syslog no",
		"Mode s",
		"Domain src.test",
		"Selector sel",
		"KeyFile " + key,
		"Socket local:" + sock,
		"PidFile " + filepath.Join(dir, "opendkim.pid"),
		"Canonicalization relaxed/simple",
		"RequireSafeKeys false",
		"InternalHosts 127.0.0.1",
		"",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(opendkim, "-f", "-x", conf)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("opendkim: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("opendkim did not open %s: %s", sock, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	m := newMTA(t, "smtpd_milters = unix:"+sock, "milter_default_action = tempfail")
	m.start()
	m.send("alice@src.test", []string{"bob@dest.test"}, "Hello, signed world.\r\nSecond line.")
	var got string
	m.waitFor("delivery to bob@dest.test", func() bool {
		if d := m.delivered("bob@dest.test"); len(d) > 0 {
			got = d[0]
			return true
		}
		return false
	})
	if !strings.Contains(got, "DKIM-Signature:") {
		t.Fatalf("delivered message has no DKIM-Signature:\n%s\nopendkim: %s", got, stderr.String())
	}

	// The TXT record opendkim-genkey wrote, as DNS would serve it.
	txt, err := os.ReadFile(filepath.Join(dir, "sel.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var record strings.Builder
	for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(string(txt), -1) {
		record.WriteString(q[1])
	}
	msgFile := filepath.Join(dir, "delivered.eml")
	if err := os.WriteFile(msgFile, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	const verify = `
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
record = sys.argv[2].encode()
def dns(name, timeout=5):
    if name.rstrip(b'.').lower() == b'sel._domainkey.src.test':
        return record
    return None
ok = dkim.verify(msg, dnsfunc=dns)
print('verified' if ok else 'FAILED')
sys.exit(0 if ok else 1)
`
	out, err := exec.Command(python, "-c", verify, msgFile, record.String()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verified") {
		t.Fatalf("DKIM signature does not verify (%v): %s\nmessage:\n%s", err, out, got)
	}

	t.Logf("delivered and verified:\n%s", got)
	// The check can fail: a changed body no longer verifies.
	tampered := strings.Replace(got, "Second line.", "Second line!", 1)
	if err := os.WriteFile(msgFile, []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(python, "-c", verify, msgFile, record.String()).CombinedOutput(); err == nil {
		t.Fatalf("a tampered message verified: %s", out)
	}
}

// mustTool finds a program or fails the test, naming its Debian package.
func mustTool(t *testing.T, name, pkg string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/usr/bin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("%s is not installed (apt-get install %s); scripts/test.sh installs it", name, pkg)
	return ""
}
