package qshape_test

import (
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/qshape/qshapetest"
)

var update = flag.Bool("update", false, "rewrite the golden files from Postfix's qshape (needs root and /usr/sbin/qshape)")

// postfixQshape is the oracle.
const postfixQshape = "/usr/sbin/qshape"

// goldenNow is the clock of the golden runs: any time works, since a
// spool is built with ages measured back from the clock it is read with.
var goldenNow = time.Date(2026, 11, 29, 15, 0, 0, 0, time.UTC)

// cases are qshape command lines over the sample spool; $ROOT is the
// spool's root. Relative queue names are under the root.
var cases = []struct {
	name string
	args []string
}{
	{"deferred", []string{"deferred"}},
	{"s-deferred", []string{"-s", "deferred"}},
	{"p-deferred", []string{"-p", "deferred"}},
	{"p-m1-deferred", []string{"-p", "-m", "1", "deferred"}},
	{"p-m2-s-deferred", []string{"-p", "-m", "2", "-s", "deferred"}},
	{"m0-p-deferred", []string{"-m", "0", "-p", "deferred"}},
	{"b14-deferred", []string{"-b", "14", "deferred"}},
	{"t2-b6-deferred", []string{"-t", "2", "-b", "6", "deferred"}},
	{"l-t60-b8-deferred", []string{"-l", "-t", "60", "-b", "8", "deferred"}},
	{"l-deferred", []string{"-l", "deferred"}},
	{"l-t2.5-b15-w150", []string{"-l", "-t", "2.5", "-b", "15", "-w", "150", "deferred"}},
	{"w120-deferred", []string{"-w", "120", "deferred"}},
	{"w60-deferred", []string{"-w", "60", "deferred"}},
	{"w100.5-p-m1-deferred", []string{"-w", "100.5", "-p", "-m", "1", "deferred"}},
	{"default", nil},
	{"hold", []string{"hold"}},
	{"s-hold", []string{"-s", "hold"}},
	{"t1-b4-three-queues", []string{"-t", "1", "-b", "4", "deferred", "hold", "incoming"}},
	{"copy", []string{"copy"}},
	{"weird", []string{"weird"}},
	{"s-weird", []string{"-s", "weird"}},
	{"p-m1-weird", []string{"-p", "-m", "1", "weird"}},
	{"b1-deferred", []string{"-b", "1", "deferred"}},
	{"b0.5-s-deferred", []string{"-b", "0.5", "-s", "deferred"}},
	{"b3.5-deferred", []string{"-b", "3.5", "deferred"}},
	{"t0.1-b24-w200", []string{"-t", "0.1", "-b", "24", "-w", "200", "deferred"}},
	{"combo", []string{"-s", "-p", "-m", "1", "-b", "12", "-t", "3", "-w", "100", "deferred", "hold"}},
	{"raw", []string{"deferred/R"}},
	{"s-raw", []string{"-s", "deferred/R"}},
	{"absolute", []string{"$ROOT/deferred", "$ROOT/active"}},
	{"big-headings", []string{"-b", "66", "-t", "0.1", "-w", "3000", "incoming"}},
	{"clustered", []string{"-sp", "-m1", "deferred"}},
	{"junk-numbers", []string{"-t", "5abc", "-b", "10xyz", "-w", "9e1", "deferred"}},
	{"dashdash", []string{"--", "deferred"}},
	{"options-end", []string{"deferred", "-s"}},
	{"nosuch", []string{"nosuch"}},
	{"twice", []string{"-s", "active", "active"}},
}

func expand(args []string, root string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "$ROOT", root)
	}
	return out
}

// ours runs the package on args the way the command does.
func ours(t *testing.T, root string, args []string, now time.Time) string {
	t.Helper()
	flags, queues, bad := qshape.ParseArgs(expand(args, root))
	if bad != 0 {
		t.Fatalf("bad option %c", bad)
	}
	if len(queues) == 0 {
		queues = qshape.DefaultQueues()
	}
	for i, q := range queues {
		if !strings.HasPrefix(q, "/") {
			queues[i] = root + "/" + q
		}
	}
	opt := qshape.FromFlags(flags, false)
	opt.Now = func() time.Time { return now }
	var out bytes.Buffer
	if err := qshape.Run(opt, queues, &out); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// bounds returns the bucket bounds (minutes) of the options args give.
func bounds(args []string) []float64 {
	flags, _, _ := qshape.ParseArgs(args)
	o := qshape.FromFlags(flags, false)
	var b []float64
	t := o.Tick.F
	for i := 1; float64(i) < o.Buckets.F; i++ {
		b = append(b, t)
		if o.Linear {
			t += o.Tick.F
		} else {
			t *= 2
		}
	}
	return b
}

// TestAgesAwayFromBounds keeps the golden and oracle runs stable: every
// message is at least 10 s from a bucket bound of every case, so a clock
// a little late does not move it.
func TestAgesAwayFromBounds(t *testing.T) {
	for _, c := range cases {
		for _, bound := range bounds(c.args) {
			for _, age := range qshapetest.Ages() {
				if math.Abs(age-bound) < 10.0/60 {
					t.Errorf("%s: age %v min is within 10 s of the bound %v", c.name, age, bound)
				}
			}
		}
	}
}

func TestGolden(t *testing.T) {
	root := t.TempDir()
	if err := qshapetest.Build(root, goldenNow); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ours(t, root, c.args, goldenNow)
			want, err := os.ReadFile(filepath.Join("testdata", c.name+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("qshape %s:\n got:\n%s\nwant:\n%s", strings.Join(c.args, " "), got, want)
			}
		})
	}
}

