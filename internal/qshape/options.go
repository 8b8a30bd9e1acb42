package qshape

import (
	"strings"
	"time"
)

// Options are qshape's settings. Numeric settings are Numbers because
// the script compares and computes with them as Perl numbers: fractions
// work, and so do strings with trailing junk.
type Options struct {
	Senders bool   // -s: count the sender of each message, not its recipients
	Parents bool   // -p: add rows for parent domains
	MinSub  Number // -m: subdomains a parent row needs to be shown (5)
	Buckets Number // -b: number of age buckets (10)
	Tick    Number // -t: upper bound of the first bucket, in minutes (5)
	Linear  bool   // -l: buckets are multiples of Tick rather than doubling
	Width   Number // -w: line width (80)

	// Interim results (-N) and the row limit (-n) apply only when
	// standard output is a terminal; 0 means none.
	BatchMsgs Number // -N: print the table after every this many messages
	BatchTop  Number // -n: print at most this many rows (TOTAL included)
	Clear     string // printed before each table when BatchMsgs > 0

	Now     func() time.Time // the clock; the age of a message is Now minus its arrival
	Workers int              // files read in parallel; 0 means one per CPU
	// Warnf reports files that cannot be read as queue files and queue
	// directories that cannot be listed; nil discards the warnings.
	Warnf func(format string, args ...any)
}

// Defaults returns the options of "qshape" with no flags and output to
// something that is not a terminal.
func Defaults() Options {
	return Options{MinSub: Num(5), Buckets: Num(10), Tick: Num(5), Width: Num(80), Now: time.Now}
}

// DefaultQueues returns the queues shown when none are named.
func DefaultQueues() []string { return []string{"incoming", "active"} }

// FromFlags applies the command line as the script does. flags maps each
// option letter given to its argument; the argument is nil when the
// option was the last word and had none (the script then holds an
// undefined value, which counts as 0, or as "not given" for -N and -n).
//
//   - -w is used only when above 80, -b, -t and -m only when above 0;
//   - -N (default 1000) and -n (default 20) apply only when terminal is
//     true, that is when standard output is a terminal.
func FromFlags(flags map[byte]*string, terminal bool) Options {
	o := Defaults()
	num := func(c byte) (Number, bool) {
		v, ok := flags[c]
		if !ok {
			return Number{}, false
		}
		if v == nil {
			return Number{Int: true}, true
		}
		return ParseNumber(*v), true
	}
	_, o.Senders = flags['s']
	_, o.Parents = flags['p']
	_, o.Linear = flags['l']
	if n, ok := num('w'); ok && n.F > 80 {
		o.Width = n
	}
	if n, ok := num('b'); ok && n.F > 0 {
		o.Buckets = n
	}
	if n, ok := num('t'); ok && n.F > 0 {
		o.Tick = n
	}
	if n, ok := num('m'); ok && n.F > 0 {
		o.MinSub = n
	}
	if terminal {
		o.BatchMsgs, o.BatchTop = Num(1000), Num(20)
		if v := flags['N']; v != nil {
			o.BatchMsgs = ParseNumber(*v)
		}
		if v := flags['n']; v != nil {
			o.BatchTop = ParseNumber(*v)
		}
	}
	return o
}

// optSpec is the script's getopts string.
const optSpec = "lhc:psw:b:t:m:n:N:"

// ParseArgs parses a command line as Perl's Getopt::Std getopts does for
// the script, which differs from getopt(3): options end at the first word
// that is not one ("qshape deferred -s" names two queues), and an option
// that takes a value but ends the command line gets none (nil) rather
// than an error. It stops at the first unknown option and returns it as
// bad. "--help" and "--version" count as -h.
func ParseArgs(args []string) (flags map[byte]*string, queues []string, bad byte) {
	flags = map[byte]*string{}
	i := 0
	for ; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' {
			break
		}
		if a == "--" {
			i++
			break
		}
		if a == "--help" || a == "--version" {
			flags['h'] = nil
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			k := strings.IndexByte(optSpec, c)
			if k < 0 {
				return flags, nil, c
			}
			if k+1 < len(optSpec) && optSpec[k+1] == ':' {
				var v *string
				if j+1 < len(a) {
					s := a[j+1:]
					v = &s
				} else if i+1 < len(args) {
					i++
					s := args[i]
					v = &s
				}
				flags[c] = v
				break
			}
			flags[c] = nil
		}
	}
	return flags, args[i:], 0
}
