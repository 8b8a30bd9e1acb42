package postcat_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/cli"
)

var update = flag.Bool("update", false, "rewrite testdata/queue from the builders and testdata/golden from /usr/sbin/postcat")

const realPostcat = "/usr/sbin/postcat"

// A case is one postcat command line. In args, "@NAME" stands for the
// queue file testdata/queue/NAME and "@conf" for the configuration
// directory: testdata/conf (whose queue_directory does not exist), or,
// for spool cases, one whose queue_directory is a spool built for -q.
type tcase struct {
	name  string
	args  []string
	stdin string // "", "file:NAME" (a seekable file) or "pipe:NAME"
	tz    string // TZ for both tools; UTC when empty
	spool bool
}

func combos(file string, flagSets ...string) []tcase {
	var cs []tcase
	for _, f := range flagSets {
		args := []string{"-c", "@conf"}
		name := file
		if f != "" {
			args = append(args, strings.Fields(f)...)
			name += "_" + strings.NewReplacer(" ", "", "-", "").Replace(f)
		}
		cs = append(cs, tcase{name: name, args: append(args, "@"+file)})
	}
	return cs
}

var (
	fullFlags  = []string{"", "-v", "-o", "-d", "-od", "-ov", "-h", "-b", "-e", "-bh", "-eh", "-be", "-r", "-rv", "-orv", "-dh", "-ob", "-dv"}
	shortFlags = []string{"", "-v", "-o", "-h", "-b", "-e", "-rv"}
)

