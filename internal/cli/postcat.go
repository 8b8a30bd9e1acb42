package cli

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"sluice/internal/postcat"
	"sluice/internal/spool"
)

// postcatSpec is Postfix 3.7's option string. Its manual lists -n, but
// 3.7 does not accept it.
const postcatSpec = "bc:dehoqrs:v"

const postcatUsage = "usage: postcat [-b (body text)] [-c config_dir] [-d (decimal record type)] [-e (envelope records)] [-h (header text)] [-q (access queue)] [-v] [file(s)...]"

// postcatQueues are the queues -q searches, in order.
var postcatQueues = []string{spool.Maildrop, spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Saved}

// runPostcat is Postfix's postcat: print queue files (or, with -q, the
// messages with the given queue IDs) in human-readable form, output and
// messages as Postfix 3.7 gives them. See package postcat.
func runPostcat(env *Env) int {
	opts, operands, err := Getopt(env.Args, postcatSpec)
	var o postcat.Options
	confDir, search := "", false
	for _, op := range opts {
		switch op.Name {
		case 'b':
			o.Body = true
		case 'c':
			confDir = op.Arg
		case 'd':
			o.Decimal = true
		case 'e':
			o.Envelope = true
		case 'h':
			o.Header = true
		case 'o':
			o.Offsets = true
		case 'q':
			search = true
		case 'r':
			o.Raw = true
		case 's':
			// Digits only; atol saturates what does not fit.
			if !isDigits(op.Arg) {
				return env.Fatalf(1, "bad offset: %s", postcatPrintable(op.Arg))
			}
			n, perr := strconv.ParseInt(op.Arg, 10, 64)
			if perr != nil {
				n = math.MaxInt64
			}
			o.Start = n
		case 'v':
			o.Verbose = true
		}
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", env.Name, err)
		return env.Fatalf(1, "%s", postcatUsage)
	}
	cfg, err := env.LoadConfig(confDir)
	if err != nil {
		return env.Fatalf(1, "%s", postcatPrintable(configError(err)))
	}
	tz := ""
	if env.Getenv != nil {
		tz = env.Getenv("TZ")
	}
	o.Location = postcat.Zone(tz)
	warn := func(msg string) { env.Warnf("%s", msg) }
	cat := postcat.New(o, env.Stdout, warn)

	// run prints one input and reports what postcat reports when it is done.
	run := func(in postcat.Input, closeName string) int {
		readErr, fatal := cat.Print(in)
		if fatal != nil {
			return env.Fatalf(1, "%s", fatal.Msg)
		}
		if readErr != nil {
			env.Warnf("close %s: %s", postcatPrintable(closeName), strerror(unwrapPathError(readErr)))
		}
		return 0
	}

	switch {
	case len(operands) == 0:
		return run(postcat.Input{Name: "stdin", R: env.Stdin, Stdin: true}, "stdin")
	case search:
		sp, err := OpenSpool(cfg)
		if err != nil {
			return env.Fatalf(1, "%v", err)
		}
		if fi, err := os.Stat(sp.Root); err != nil || !fi.IsDir() {
			if err == nil {
				err = syscall.ENOTDIR
			}
			return env.Fatalf(1, "chdir %s: %s", postcatPrintable(sp.Root), strerror(unwrapPathError(err)))
		}
		for _, id := range operands {
			if !postfixQueueIDOK(id) {
				return env.Fatalf(1, "bad mail queue ID: %s", postcatPrintable(id))
			}
			f, rel, err := openQueueFile(sp, id)
			if err != nil {
				return env.Fatalf(1, "open queue file %s: %s", id, strerror(unwrapPathError(err)))
			}
			code := run(postcat.Input{Name: rel, R: f}, id)
			f.Close()
			if code != 0 {
				return code
			}
		}
	default:
		for _, name := range operands {
			f, err := os.Open(name)
			if err != nil {
				return env.Fatalf(1, "open %s: %s", postcatPrintable(name), strerror(unwrapPathError(err)))
			}
			code := run(postcat.Input{Name: name, R: f}, name)
			f.Close()
			if code != 0 {
				return code
			}
		}
	}
	return 0
}

// openQueueFile looks for id in the queues postcat -q searches, twice, as
// postcat does, so a file that moves between queues while we look is
// still found. It returns the path relative to the queue directory, which
// is what postcat prints. The error is that of the last attempt.
func openQueueFile(sp *spool.Spool, id string) (*os.File, string, error) {
	var last error
	for try := 0; try < 2; try++ {
		for _, q := range postcatQueues {
			rel := sp.RelPath(q, id)
			f, err := os.Open(filepath.Join(sp.Root, rel))
			if err == nil {
				return f, rel, nil
			}
			last = err
		}
	}
	return nil, "", last
}

// postfixQueueIDOK is Postfix's test for a name it will look up as a
// queue ID: 1 to 255 letters, digits or '_'.
func postfixQueueIDOK(id string) bool {
	if id == "" || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// postcatPrintable is what Postfix's messages do to the text they carry:
// every byte outside printable ASCII becomes '?'.
func postcatPrintable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c > '~' {
			b[i] = '?'
		}
	}
	return string(b)
}
