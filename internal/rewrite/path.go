package rewrite

import (
	"errors"
	"strings"
)

// ErrPathSyntax is returned by ParsePath for a path it cannot read.
var ErrPathSyntax = errors.New("bad address syntax")

// ParsePath turns an SMTP path as the client wrote it ("<@a,@b:user@dom>",
// "<\"user@x\"@dom>", "user@dom", with or without angle brackets) into
// the internal form Resolve and Check take: the source route dropped
// (RFC 5321 §4.1.1.3: a receiver may ignore it, and Postfix does),
// quotes and backslash escapes removed, comments in parentheses dropped,
// surrounding white space trimmed. "<>" is "".
func ParsePath(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		if !strings.HasSuffix(s, ">") {
			return "", ErrPathSyntax
		}
		s = strings.TrimSpace(s[1 : len(s)-1])
	} else if strings.HasSuffix(s, ">") {
		return "", ErrPathSyntax
	}
	if strings.HasPrefix(s, "@") {
		if i := routeEnd(s); i >= 0 {
			s = s[i+1:]
		}
	}
	var b strings.Builder
	quoted := false
	depth := 0 // comment nesting
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return "", ErrPathSyntax
			}
			i++
			if depth == 0 {
				b.WriteByte(s[i])
			}
		case quoted:
			if c == '"' {
				quoted = false
			} else {
				b.WriteByte(c)
			}
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return "", ErrPathSyntax
			}
			depth--
		case depth > 0:
		case c == '"':
			quoted = true
		case c == '<' || c == '>':
			return "", ErrPathSyntax
		default:
			b.WriteByte(c)
		}
	}
	if quoted || depth > 0 {
		return "", ErrPathSyntax
	}
	return strings.TrimSpace(b.String()), nil
}

// routeEnd returns the index of the ":" that ends a source route
// ("@a,@b:"), or -1 when s has none (then "@dom" is an address with an
// empty local part).
func routeEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ':':
			return i
		case '"', '<', '>', '\\', ' ':
			return -1
		}
	}
	return -1
}
