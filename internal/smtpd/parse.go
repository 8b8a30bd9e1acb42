package smtpd

import (
	"strings"

	"sluice/internal/rewrite"
)

// pathStatus is the outcome of parsing MAIL's or RCPT's argument.
type pathStatus int

const (
	pathOK         pathStatus = iota
	pathSyntax                // no "FROM:"/"TO:" or nothing after it
	pathBadAddress            // the address itself is malformed
)

// parsePath parses "FROM:<address> PARAM=value ..." (keyword "FROM:"),
// "TO:<...>" or, with keyword "", a bare address (VRFY). Like Postfix it
// takes a space after the colon and an address without angle brackets.
// The address comes back in internal form: without brackets, a source
// route dropped (RFC 5321 §4.1.1.3 says to ignore it), a quoted local
// part unquoted. Control characters anywhere make the address bad: they
// would end up in headers and queue records.
func parsePath(args, keyword string) (string, []string, pathStatus) {
	rest := args
	if keyword != "" {
		if len(rest) < len(keyword) || !strings.EqualFold(rest[:len(keyword)], keyword) {
			return "", nil, pathSyntax
		}
		rest = strings.TrimLeft(rest[len(keyword):], " ")
	}
	if rest == "" {
		return "", nil, pathSyntax
	}
	var raw, tail string
	if rest[0] == '<' {
		end := closingBracket(rest)
		if end < 0 {
			return "", nil, pathBadAddress
		}
		raw, tail = rest[1:end], rest[end+1:]
		if tail != "" && tail[0] != ' ' {
			return "", nil, pathBadAddress
		}
	} else {
		raw, tail, _ = strings.Cut(rest, " ")
		if strings.ContainsAny(raw, "<>") {
			return "", nil, pathBadAddress
		}
	}
	addr, ok := rewrite.InternalForm(raw)
	if !ok {
		return "", nil, pathBadAddress
	}
	return addr, strings.Fields(tail), pathOK
}

// closingBracket returns the index of the '>' that closes s[0] == '<',
// skipping quoted strings and backslash escapes; -1 when there is none.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case c == '>' && !quoted:
			return i
		case c == '<' && !quoted:
			return -1
		}
	}
	return -1
}

// decodeXtext decodes RFC 3461 §4 xtext ("+2B" for '+'). The decoded
// text must be printable: an ENVID or ORCPT ends up in DSN headers.
func decodeXtext(s string) (string, bool) {
	if !strings.ContainsAny(s, "+") {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < 33 || c > 126 || c == '=' {
				return "", false
			}
		}
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", false
			}
			d := h<<4 | l
			if d < 0x20 || d == 0x7f {
				return "", false
			}
			b.WriteByte(d)
			i += 2
		case c < 33 || c > 126 || c == '=':
			return "", false
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
