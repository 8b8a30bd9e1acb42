package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/internal/qshape/qshapetest"
)

// qshapeSpool builds the qshape sample spool with ages measured back from
// the real clock (the command reads it) and a configuration directory
// naming it.
func qshapeSpool(t *testing.T) (cfg, root string) {
	t.Helper()
	dir := t.TempDir()
	cfg, root = filepath.Join(dir, "etc"), filepath.Join(dir, "spool")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "main.cf"), []byte("queue_directory = "+root+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := qshapetest.Build(root, time.Now()); err != nil {
		t.Fatal(err)
	}
	return cfg, root
}

func runQshapeEnv(args []string, getenv func(string) string) (stdout, stderr string, status int) {
	var out, errb bytes.Buffer
	env := &Env{Name: "qshape", Args: args, Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: getenv}
	status = runQshape(env)
	return out.String(), errb.String(), status
}

func noEnv(string) string { return "" }

// The command finds relative queues through -c or MAIL_CONFIG and prints
// the golden tables (made from Postfix's qshape, see internal/qshape).
func TestQshapeCommandGolden(t *testing.T) {
	cfg, root := qshapeSpool(t)
	mailConfig := func(k string) string {
		if k == "MAIL_CONFIG" {
			return cfg
		}
		return ""
	}
	tests := []struct {
		golden string
		args   []string
		getenv func(string) string
	}{
		{"default", []string{"-c", cfg}, noEnv},
		{"default", nil, mailConfig},
		{"deferred", []string{"-c", cfg, "deferred"}, noEnv},
		{"s-deferred", []string{"-s", "deferred"}, mailConfig},
		{"p-m1-deferred", []string{"-c", cfg, "-p", "-m", "1", "deferred"}, noEnv},
		{"l-t60-b8-deferred", []string{"-c" + cfg, "-lt60", "-b8", "deferred"}, noEnv},
		{"t1-b4-three-queues", []string{"-c", cfg, "-t", "1", "-b", "4", "deferred", "hold", "incoming"}, noEnv},
		{"copy", []string{"-c", cfg, "./copy"}, noEnv},
		// Absolute queues need no configuration: -c names none here.
		{"absolute", []string{"-c", "/nonexistent", root + "/deferred", root + "/active"}, noEnv},
		{"clustered", []string{"-c", cfg, "-sp", "-m1", "deferred"}, noEnv},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("..", "qshape", "testdata", tc.golden+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			out, errs, status := runQshapeEnv(tc.args, tc.getenv)
			if status != 0 || out != string(want) {
				t.Errorf("qshape %q: status %d, stderr %q\n got:\n%s\nwant:\n%s", tc.args, status, errs, out, want)
			}
		})
	}
}

func TestQshapeUsageAndErrors(t *testing.T) {
	cfg, _ := qshapeSpool(t)
	tests := []struct {
		name       string
		args       []string
		status     int
		stderrHas  []string
		stdoutWant string
	}{
		{"help", []string{"-h"}, 255, []string{"Usage: qshape [ -s ]", "listed in byte order of the"}, ""},
		{"help after flags", []string{"-s", "-h", "deferred"}, 255, []string{"Usage: qshape"}, ""},
		{"long help", []string{"--help"}, 255, []string{"Usage: qshape"}, ""},
		{"unknown option", []string{"-x", "deferred"}, 255, []string{"qshape: Unknown option: x\nUsage: qshape"}, ""},
		{"unknown after help", []string{"-h", "-x"}, 255, []string{"Usage: qshape"}, ""},
		{"bad config", []string{"-c", "/nonexistent", "deferred"}, 1, []string{"qshape: fatal: ", "/nonexistent/main.cf"}, ""},
		{"-c without a value", []string{"-c"}, 1, []string{"/main.cf"}, ""},
		{"missing queue", []string{"-c", cfg, "nosuch"}, 0, []string{"qshape: warning: can't stat ", "nosuch"},
			"                                         T  5 10 20 40 80 160 320 640 1280 1280+\n" +
				"                                  TOTAL  0  0  0  0  0  0   0   0   0    0     0\n"},
		{"corrupt files warn", []string{"-c", cfg, "deferred/R"}, 0, []string{"RTRUNC01: corrupt queue file", "RNOXREC1: corrupt queue file: content not followed by the extracted segment", "RZERO001: corrupt queue file: no end record"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, status := runQshapeEnv(tc.args, noEnv)
			if status != tc.status {
				t.Errorf("status %d, want %d (stderr %q)", status, tc.status, errs)
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(errs, s) {
					t.Errorf("stderr %q lacks %q", errs, s)
				}
			}
			if tc.stdoutWant != "" && out != tc.stdoutWant {
				t.Errorf("stdout:\n%s\nwant:\n%s", out, tc.stdoutWant)
			}
			if tc.status != 0 && out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
	if strings.Contains(qshapeUsage, "\t\t") || !strings.HasSuffix(qshapeUsage, "\n") {
		t.Error("usage text layout")
	}
}

// The help text names every option the parser accepts.
func TestQshapeUsageCoversOptions(t *testing.T) {
	for _, c := range "lhcpswbtmnN" {
		opt := "-" + string(c)
		if c == 'l' || c == 'h' || c == 'p' || c == 's' {
			opt = "[ -" + string(c) + " ]"
		}
		if c == 'h' {
			continue // -h prints the text itself
		}
		if !strings.Contains(qshapeUsage, opt) {
			t.Errorf("usage does not mention %s", opt)
		}
	}
}
