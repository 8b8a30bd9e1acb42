package qshape

import "bytes"

// mailerDaemon is the row of the null address.
const mailerDaemon = "MAILER-DAEMON"

// domain turns an address into the name of its row (reference §5.3):
// lower-case (ASCII only, as Perl's lc on bytes), the null address
// becomes MAILER-DAEMON, everything up to the last '@' goes, ".." becomes
// ".", and one leading and one trailing dot go. It works in place on a,
// which it may change, and returns a part of a (or of scratch, for
// MAILER-DAEMON), so counting allocates nothing per address.
//
// The script does this with regular expressions whose '.' does not match
// a newline and whose '$' also matches before a final newline; addresses
// with newlines in them are rare but possible, so the rules below follow
// those expressions line by line (FuzzDomain checks them against the
// expressions themselves).
func domain(a, scratch []byte) []byte {
	if len(a) == 0 {
		return append(scratch[:0], mailerDaemon...)
	}
	for i, c := range a {
		if c >= 'A' && c <= 'Z' {
			a[i] = c + 'a' - 'A'
		}
	}
	a = stripLocalPart(a)
	a = collapseDots(a)
	return trimDots(a)
}

// stripLocalPart is s/.*\@//: in the first line that has an '@', remove
// from the start of that line through its last '@'.
func stripLocalPart(a []byte) []byte {
	start := 0
	for {
		line := a[start:]
		end := bytes.IndexByte(line, '\n')
		if end >= 0 {
			line = line[:end]
		}
		if at := bytes.LastIndexByte(line, '@'); at >= 0 {
			if start == 0 {
				return a[at+1:]
			}
			return append(a[:start], a[start+at+1:]...)
		}
		if end < 0 {
			return a
		}
		start += end + 1
	}
}

// collapseDots is s/\.\././g: each ".." becomes ".", left to right,
// without looking again at what a replacement leaves.
func collapseDots(a []byte) []byte {
	i := bytes.Index(a, []byte(".."))
	if i < 0 {
		return a
	}
	w := i
	for i < len(a) {
		if a[i] == '.' && i+1 < len(a) && a[i+1] == '.' {
			a[w] = '.'
			w++
			i += 2
			continue
		}
		a[w] = a[i]
		w++
		i++
	}
	return a[:w]
}

// trimDots is s/\.?(.+?)\.?$/$1/: it acts on the last line (a final
// newline stays), dropping one leading dot and then one trailing dot, but
// never leaving the line empty.
func trimDots(a []byte) []byte {
	body, nl := a, 0
	if n := len(body); n > 0 && body[n-1] == '\n' {
		body, nl = body[:n-1], 1
	}
	ls := bytes.LastIndexByte(body, '\n') + 1
	line := body[ls:]
	if len(line) == 0 {
		return a
	}
	t := line
	if len(t) >= 2 && t[0] == '.' {
		t = t[1:]
	}
	if len(t) >= 2 && t[len(t)-1] == '.' {
		t = t[:len(t)-1]
	}
	if len(t) == len(line) {
		return a
	}
	if ls == 0 && nl == 0 {
		return t
	}
	out := append(a[:ls], t...)
	return append(out, a[len(a)-nl:]...)
}

// parent is one step of s/^(?:\.)?[^.]+\.(.*\.)/.$1/ (reference §5.3):
// sub.example.com → .example.com, .a.b.c → .b.c; a name keeps at least
// two labels, so .example.com has no parent. The result is the name from
// the dot after its first label, when what follows that dot holds
// another dot before any newline.
func parent[S ~string | ~[]byte](d S) (S, bool) {
	s := d
	if len(s) > 0 && s[0] == '.' {
		s = s[1:]
	}
	j := 0
	for j < len(s) && s[j] != '.' {
		j++
	}
	if j < 1 || j == len(s) {
		return d[:0], false
	}
	for k := j + 1; k < len(s) && s[k] != '\n'; k++ {
		if s[k] == '.' {
			return s[j:], true
		}
	}
	return d[:0], false
}
