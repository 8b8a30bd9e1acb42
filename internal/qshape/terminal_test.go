package qshape_test

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/qshape/qshapetest"
)

// xtermClear is what clear(1) prints for TERM=xterm.
const xtermClear = "\x1b[H\x1b[2J\x1b[3J"

// terminalCases use -N and -n, which act only on a terminal.
var terminalCases = [][]string{
	{"-N", "1", "copy"},
	{"-N", "2", "-n", "2", "copy"},
	{"-N", "1", "-n", "3", "-s", "hold", "active", "incoming"},
	{"-N", "1000", "-n", "1", "active"},
	{"-N", "abc", "hold"},
	{"-n", "0", "-N", "-5", "hold"},
	{"-n", "2.5", "-N", "3", "-p", "-m", "1", "copy", "hold"},
	{"-N", "10", "-n", "0", "deferred"},
	{"-N", "25", "-n", "0", "-s", "weird"},
	{"hold"}, // terminal defaults: -N 1000 -n 20, so one clear before the table
}

func oursOnTerminal(t *testing.T, root string, args []string, now time.Time) string {
	t.Helper()
	flags, queues, _ := qshape.ParseArgs(args)
	for i, q := range queues {
		queues[i] = root + "/" + q
	}
	opt := qshape.FromFlags(flags, true)
	opt.Now = func() time.Time { return now }
	opt.Clear = xtermClear
	var out bytes.Buffer
	if err := qshape.Run(opt, queues, &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestTerminalAgainstPostfix runs Postfix's qshape with its output on a
// pseudo-terminal (script(1)) and compares the interim tables.
func TestTerminalAgainstPostfix(t *testing.T) {
	root, cfg := oracleSetup(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) is not installed")
	}
	now := time.Now()
	if err := qshapetest.Build(root, now); err != nil {
		t.Fatal(err)
	}
	for _, args := range terminalCases {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			// Its warnings go to stderr, which would share the terminal.
			cmdline := postfixQshape + " -c " + cfg + " " + shellQuote(args) + " 2>/dev/null"
			cmd := exec.Command("script", "-qec", cmdline, "/dev/null")
			cmd.Env = append(os.Environ(), "TERM=xterm", "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
			raw, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v", cmdline, err)
			}
			theirs := strings.ReplaceAll(string(raw), "\r\n", "\n")
			mine := oursOnTerminal(t, root, args, now)
			if norm := normalizeScreens(theirs, mine); norm != mine {
				t.Errorf("qshape %s on a terminal:\n ours:\n%q\nPostfix:\n%q", strings.Join(args, " "), mine, theirs)
			}
		})
	}
}

// normalizeScreens applies NormalizeTies to each table between clear
// sequences.
func normalizeScreens(theirs, ref string) string {
	a, b := strings.Split(theirs, xtermClear), strings.Split(ref, xtermClear)
	if len(a) != len(b) {
		return theirs
	}
	for i := range a {
		a[i] = NormalizeTies(a[i], b[i])
	}
	return strings.Join(a, xtermClear)
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// Without a terminal -N and -n do nothing: the golden table, once.
func TestNoTerminalIgnoresBatchOptions(t *testing.T) {
	root := t.TempDir()
	if err := qshapetest.Build(root, goldenNow); err != nil {
		t.Fatal(err)
	}
	got := ours(t, root, []string{"-N", "1", "-n", "2", "deferred"}, goldenNow)
	want, err := os.ReadFile("testdata/deferred.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// -N between 0 and 1 is a modulus of zero, which stops the script at its
// first message.
func TestBatchModulusZero(t *testing.T) {
	root := t.TempDir()
	if err := qshapetest.Build(root, goldenNow); err != nil {
		t.Fatal(err)
	}
	flags, _, _ := qshape.ParseArgs([]string{"-N", "0.5"})
	opt := qshape.FromFlags(flags, true)
	if err := qshape.Run(opt, []string{root + "/hold"}, new(bytes.Buffer)); err == nil || !strings.Contains(err.Error(), "modulus zero") {
		t.Errorf("Run = %v, want the modulus error", err)
	}
	if err := qshape.Run(opt, []string{root + "/nosuch"}, new(bytes.Buffer)); err != nil {
		t.Errorf("empty queue: %v", err)
	}
}
