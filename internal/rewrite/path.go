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
// (RFC 5321 §4.1.1.3: a receiver may ignore it, and Postfix does), a
// quoted local part unquoted. "<>" is "".
func ParsePath(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") {
		if !strings.HasSuffix(s, ">") {
			return "", ErrPathSyntax
		}
		s = s[1 : len(s)-1]
	} else if strings.HasSuffix(s, ">") {
		return "", ErrPathSyntax
	}
	addr, ok := InternalForm(s)
	if !ok {
		return "", ErrPathSyntax
	}
	return addr, nil
}

// InternalForm checks an address from between a path's angle brackets
// and returns it as the queue stores it: the source route dropped, a
// quoted local part unquoted. Control characters anywhere make it bad
// (they would end up in headers and queue records), and so do spaces,
// quotes, backslashes and brackets outside a quoted local part. "" (the
// null sender) is valid here.
func InternalForm(raw string) (string, bool) {
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x20 || c == 0x7f {
			return "", false
		}
	}
	// Comments in parentheses go, as Postfix's address parser drops
	// them: "user@example.com (Joe)".
	if strings.IndexByte(raw, '(') >= 0 {
		var ok bool
		if raw, ok = dropComments(raw); !ok {
			return "", false
		}
	}
	// A source route, "@relay1,@relay2:user@domain"; without the colon
	// "@domain" is an address with an empty local part.
	if strings.HasPrefix(raw, "@") {
		if i := routeEnd(raw); i >= 0 {
			raw = raw[i+1:]
		}
	}
	var local strings.Builder
	i := 0
	if strings.HasPrefix(raw, "\"") {
		closed := false
		for i = 1; i < len(raw); i++ {
			c := raw[i]
			if c == '\\' && i+1 < len(raw) {
				i++
				local.WriteByte(raw[i])
				continue
			}
			if c == '"' {
				closed = true
				i++
				break
			}
			local.WriteByte(c)
		}
		if !closed || i < len(raw) && raw[i] != '@' {
			return "", false
		}
	} else {
		at := strings.LastIndexByte(raw, '@')
		if at < 0 {
			at = len(raw)
		}
		// A backslash quotes the byte after it ("user\@x"); other
		// specials are bad outside quotes.
		for j := 0; j < at; j++ {
			c := raw[j]
			switch {
			case c == '\\' && j+1 < at:
				j++
				local.WriteByte(raw[j])
			case c == ' ' || c == '"' || c == '\\' || c == '<' || c == '>':
				return "", false
			default:
				local.WriteByte(c)
			}
		}
		i = at
	}
	domain := raw[i:]
	if strings.ContainsAny(domain, " \"\\<>") || strings.Count(domain, "@") > 1 {
		return "", false
	}
	return local.String() + domain, true
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

// dropComments removes parenthesized comments (nested, outside quoted
// strings) and the white space around what is left; false when the
// parentheses do not match.
func dropComments(s string) (string, bool) {
	var b strings.Builder
	quoted, depth := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
		case quoted:
			quoted = c != '"'
			b.WriteByte(c)
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return "", false
			}
			depth--
		case depth > 0:
		case c == '"':
			quoted = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	if quoted || depth > 0 {
		return "", false
	}
	return strings.TrimSpace(b.String()), true
}
