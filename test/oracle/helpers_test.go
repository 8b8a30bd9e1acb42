// Package oracle_test is sluice's oracle suite: Postfix 3.7's own tools
// and sluice's tools read the same spools and must print the same bytes.
// Spools come from both sides: written by sluice (inject and the spool
// package) and written by real Postfix instances. sluice's tools run
// in-process through cli.Main, by the names they answer to.
package oracle_test

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"testing"

	"sluice/internal/cli"
	"sluice/internal/oracle"
)

// testZone is the time zone of the whole run, Postfix's tools included:
// not UTC, so a tool that ignores the local zone shows up.
const testZone = "Europe/Berlin"

func TestMain(m *testing.M) {
	// Time formatting reads the zone once per process, so fix it before
	// anything formats a time. MAIL_CONFIG must not leak into the tools.
	os.Unsetenv("MAIL_CONFIG")
	if _, err := os.Stat("/usr/share/zoneinfo/" + testZone); err == nil {
		os.Setenv("TZ", testZone)
	} else {
		os.Setenv("TZ", "UTC")
	}
	os.Exit(m.Run())
}

type result struct {
	stdout, stderr string
	status         int
}

// sluice runs one of sluice's tools in-process, argv[0] naming it. A
// panic in the tool is a test failure, not a crash of the suite.
func sluice(t *testing.T, stdin string, argv ...string) (r result) {
	t.Helper()
	var out, errb bytes.Buffer
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("sluice %s panicked: %v\n%s", strings.Join(argv, " "), p, debug.Stack())
			r = result{stdout: out.String(), stderr: errb.String(), status: -1}
		}
	}()
	st := cli.Main(argv, strings.NewReader(stdin), &out, &errb)
	return result{stdout: out.String(), stderr: errb.String(), status: st}
}

// postfix runs the Postfix program argv[0] with MAIL_CONFIG=cfg.
func postfix(t *testing.T, cfg string, argv ...string) result {
	t.Helper()
	r := oracle.Run(t, cfg, nil, argv[0], argv[1:]...)
	return result{stdout: string(r.Stdout), stderr: string(r.Stderr), status: r.Status}
}

// compareOpts says what, besides standard output and the exit status,
// must agree.
type compareOpts struct {
	canon  func(string) string // applied to both outputs before comparing
	stderr bool                // standard error must agree too
}

// same runs argv with Postfix's tool and with sluice's, on the spool
// that cfg names, and fails unless they agree. It returns Postfix's
// result, for checks that the case exercised what it means to.
func same(t *testing.T, cfg string, o compareOpts, argv ...string) result {
	t.Helper()
	want := postfix(t, cfg, argv...)
	got := sluice(t, "", argv...)
	wantOut, gotOut := want.stdout, got.stdout
	if o.canon != nil {
		wantOut, gotOut = o.canon(wantOut), o.canon(gotOut)
	}
	if d := oracle.Diff(wantOut, gotOut); d != "" {
		t.Errorf("%s: standard output differs from Postfix's\n%s\nsluice stderr: %s", strings.Join(argv, " "), d, got.stderr)
	}
	if want.status != got.status {
		t.Errorf("%s: exit status %d, Postfix %d (sluice stderr: %q; Postfix stderr: %q)", strings.Join(argv, " "), got.status, want.status, got.stderr, want.stderr)
	}
	if o.stderr {
		if d := oracle.Diff(want.stderr, got.stderr); d != "" {
			t.Errorf("%s: standard error differs from Postfix's\n%s", strings.Join(argv, " "), d)
		}
	}
	return want
}

// inject runs sluice inject with -c cfg and returns the new queue IDs.
func inject(t *testing.T, cfg, msg string, args ...string) []string {
	t.Helper()
	r := sluice(t, msg, append([]string{"inject", "-c", cfg}, args...)...)
	if r.status != 0 {
		t.Fatalf("inject %s: status %d: %s", strings.Join(args, " "), r.status, r.stderr)
	}
	return strings.Fields(r.stdout)
}