// TestAgainstPostfix runs Postfix's qshape on a spool built now and
// compares its output, with rows that tie in Postfix's order put in ours,
// to ours and to the golden file. With -update it rewrites the golden
// files from Postfix's output.
func TestAgainstPostfix(t *testing.T) {
	root, cfg := oracleSetup(t)
	now := time.Now()
	if err := qshapetest.Build(root, now); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			theirs := runPostfix(t, cfg, expand(c.args, root))
			mine := ours(t, root, c.args, now)
			norm := NormalizeTies(theirs, mine)
			if norm != mine {
				t.Errorf("qshape %s differs from Postfix's:\n ours:\n%s\nPostfix (ties in our order):\n%s\nPostfix as printed:\n%s",
					strings.Join(c.args, " "), mine, norm, theirs)
			}
			golden := filepath.Join("testdata", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(norm), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want, err := os.ReadFile(golden); err != nil || string(want) != norm {
				t.Errorf("Postfix's output differs from %s (err %v); run go test -run TestAgainstPostfix -update", golden, err)
			}
		})
	}
}

// oracleSetup returns a spool root and a configuration directory whose
// main.cf names it, or skips the test when Postfix's qshape cannot run.
func oracleSetup(t *testing.T) (root, cfg string) {
	t.Helper()
	if _, err := os.Stat(postfixQshape); err != nil {
		t.Skip("Postfix's qshape is not installed")
	}
	if os.Geteuid() != 0 {
		t.Skip("Postfix's qshape needs root to read a queue")
	}
	dir := t.TempDir()
	root, cfg = filepath.Join(dir, "spool"), filepath.Join(dir, "etc")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "main.cf"), []byte("queue_directory = "+root+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, cfg
}

func runPostfix(t *testing.T, cfg string, args []string) string {
	t.Helper()
	cmd := exec.Command(postfixQshape, append([]string{"-c", cfg}, args...)...)
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	return stdout.String()
}

// NormalizeTies puts the rows of Postfix's table that tie (equal totals,
// equal name lengths), which Postfix prints in Perl's hash order, in the
// order of the same rows in ref, our table. A group is reordered only when
// it holds the same rows as ref at the same place; anything else is left
// as printed, so the comparison still fails. Every row, heading included,
// has the same width (a name with a newline in it stays inside its
// padded column), which is how rows are found. Rows whose name is cut
// short ("+..." or ".+...") do not show their length; those with equal
// totals count as one group.
func NormalizeTies(theirs, ref string) string {
	width := strings.IndexByte(theirs, '\n') + 1
	if width <= 0 || len(theirs)%width != 0 || len(ref) != len(theirs) {
		return theirs
	}
	var rows, refRows []string
	for i := 0; i < len(theirs); i += width {
		rows = append(rows, theirs[i:i+width])
		refRows = append(refRows, ref[i:i+width])
	}
	dw := -1
	if len(rows) > 1 {
		for _, r := range rows[1:] {
			if i := strings.Index(r, "TOTAL "); i >= 0 {
				dw = i + len("TOTAL")
				break
			}
		}
	}
	if dw < 0 {
		return theirs
	}
	key := func(r string) string {
		f := strings.Fields(r[dw:])
		name := strings.TrimLeft(r[:dw], " ")
		if len(f) == 0 {
			return ""
		}
		if len(name) == dw && (name[0] == '+' || strings.HasPrefix(name, ".+")) {
			return f[0] + " cut"
		}
		return fmt.Sprintf("%s %d", f[0], len(name))
	}
	sorted := func(rs []string) string {
		c := append([]string(nil), rs...)
		sort.Strings(c)
		return strings.Join(c, "")
	}
	for i := 1; i < len(rows); {
		k := key(rows[i])
		j := i + 1
		for k != "" && j < len(rows) && key(rows[j]) == k {
			j++
		}
		if j-i > 1 && sorted(rows[i:j]) == sorted(refRows[i:j]) {
			copy(rows[i:j], refRows[i:j])
		}
		i = j
	}
	return strings.Join(rows, "")
}
