package spool

import "strings"

// QuoteAddress returns a recipient as Postfix's bounce service writes it into a
// defer log (and so as mailq matches it against the queue file): with
// the local part made an RFC 822 quoted-string when it is not a
// dot-string (empty; a leading, trailing or doubled dot; a space, control
// character or one of ()<>@,;:\"[]), '"' and '\' escaped inside the
// quotes. 8-bit bytes need no quoting. The local part ends at the last '@'.
func QuoteAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr, ""
	if at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	dotString := local != "" && local[0] != '.' && local[len(local)-1] != '.' && !strings.Contains(local, "..")
	for i := 0; dotString && i < len(local); i++ {
		c := local[i]
		dotString = c > ' ' && c != 0x7f && !strings.ContainsRune(`()<>@,;:\"[]`, rune(c))
	}
	if dotString {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' || c == '\r' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String() + domain
}
