package qshape

import "strings"

// domain turns an address into the name of its row (reference §5.3):
// lower-case (ASCII only, as Perl's lc on bytes), the null address
// becomes MAILER-DAEMON, everything up to the last '@' goes, ".." becomes
// ".", and one leading and one trailing dot go.
//
// The script does this with regular expressions whose '.' does not match
// a newline and whose '$' also matches before a final newline; addresses
// with newlines in them are rare but possible, so the rules below follow
// those expressions line by line.
func domain(addr string) string {
	a := lowerASCII(addr)
	if a == "" {
		return "MAILER-DAEMON"
	}
	a = stripLocalPart(a)
	if strings.Contains(a, "..") {
		a = strings.ReplaceAll(a, "..", ".")
	}
	return trimDots(a)
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// stripLocalPart is s/.*\@//: in the first line that has an '@', remove
// from the start of that line through its last '@'.
func stripLocalPart(a string) string {
	start := 0
	for {
		end := strings.IndexByte(a[start:], '\n')
		line := a[start:]
		if end >= 0 {
			line = a[start : start+end]
		}
		if at := strings.LastIndexByte(line, '@'); at >= 0 {
			return a[:start] + a[start+at+1:]
		}
		if end < 0 {
			return a
		}
		start += end + 1
	}
}

// trimDots is s/\.?(.+?)\.?$/$1/: it acts on the last line (a final
// newline stays), dropping one leading dot and then one trailing dot, but
// never leaving the line empty.
func trimDots(a string) string {
	body, nl := a, ""
	if strings.HasSuffix(body, "\n") {
		body, nl = body[:len(body)-1], "\n"
	}
	ls := strings.LastIndexByte(body, '\n') + 1
	line := body[ls:]
	if line == "" {
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
	return body[:ls] + t + nl
}

// parent is one step of s/^(?:\.)?[^.]+\.(.*\.)/.$1/ (reference §5.3):
// sub.example.com → .example.com, .a.b.c → .b.c; a name keeps at least
// two labels, so .example.com has no parent. The result is "." followed
// by everything after the first label's dot, when that remainder holds
// another dot before any newline.
func parent(d string) (string, bool) {
	s := d
	if strings.HasPrefix(s, ".") {
		s = s[1:]
	}
	j := strings.IndexByte(s, '.')
	if j < 1 {
		return "", false
	}
	rest := s[j+1:]
	line := rest
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
		line = rest[:nl]
	}
	if strings.IndexByte(line, '.') < 0 {
		return "", false
	}
	return "." + rest, true
}