// jsonMessage is one line of postqueue -j.
type jsonMessage struct {
	QueueName    string `json:"queue_name"`
	QueueID      string `json:"queue_id"`
	ArrivalTime  int64  `json:"arrival_time"`
	MessageSize  int64  `json:"message_size"`
	ForcedExpire bool   `json:"forced_expire"`
	Sender       string `json:"sender"`
	Recipients   []struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	} `json:"recipients"`
}

// queueJSON parses postqueue -j output.
func queueJSON(t *testing.T, out string) []jsonMessage {
	t.Helper()
	var msgs []jsonMessage
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m jsonMessage
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("postqueue -j line %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// postcatFlags are the postcat option sets compared for every message.
var postcatFlags = [][]string{
	{"-q"}, {"-qv"}, {"-bhq"}, {"-eq"}, {"-hq"}, {"-bq"}, {"-beq"},
	{"-oq"}, {"-dq"}, {"-odq"}, {"-rq"}, {"-oqv"}, {"-odrq"},
}

// qshapeArgs are the qshape invocations compared for every spool.
var qshapeArgs = [][]string{
	{},
	{"deferred"},
	{"-s", "deferred"},
	{"-p", "-m", "1", "deferred"},
	{"-p", "deferred"},
	{"-s", "-p", "-m", "1", "deferred", "hold"},
	{"hold"},
	{"incoming", "active", "deferred", "hold"},
	{"-b", "14", "deferred"},
	{"-t", "2", "-b", "6", "deferred"},
	{"-l", "-t", "60", "-b", "8", "deferred"},
	{"-w", "120", "deferred"},
	{"maildrop"},
}

// compareQueue compares the listing tools on the spool cfg names:
// postqueue -p and -j, mailq, and qshape in its forms.
func compareQueue(t *testing.T, cfg string) {
	t.Helper()
	t.Run("postqueue -p", func(t *testing.T) { same(t, cfg, compareOpts{}, "postqueue", "-c", cfg, "-p") })
	t.Run("postqueue -j", func(t *testing.T) { same(t, cfg, compareOpts{}, "postqueue", "-c", cfg, "-j") })
	t.Run("mailq -C", func(t *testing.T) { same(t, cfg, compareOpts{}, "mailq", "-C", cfg) })
	for _, args := range qshapeArgs {
		args := args
		t.Run(strings.TrimSpace("qshape "+strings.Join(args, " ")), func(t *testing.T) {
			same(t, cfg, compareOpts{canon: oracle.QshapeCanonical}, append([]string{"qshape", "-c", cfg}, args...)...)
		})
	}
}

// comparePostcat compares postcat in every flag set on each message,
// named by labels (ID → what the message is).
func comparePostcat(t *testing.T, cfg string, labels map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(labels))
	for id := range labels {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return labels[ids[i]] < labels[ids[j]] })
	for _, flags := range postcatFlags {
		for _, id := range ids {
			argv := append(append([]string{"postcat", "-c", cfg}, flags...), id)
			t.Run("postcat "+strings.Join(flags, " ")+" "+labels[id], func(t *testing.T) {
				same(t, cfg, compareOpts{}, argv...)
			})
		}
	}
	t.Run("postcat -q missing ID", func(t *testing.T) {
		same(t, cfg, compareOpts{stderr: true}, "postcat", "-c", cfg, "-q", "NOSUCH12345")
	})
	t.Run("postcat -q invalid ID", func(t *testing.T) {
		same(t, cfg, compareOpts{stderr: true}, "postcat", "-c", cfg, "-q", "bad/id")
	})
}

// mustContain fails unless Postfix's own output shows the feature a case
// exists to exercise, so a fixture that silently lost it cannot pass.
func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("fixture check: Postfix's %s lacks %q; the case does not test what it should:\n%s", what, w, out)
		}
	}
}
