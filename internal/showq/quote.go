package showq

// Address and text display rules, as Postfix's showq shows them (checked
// against postqueue 3.7 byte for byte; see quote_test.go).
//
// Queue-file addresses are raw. For display the local part is quoted
// when it is not an RFC 822 dot-string (RFC 822 §3.3 atoms joined by
// dots), and then every byte that is not printable is replaced by '?'.
// Defer-log addresses were quoted by whoever wrote the log, so they are
// only made printable. Text from files is a C string to Postfix: it ends
// at the first NUL byte.

// cString returns b up to its first NUL byte.
func cString[T ~string | ~[]byte](b T) T {
	for i := 0; i < len(b); i++ {
		if b[i] == 0 {
			return b[:i]
		}
	}
	return b
}

// needsQuote marks the bytes that make a local part something other than
// a dot-string: RFC 822 specials (§3.3) other than '.', space, and ASCII
// control characters including DEL. Bytes above 127 are left alone, as
// Postfix leaves 8-bit data unquoted.
var needsQuote = func() (t [256]bool) {
	for c := 0; c < 32; c++ {
		t[c] = true
	}
	t[127] = true
	for _, c := range []byte(` ()<>@,;:\"[]`) {
		t[c] = true
	}
	return t
}()

// isDotString reports whether local is an RFC 822 dot-string: non-empty,
// no leading, trailing or doubled dots, no specials, spaces or controls.
func isDotString[T ~string | ~[]byte](local T) bool {
	if len(local) == 0 || local[0] == '.' || local[len(local)-1] == '.' {
		return false
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; needsQuote[c] || c == '.' && i+1 < len(local) && local[i+1] == '.' {
			return false
		}
	}
	return true
}

// localPart returns the bounds of the local part of addr: after a source
// route ("@a,@b:") if there is one, up to the last '@' after that, or to
// the end when there is none.
func localPart[T ~string | ~[]byte](addr T) (start, end int) {
	if len(addr) > 0 && addr[0] == '@' {
		for i := 0; i < len(addr); i++ {
			if addr[i] == ':' {
				start = i + 1
				break
			}
		}
	}
	end = len(addr)
	for i := len(addr) - 1; i >= start; i-- {
		if addr[i] == '@' {
			end = i
			break
		}
	}
	return start, end
}

// appendQuoted appends addr to dst with its local part made a quoted
// string when it is not a dot-string. Inside the quotes '"', '\' and CR
// get a backslash (RFC 822 §3.3 qtext excludes them).
func appendQuoted(dst, addr []byte) []byte {
	start, end := localPart(addr)
	if isDotString(addr[start:end]) {
		return append(dst, addr...)
	}
	dst = append(dst, addr[:start]...)
	dst = append(dst, '"')
	for _, c := range addr[start:end] {
		if c == '"' || c == '\\' || c == '\r' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	dst = append(dst, '"')
	return append(dst, addr[end:]...)
}

// makePrintable replaces, in place, every byte that is not printable
// ASCII with '?'. With utf8 (smtputf8_enable) a byte from 0xC2 to 0xFE
// followed by a continuation byte starts a sequence that is kept, with
// all the continuation bytes that follow it; this is the same loose test
// Postfix applies, which keeps some sequences that strict UTF-8 would
// refuse (a truncated sequence, extra continuation bytes).
func makePrintable(b []byte, utf8 bool) {
	for i := 0; i < len(b); {
		c := b[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if utf8 && c >= 0xc2 && c <= 0xfe && i+1 < len(b) && b[i+1]&0xc0 == 0x80 {
			i += 2
			for i < len(b) && b[i]&0xc0 == 0x80 {
				i++
			}
			continue
		}
		b[i] = '?'
		i++
	}
}

// isPrintable reports whether makePrintable would leave b unchanged.
func isPrintable[T ~string | ~[]byte](b T, utf8 bool) bool {
	i := 0
	// Eight bytes at a time while they are all printable ASCII: a
	// listing checks a hundred thousand reasons of a hundred bytes.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(b); i += 8 {
		x := uint64(b[i]) | uint64(b[i+1])<<8 | uint64(b[i+2])<<16 | uint64(b[i+3])<<24 |
			uint64(b[i+4])<<32 | uint64(b[i+5])<<40 | uint64(b[i+6])<<48 | uint64(b[i+7])<<56
		del := x ^ 0x7f*ones
		// A byte below 0x20, a DEL, or one with its high bit set.
		if ((x-0x20*ones)&^x|(del-ones)&^del|x)&highs != 0 {
			break
		}
	}
	for i < len(b) {
		c := b[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		if utf8 && c >= 0xc2 && c <= 0xfe && i+1 < len(b) && b[i+1]&0xc0 == 0x80 {
			i += 2
			for i < len(b) && b[i]&0xc0 == 0x80 {
				i++
			}
			continue
		}
		return false
	}
	return true
}

// displayer turns file data into display strings, reusing one scratch
// buffer so that data needing no change costs one string allocation.
type displayer struct {
	utf8    bool
	empty   string // display form of empty_address_recipient
	scratch []byte
}

func newDisplayer(emptyAddress string, utf8 bool) displayer {
	d := displayer{utf8: utf8}
	d.empty = d.address([]byte(emptyAddress))
	return d
}

// address returns a queue-file address as showq shows it: a C string,
// empty replaced by empty_address_recipient, local part quoted,
// non-printable bytes replaced.
func (d *displayer) address(raw []byte) string {
	raw = cString(raw)
	if len(raw) == 0 && d.empty != "" {
		return d.empty
	}
	start, end := localPart(raw)
	if isDotString(raw[start:end]) && isPrintable(raw, d.utf8) {
		return string(raw)
	}
	d.scratch = appendQuoted(d.scratch[:0], raw)
	makePrintable(d.scratch, d.utf8)
	return string(d.scratch)
}

// addressBytes is address without the allocation: the result is valid
// until the next call.
func (d *displayer) addressBytes(raw []byte) []byte {
	raw = cString(raw)
	if len(raw) == 0 && d.empty != "" {
		return append(d.scratch[:0], d.empty...)
	}
	start, end := localPart(raw)
	if isDotString(raw[start:end]) && isPrintable(raw, d.utf8) {
		return raw
	}
	d.scratch = appendQuoted(d.scratch[:0], raw)
	makePrintable(d.scratch, d.utf8)
	return d.scratch
}

// text returns log text, already a C string, made printable.
func (d *displayer) text(b []byte) string {
	if isPrintable(b, d.utf8) {
		return string(b)
	}
	d.scratch = append(d.scratch[:0], b...)
	makePrintable(d.scratch, d.utf8)
	return string(d.scratch)
}

// addressString is address for a string, without an allocation when the
// address is shown as it is.
func (d *displayer) addressString(raw string) string {
	raw = cString(raw)
	if len(raw) == 0 && d.empty != "" {
		return d.empty
	}
	start, end := localPart(raw)
	if isDotString(raw[start:end]) && isPrintable(raw, d.utf8) {
		return raw
	}
	return d.address([]byte(raw))
}

// textString returns s made printable, without an allocation when it
// already is.
func (d *displayer) textString(s string) string {
	if isPrintable(s, d.utf8) {
		return s
	}
	b := []byte(s)
	makePrintable(b, d.utf8)
	return string(b)
}
