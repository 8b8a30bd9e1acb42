package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/internal/audit"
	"sluice/internal/suspend"
)

// Without a daemon the tools edit the suspensions file, and every change
// (suspensions, postsuper, sluice queue actions) goes to the audit log.
func TestSuspendOnFilesAndAudit(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changes are for root and the mail owner")
	}
	conf := queueEnv(t)
	a := mustInject(t, conf, "-f", "alice@src.test", "user@mx.example.com")
	spoolDir := filepath.Join(filepath.Dir(conf), "spool")

	if _, errs, code := run(t, "", "queue", "suspend", "-c", conf, "queue=deferred", "--for", "2h"); code != 2 || !strings.Contains(errs, "cannot select by queue") {
		t.Errorf("suspend by queue: %d %q", code, errs)
	}
	if _, errs, code := run(t, "", "queue", "suspend", "-c", conf, "domain=*.example.com"); code != 2 {
		t.Errorf("suspend without --for: %d %q", code, errs)
	}
	out, errs, code := run(t, "", "queue", "suspend", "-c", conf, "domain=*.example.com", "--for", "2h", "--reason", "mx maintenance")
	if code != 0 || !strings.HasPrefix(out, "suspension 1: domain=*.example.com suspended until ") {
		t.Fatalf("suspend: %d %q %q", code, out, errs)
	}
	out, _, _ = run(t, "", "queue", "suspensions", "-c", conf, "--json")
	var list []suspend.Suspension
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Reason != "mx maintenance" || list[0].User != "uid=0" {
		t.Fatalf("suspensions: %q %v", out, err)
	}
	if out, _, _ := run(t, "", "queue", "suspensions", "-c", conf); !strings.Contains(out, "domain=*.example.com") || !strings.Contains(out, "mx maintenance") {
		t.Errorf("suspensions text: %q", out)
	}
	if _, err := os.Stat(filepath.Join(spoolDir, suspend.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := run(t, "", "queue", "resume", "-c", conf, "7"); code == 0 {
		t.Errorf("resume of no such suspension: %q", errs)
	}
	if out, _, code := run(t, "", "queue", "resume", "-c", conf, "1"); code != 0 || out != "suspension 1 resumed: domain=*.example.com\n" {
		t.Errorf("resume: %d %q", code, out)
	}
	if out, _, _ := run(t, "", "queue", "suspensions", "-c", conf); out != "no suspension in force\n" {
		t.Errorf("after resume: %q", out)
	}
	if _, errs, code := run(t, "", "postsuper", "-c", conf, "-h", a); code != 0 {
		t.Fatalf("postsuper -h: %q", errs)
	}
	if _, errs, code := run(t, "", "queue", "release", "-c", conf, "--yes", "queue=hold"); code != 0 {
		t.Fatalf("queue release: %q", errs)
	}

	out, _, code = run(t, "", "queue", "audit", "-c", conf, "--json")
	var got []audit.Entry
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e audit.Entry
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	want := []struct{ action, tool string }{{"suspend", "sluice queue suspend"}, {"resume", "sluice queue resume"}, {"hold", "postsuper"}, {"release", "sluice queue release"}}
	if code != 0 || len(got) != len(want) {
		t.Fatalf("audit: %d %q", code, out)
	}
	for i, w := range want {
		if e := got[i]; e.Action != w.action || e.Tool != w.tool || e.Interface != audit.CLI || e.User != "uid=0" {
			t.Errorf("entry %d: %+v, want %+v", i, e, w)
		}
	}
	if e := got[2]; len(e.IDs) != 1 || e.IDs[0] != a || e.Matched != 1 || e.Changed != 1 {
		t.Errorf("postsuper entry: %+v", e)
	}
	out, _, _ = run(t, "", "queue", "audit", "-c", conf)
	if !strings.Contains(out, "uid=0 via cli (postsuper): hold "+a+": matched 1, changed 1, skipped 0") {
		t.Errorf("audit text:\n%s", out)
	}
	if out, _, _ := run(t, "", "queue", "audit", "-c", conf, "--since", "0s"); out != "" {
		t.Errorf("--since 0s: %q", out)
	}
	if fi, err := os.Stat(filepath.Join(spoolDir, audit.FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log: %v %v", fi, err)
	}
}