// goldenCases are the cases with a golden file.
func goldenCases() []tcase {
	var cs []tcase
	for _, f := range []string{"sample", "maildrop", "delivered", "longline", "extracted", "milter", "continued", "noheaders", "eightbit"} {
		cs = append(cs, combos(f, fullFlags...)...)
	}
	for _, f := range []string{"alltypes", "attrs", "times", "size-garbage", "size-one", "size-neg", "size-past", "size-two",
		"trunc-data", "trunc-envelope", "trunc-length", "trunc-noend", "len-bits", "len-illegal", "len-wrap", "len-huge",
		"garbled", "empty", "notqueue", "nulfirst", "ptr-malformed", "ptr-negative", "ptr-trailing", "ptr-empty",
		"ptr-pasteof", "ptr-midrecord", "ptr-overflow"} {
		cs = append(cs, combos(f, shortFlags...)...)
	}
	cs = append(cs, combos("alltypes", "-dv", "-od")...)
	cs = append(cs, combos("ptr-loop", "", "-r", "-o")...)
	cs = append(cs, combos("sample", "-s 97", "-o -s 261", "-s 1", "-s 563", "-s 565", "-s 99999", "-e -s 563", "-s 0")...)
	cs = append(cs, combos("milter", "-v -s 400", "-ov -s 300")...)
	cs = append(cs, combos("delivered", "-od -s 340")...)
	cs = append(cs,
		tcase{name: "multi_empty-sample", args: []string{"-c", "@conf", "@empty", "@sample"}},
		tcase{name: "multi_sample-empty", args: []string{"-c", "@conf", "@sample", "@empty"}},
		tcase{name: "multi_notqueue-sample", args: []string{"-c", "@conf", "@notqueue", "@sample"}},
		tcase{name: "multi_sample-trunclength", args: []string{"-c", "@conf", "@sample", "@trunc-length"}},
		tcase{name: "multi_continued-sample_b", args: []string{"-c", "@conf", "-b", "@continued", "@sample"}},
		tcase{name: "multi_sample-missing", args: []string{"-c", "@conf", "@sample", "testdata/queue/no-such-file", "@sample"}},
		tcase{name: "multi_directory-sample", args: []string{"-c", "@conf", "testdata/queue", "@sample"}},

		tcase{name: "usage_badoption", args: []string{"-c", "@conf", "-x", "@sample"}},
		tcase{name: "usage_noarg", args: []string{"-c", "@conf", "-s"}},
		tcase{name: "usage_badoffset", args: []string{"-c", "@conf", "-s", "abc", "@sample"}},
		tcase{name: "usage_negoffset", args: []string{"-c", "@conf", "-s", "-1", "@sample"}},
		tcase{name: "usage_plusoffset", args: []string{"-c", "@conf", "-s", "+9", "@sample"}},
		tcase{name: "usage_offset-then-badoption", args: []string{"-c", "@conf", "-s", "x", "-x"}},
		tcase{name: "usage_noconfig", args: []string{"-c", "/nonexistent/sluice-postcat-conf", "@sample"}},
		tcase{name: "usage_optionafterfile", args: []string{"-c", "@conf", "@sample", "-e"}},
		tcase{name: "usage_dashdash", args: []string{"-c", "@conf", "-h", "--", "@sample"}},
		tcase{name: "usage_clustered", args: []string{"-c", "@conf", "-ohs261", "@sample"}},
		tcase{name: "usage_8bitname", args: []string{"-c", "@conf", "testdata/queue/n\xe9\tx"}},

		tcase{name: "stdin_file", args: []string{"-c", "@conf"}, stdin: "file:sample"},
		tcase{name: "stdin_file_h", args: []string{"-c", "@conf", "-h"}, stdin: "file:sample"},
		tcase{name: "stdin_file_o", args: []string{"-c", "@conf", "-o"}, stdin: "file:milter"},
		tcase{name: "stdin_file_s5", args: []string{"-c", "@conf", "-s", "5"}, stdin: "file:sample"},
		tcase{name: "stdin_pipe", args: []string{"-c", "@conf"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_v", args: []string{"-c", "@conf", "-v"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_o", args: []string{"-c", "@conf", "-o"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_h", args: []string{"-c", "@conf", "-h"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_e", args: []string{"-c", "@conf", "-e"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_s261", args: []string{"-c", "@conf", "-s", "261"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_s99999", args: []string{"-c", "@conf", "-s", "99999"}, stdin: "pipe:sample"},
		tcase{name: "stdin_pipe_milter", args: []string{"-c", "@conf"}, stdin: "pipe:milter"},
		tcase{name: "stdin_pipe_milter_v", args: []string{"-c", "@conf", "-v"}, stdin: "pipe:milter"},
		tcase{name: "stdin_pipe_empty", args: []string{"-c", "@conf"}, stdin: "pipe:empty"},

		tcase{name: "tz_newyork", args: []string{"-c", "@conf", "@times"}, tz: "America/New_York"},
		tcase{name: "tz_posix", args: []string{"-c", "@conf", "@times"}, tz: "EST5EDT,M3.2.0,M11.1.0"},
		tcase{name: "tz_posix_quoted", args: []string{"-c", "@conf", "@times"}, tz: "<+0330>-3:30"},
		tcase{name: "tz_colon", args: []string{"-c", "@conf", "@times"}, tz: ":Asia/Kolkata"},
		tcase{name: "tz_berlin", args: []string{"-c", "@conf", "@times"}, tz: "Europe/Berlin"},
		tcase{name: "tz_tokyo", args: []string{"-c", "@conf", "@sample"}, tz: "Asia/Tokyo"},
		tcase{name: "tz_bogus", args: []string{"-c", "@conf", "@sample"}, tz: "Not/AZone"},

		tcase{name: "q_deferred", args: []string{"-c", "@conf", "-q", "54AB4BA048"}, spool: true},
		tcase{name: "q_longid_o", args: []string{"-c", "@conf", "-o", "-q", "4jcrGj5fZ5z5jwm"}, spool: true},
		tcase{name: "q_maildrop", args: []string{"-c", "@conf", "-q", "4jcrJR2PCmz5jtg"}, spool: true},
		tcase{name: "q_hold_h", args: []string{"-c", "@conf", "-hq", "ABCDEF123"}, spool: true},
		tcase{name: "q_saved_v", args: []string{"-c", "@conf", "-qv", "AAAAAA1"}, spool: true},
		tcase{name: "q_incoming-before-active", args: []string{"-c", "@conf", "-q", "BBBBBB2"}, spool: true},
		tcase{name: "q_active", args: []string{"-c", "@conf", "-q", "CCCCCC3"}, spool: true},
		tcase{name: "q_two", args: []string{"-c", "@conf", "-bq", "54AB4BA048", "ABCDEF123"}, spool: true},
		tcase{name: "q_nosuch", args: []string{"-c", "@conf", "-q", "NOSUCHID"}, spool: true},
		tcase{name: "q_then-nosuch", args: []string{"-c", "@conf", "-q", "54AB4BA048", "NOSUCHID"}, spool: true},
		tcase{name: "q_then-badid", args: []string{"-c", "@conf", "-q", "54AB4BA048", "bad/id"}, spool: true},
		tcase{name: "q_emptyid", args: []string{"-c", "@conf", "-q", ""}, spool: true},
		tcase{name: "q_8bitid", args: []string{"-c", "@conf", "-q", "\xc3\xa9"}, spool: true},
		tcase{name: "q_255", args: []string{"-c", "@conf", "-q", strings.Repeat("A", 255)}, spool: true},
		tcase{name: "q_256", args: []string{"-c", "@conf", "-q", strings.Repeat("A", 256)}, spool: true},
		tcase{name: "q_underscore", args: []string{"-c", "@conf", "-q", "A_B"}, spool: true},
		tcase{name: "q_stdin", args: []string{"-c", "@conf", "-q"}, stdin: "file:sample", spool: true},
		tcase{name: "q_nospool", args: []string{"-c", "@conf", "-q", "54AB4BA048"}},
	)
	return cs
}

// spoolFiles are the messages of the -q spool: queue, ID, test file.
var spoolFiles = [][3]string{
	{"deferred/5", "54AB4BA048", "sample"},
	{"deferred/C", "4jcrGj5fZ5z5jwm", "longline"},
	{"maildrop", "4jcrJR2PCmz5jtg", "maildrop"},
	{"hold", "ABCDEF123", "delivered"},
	{"saved", "AAAAAA1", "milter"},
	{"incoming", "BBBBBB2", "extracted"},
	{"active", "BBBBBB2", "continued"},
	{"active", "CCCCCC3", "noheaders"},
}

// env is where a case runs: the package directory, with these paths.
type env struct {
	conf      string // configuration directory of file cases
	spoolConf string // configuration directory of spool cases
}

func setup(t *testing.T) env {
	t.Helper()
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	for _, d := range []string{"maildrop", "incoming", "active", "deferred", "hold", "saved"} {
		if err := os.MkdirAll(filepath.Join(spoolDir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range spoolFiles {
		data, err := os.ReadFile(filepath.Join("testdata/queue", f[2]))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(spoolDir, f[0]), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(spoolDir, f[0], f[1]), data, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte("queue_directory = "+spoolDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return env{conf: "testdata/conf", spoolConf: conf}
}

func (e env) args(c tcase) []string {
	var out []string
	for _, a := range c.args {
		switch {
		case a == "@conf" && c.spool:
			out = append(out, e.spoolConf)
		case a == "@conf":
			out = append(out, e.conf)
		case strings.HasPrefix(a, "@"):
			out = append(out, "testdata/queue/"+a[1:])
		default:
			out = append(out, a)
		}
	}
	return out
}

// result is what a run printed.
type result struct {
	stdout, stderr []byte
	exit           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stderr\n%s--- stdout\n%s", r.exit, r.stderr, r.stdout)
}

// openStdin gives a case its standard input: a file, or a pipe fed by a
// goroutine.
func openStdin(spec string) (*os.File, func(), error) {
	if spec == "" {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	kind, path, _ := strings.Cut(spec, ":")
	if !filepath.IsAbs(path) {
		path = filepath.Join("testdata/queue", path)
	}
	if kind == "file" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { f.Close() }, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Write(data) // fails with EPIPE when the reader stops early; that is fine
		w.Close()
	}()
	return r, func() { r.Close(); <-done }, nil
}

// runSluice runs our postcat in-process.
func runSluice(t *testing.T, e env, c tcase) result {
	t.Helper()
	tz := c.tz
	if tz == "" {
		tz = "UTC"
	}
	t.Setenv("TZ", tz)
	t.Setenv("MAIL_CONFIG", "")
	stdin, closeIn, err := openStdin(c.stdin)
	if err != nil {
		t.Fatal(err)
	}
	defer closeIn()
	var out, errb bytes.Buffer
	code := cli.Main(append([]string{"postcat"}, e.args(c)...), stdin, &out, &errb)
	return result{stdout: out.Bytes(), stderr: errb.Bytes(), exit: code}
}

// verboseNoise matches the debug lines Postfix's configuration code
// prints with -v; they describe the machine's network, not the file.
var verboseNoise = regexp.MustCompile(`(?m)^postcat: (name_mask|inet_addr_local|been_here|mynetworks_core): .*\n`)

// runPostfix runs the real postcat on the same command line; ok is false
// when it did not finish in time (it loops on some broken size records).
// It may run on any goroutine.
func runPostfix(e env, c tcase) (res result, ok bool, err error) {
	tz := c.tz
	if tz == "" {
		tz = "UTC"
	}
	stdin, closeIn, err := openStdin(c.stdin)
	if err != nil {
		return result{}, false, err
	}
	defer closeIn()
	// Postfix's postcat loops for ever on some files, and the time limit
	// is how those are told apart. It allocates the full claimed length of
	// a record first (2 GB for len-huge), which can take long on a loaded
	// machine: those cases get far longer.
	limit := 20 * time.Second
	if strings.Contains(strings.Join(c.args, " "), "len-huge") {
		limit = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, realPostcat, e.args(c)...)
	cmd.Args[0] = "postcat"
	cmd.Env = []string{"TZ=" + tz, "PATH=/usr/sbin:/usr/bin:/bin"}
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		return result{}, false, nil
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return result{}, false, fmt.Errorf("%s: %v", c.name, err)
	}
	return result{stdout: out.Bytes(), stderr: verboseNoise.ReplaceAll(errb.Bytes(), nil), exit: code}, true, nil
}

// Golden file layout: a header of "# key: value" lines naming the command
// and its outcome, then stderr verbatim, then stdout verbatim to the end
// of the file (it may hold any byte and need not end in a newline).
func encodeGolden(c tcase, e env, r result) []byte {
	var b bytes.Buffer
	tz := c.tz
	if tz == "" {
		tz = "UTC"
	}
	fmt.Fprintf(&b, "# postcat %s\n", strconv.Quote(strings.Join(c.args, " ")))
	if c.stdin != "" {
		fmt.Fprintf(&b, "# stdin: %s\n", c.stdin)
	}
	fmt.Fprintf(&b, "# TZ=%s\n# exit: %d\n# stderr:\n", tz, r.exit)
	b.Write(r.stderr)
	b.WriteString("# stdout:\n")
	b.Write(r.stdout)
	return b.Bytes()
}

func decodeGolden(data []byte) (result, error) {
	var r result
	i := bytes.Index(data, []byte("# stderr:\n"))
	j := bytes.Index(data, []byte("# stdout:\n"))
	if i < 0 || j < i {
		return r, fmt.Errorf("malformed golden file")
	}
	m := regexp.MustCompile(`(?m)^# exit: (\d+)$`).FindSubmatch(data[:i])
	if m == nil {
		return r, fmt.Errorf("golden file without exit status")
	}
	r.exit, _ = strconv.Atoi(string(m[1]))
	r.stderr = data[i+len("# stderr:\n") : j]
	r.stdout = data[j+len("# stdout:\n"):]
	return r, nil
}

func goldenPath(c tcase) string { return filepath.Join("testdata/golden", c.name+".golden") }

// writeQueueFiles rewrites testdata/queue from the builders.
func writeQueueFiles(t *testing.T) {
	files, err := queueFiles()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll("testdata/queue", 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join("testdata/queue", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGolden runs every case in-process and compares with the golden
// file that the real postcat produced. With -update it first rewrites
// the queue files and, from /usr/sbin/postcat, the goldens.
func TestGolden(t *testing.T) {
	if *update {
		writeQueueFiles(t)
	}
	e := setup(t)
	names := map[string]bool{}
	for _, c := range goldenCases() {
		if names[c.name] {
			t.Fatalf("two cases named %s", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			if *update {
				if _, err := os.Stat(realPostcat); err != nil {
					t.Fatalf("-update needs %s: %v", realPostcat, err)
				}
				r, ok, err := runPostfix(e, c)
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					t.Fatalf("postcat did not finish")
				}
				if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(goldenPath(c), encodeGolden(c, e, r), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			data, err := os.ReadFile(goldenPath(c))
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeGolden(data)
			if err != nil {
				t.Fatalf("%s: %v", goldenPath(c), err)
			}
			got := runSluice(t, e, c)
			compare(t, got, want)
		})
	}
	if *update {
		// Drop goldens of cases that no longer exist.
		old, _ := filepath.Glob("testdata/golden/*.golden")
		for _, p := range old {
			if !names[strings.TrimSuffix(filepath.Base(p), ".golden")] {
				os.Remove(p)
			}
		}
	}
}

func compare(t *testing.T, got, want result) {
	t.Helper()
	if got.exit != want.exit {
		t.Errorf("exit status %d, want %d", got.exit, want.exit)
	}
	if !bytes.Equal(got.stderr, want.stderr) {
		t.Errorf("stderr:\n%s\nwant:\n%s", got.stderr, want.stderr)
	}
	if !bytes.Equal(got.stdout, want.stdout) {
		t.Errorf("stdout differs\n%s", firstDiff(got.stdout, want.stdout))
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.SplitAfter(string(got), "\n"), strings.SplitAfter(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n got  %q\n want %q", i+1, a, b)
		}
	}
	return "(same lines)"
}

// TestQueueFilesBuild checks that the committed queue files are what the
// builders make, so the goldens describe the builders' files.
func TestQueueFilesBuild(t *testing.T) {
	files, err := queueFiles()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		got, err := os.ReadFile(filepath.Join("testdata/queue", n))
		if err != nil {
			t.Errorf("%v (run go test -update)", err)
			continue
		}
		if !bytes.Equal(got, files[n]) {
			t.Errorf("testdata/queue/%s differs from its builder (run go test -update)", n)
		}
	}
}

// TestReferenceCaptures checks the output for the message the reference
// captured on a Postfix instance (deferred/5/54AB4BA048) against those
// captures, stdout and stderr through one writer as a shell's 2>&1 has
// them.
func TestReferenceCaptures(t *testing.T) {
	e := setup(t)
	t.Setenv("TZ", "UTC")
	t.Setenv("MAIL_CONFIG", "")
	for _, tc := range []struct{ capture, flags string }{
		{"postcat-q-54AB4BA048.txt", "-q"},
		{"postcat-eq.txt", "-eq"},
		{"postcat-hq.txt", "-hq"},
		{"postcat-bq.txt", "-bq"},
		{"postcat-bhq.txt", "-bhq"},
		{"postcat-dq-54AB4BA048.txt", "-dq"},
		{"postcat-oq-54AB4BA048.txt", "-oq"},
		{"postcat-s261-oq.txt", "-s 261 -oq"},
	} {
		want, err := os.ReadFile(filepath.Join("testdata/reference", tc.capture))
		if err != nil {
			t.Fatal(err)
		}
		var both bytes.Buffer
		args := append(append([]string{"postcat", "-c", e.spoolConf}, strings.Fields(tc.flags)...), "54AB4BA048")
		if code := cli.Main(args, bytes.NewReader(nil), &both, &both); code != 0 {
			t.Errorf("%s: exit %d", tc.flags, code)
		}
		if !bytes.Equal(both.Bytes(), want) {
			t.Errorf("postcat %s differs from %s\n%s", tc.flags, tc.capture, firstDiff(both.Bytes(), want))
		}
	}
}

// TestReferenceMaildrop checks a maildrop file (no size record) against
// the reference capture, run under the path the capture shows.
func TestReferenceMaildrop(t *testing.T) {
	want, err := os.ReadFile("testdata/reference/postcat-o-maildrop-4jcrJR2PCmz5jtg.txt")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/queue/maildrop")
	if err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("testdata/conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name := "$PFTEST/spool/maildrop/4jcrJR2PCmz5jtg"
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o744); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	t.Setenv("TZ", "UTC")
	var out, errb bytes.Buffer
	if code := cli.Main([]string{"postcat", "-c", conf, "-o", name}, bytes.NewReader(nil), &out, &errb); code != 0 || errb.Len() > 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("differs from the capture\n%s", firstDiff(out.Bytes(), want))
	}
}
