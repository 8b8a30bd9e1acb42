package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseAndExpand(t *testing.T) {
	text := `# comment
myhostname = mx.example.com
   # indented comment
mydomain = example.com
myorigin = $mydomain
relayhost = [${mydomain}]:587
mynetworks = 127.0.0.0/8,
    10.0.0.0/8
    192.168.0.0/16
cond = ${relayhost?relayed}${nosuch:fallback}
maximal_queue_lifetime = 2
minimal_backoff_time = 90s
myhostname = later.example.com
`
	c, err := Parse(strings.NewReader(text), "main.cf")
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]string{
		"myhostname":             "later.example.com", // the last setting wins
		"myorigin":               "example.com",
		"relayhost":              "[example.com]:587",
		"mynetworks":             "127.0.0.0/8, 10.0.0.0/8 192.168.0.0/16",
		"cond":                   "relayedfallback",
		"hash_queue_names":       "deferred, defer", // a default
		"queue_directory":        "/var/spool/sluice",
		"maximal_queue_lifetime": "2",
	}
	for name, want := range checks {
		if got := c.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if got := c.List("mynetworks"); len(got) != 3 || got[2] != "192.168.0.0/16" {
		t.Errorf("List(mynetworks) = %q", got)
	}
	// A bare number takes the parameter's unit: days for lifetimes.
	if d, err := c.Duration("maximal_queue_lifetime"); err != nil || d != 48*time.Hour {
		t.Errorf("maximal_queue_lifetime = %v, %v", d, err)
	}
	if d, err := c.Duration("minimal_backoff_time"); err != nil || d != 90*time.Second {
		t.Errorf("minimal_backoff_time = %v, %v", d, err)
	}
	if u := c.Unknown(); len(u) != 1 || u[0] != "cond (line 10)" {
		t.Errorf("Unknown = %q", u)
	}
	c.Set("relayhost", "")
	if got := c.Get("cond"); got != "fallback" {
		t.Errorf("after Set, cond = %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, text := range []string{"  continued = without a start\n", "no equals sign\n", "two words = x\n"} {
		if _, err := Parse(strings.NewReader(text), "main.cf"); err == nil || !strings.Contains(err.Error(), "main.cf, line 1") {
			t.Errorf("Parse(%q) = %v", text, err)
		}
	}
	c, _ := Parse(strings.NewReader("minimal_backoff_time = soon\nhash_queue_depth = x\n"), "main.cf")
	if _, err := c.Duration("minimal_backoff_time"); err == nil {
		t.Error("bad time accepted")
	}
	if _, err := c.Int("hash_queue_depth"); err == nil {
		t.Error("bad number accepted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); err == nil {
		t.Error("a directory without main.cf loaded")
	}
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = a.example\n"), 0o644)
	c, err := Load(dir)
	if err != nil || c.IsPostfix() || c.Get("queue_directory") != "/var/spool/sluice" {
		t.Fatalf("sluice config: %v %v %q", c, err, c.Get("queue_directory"))
	}
	// A Postfix configuration directory (it has master.cf) gets Postfix's
	// spool as its default.
	os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644)
	c, err = Load(dir)
	if err != nil || !c.IsPostfix() || c.Get("queue_directory") != "/var/spool/postfix" {
		t.Fatalf("Postfix config: %v %q", err, c.Get("queue_directory"))
	}
}
