// Package steer tests the steering of the queue end to end: the man
// page's delete-by-recipient pipeline run verbatim against sluice's
// mailq and postsuper, and actions racing live deliveries of a running
// daemon.
package steer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds sluice once and returns a directory that holds it and
// links to it named mailq, postqueue and postsuper, so a shell pipeline
// with that directory first on $PATH runs sluice's tools.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "sluice-steer-bin")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, "sluice"), "sluice/cmd/sluice").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		for _, n := range []string{"mailq", "postqueue", "postsuper"} {
			if err := os.Symlink("sluice", filepath.Join(binDir, n)); err != nil {
				buildErr = err
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sluice runs the sluice binary.
func sluice(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "sluice"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// The man page's pipeline, verbatim.
const pipeline = `mailq | tail -n +2 | grep -v '^ *(' | awk 'BEGIN { RS = "" } { if ($8 == "user@example.com" && $9 == "") print $1 }' | tr -d '*!' | postsuper -d -`

// seedSpool injects the reference's four messages to user@example.com
// (plain, held, with a second recipient, force-expired) and two others,
// and returns their IDs by name.
func seedSpool(t *testing.T, conf string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	inject := func(name string, args ...string) {
		out, errs, err := sluice(t, "Subject: "+name+"\n\nbody\n", append([]string{"inject", "-c", conf, "-f", "sender@src.test"}, args...)...)
		if err != nil {
			t.Fatalf("inject %s: %v\n%s", name, err, errs)
		}
		ids[name] = strings.TrimSpace(out)
	}
	refused := "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
	inject("plain", "-r", refused, "user@example.com")
	inject("held", "-q", "hold", "user@example.com")
	inject("second", "-r", refused, "user@example.com", "other@example.com")
	inject("expired", "-e", "-r", refused, "user@example.com")
	inject("other", "-r", refused, "other@example.com")
	inject("upper", "-r", refused, "USER@EXAMPLE.COM")
	return ids
}

// remaining names the seeded messages still queued, sorted.
func remaining(t *testing.T, root string, ids map[string]string) string {
	sp := spool.New(root)
	var out []string
	for name, id := range ids {
		if _, err := sp.Locate(id); err == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func runPipeline(t *testing.T, pathFirst, conf string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", pipeline)
	cmd.Env = append(os.Environ(), "PATH="+pathFirst+":/usr/sbin:/usr/bin:/sbin:/bin", "MAIL_CONFIG="+conf, "TZ=UTC")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	return errb.String(), err
}

func symbolic(s string, ids map[string]string) string {
	for name, id := range ids {
		s = strings.ReplaceAll(s, id, name)
	}
	return s
}

// TestSeedPipeline runs the pipeline verbatim on a sluice spool with
// sluice's mailq and postsuper, and the same pipeline with Postfix's own
// tools on an identical spool: both delete the same messages with the
// same messages on stderr. As in Postfix, the force-expired message is
// missed (the pipeline strips * and ! but not #); `sluice queue delete
// rcpt=user@example.com rcpts=1` then takes the mail to that one address
// alone, that one included, and compares the local part exactly as the
// pipeline does (the mail to USER@EXAMPLE.COM stays); rcpt_ci= takes
// that one too.
func TestSeedPipeline(t *testing.T) {
	oracle.Require(t)
	bin := binaries(t)

	slRoot := filepath.Join(oracle.TempDir(t, "steer-sl-"), "spool")
	slConf := oracle.PostfixConfig(t, slRoot)
	slIDs := seedSpool(t, slConf)
	slErr, err := runPipeline(t, bin, slConf)
	if err != nil {
		t.Fatalf("pipeline on sluice: %v\n%s", err, slErr)
	}

	pfRoot := filepath.Join(oracle.TempDir(t, "steer-pf-"), "spool")
	pfConf := oracle.PostfixConfig(t, pfRoot)
	pfIDs := seedSpool(t, pfConf)
	if err := oracle.GiveSpoolToPostfix(pfRoot); err != nil {
		t.Fatal(err)
	}
	pfErr, err := runPipeline(t, "/usr/sbin:/usr/bin", pfConf)
	if err != nil {
		t.Fatalf("pipeline on Postfix: %v\n%s", err, pfErr)
	}

	if got, want := remaining(t, slRoot, slIDs), "expired other second upper"; got != want {
		t.Errorf("after the pipeline on sluice, left: %s; want %s\nstderr:\n%s", got, want, slErr)
	}
	if got, want := remaining(t, pfRoot, pfIDs), remaining(t, slRoot, slIDs); got != want {
		t.Errorf("Postfix's pipeline left %s, sluice's %s", got, want)
	}
	// Postfix's mailq warns that the mail system is down; the rest of
	// stderr (postsuper's) must be the same.
	var pfLines []string
	for _, l := range strings.Split(symbolic(pfErr, pfIDs), "\n") {
		if !strings.Contains(l, "Mail system is down") {
			pfLines = append(pfLines, l)
		}
	}
	// mailq lists in directory order, which differs between two spools,
	// so postsuper's per-message lines may come in another order.
	if w, g := sortedLines(strings.Join(pfLines, "\n")), sortedLines(symbolic(slErr, slIDs)); w != g {
		t.Errorf("stderr differs:\n%s", oracle.Diff(w, g))
	}
	if !strings.Contains(slErr, "postsuper: Deleted: 2 messages") {
		t.Errorf("stderr: %s", slErr)
	}

	out, errs, err := sluice(t, "", "queue", "delete", "-c", slConf, "rcpt=user@example.com", "rcpts=1", "--yes")
	if err != nil {
		t.Fatalf("sluice queue delete: %v\n%s", err, errs)
	}
	if got, want := remaining(t, slRoot, slIDs), "other second upper"; got != want {
		t.Errorf("after sluice queue delete, left: %s; want %s\n%s", got, want, out)
	}
	out, errs, err = sluice(t, "", "queue", "delete", "-c", slConf, "rcpt_ci=user@example.com", "rcpts=1", "--yes")
	if err != nil {
		t.Fatalf("sluice queue delete rcpt_ci=: %v\n%s", err, errs)
	}
	if got, want := remaining(t, slRoot, slIDs), "other second"; got != want {
		t.Errorf("after sluice queue delete rcpt_ci=, left: %s; want %s\n%s", got, want, out)
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
