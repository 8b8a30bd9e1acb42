package postcat

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"syscall"
	"time"
)

// Record type bytes that steer the state machine or the reader.
const (
	recSize  = 'C'
	recTime  = 'T'
	recWarn  = 'W'
	recAttr  = 'A'
	recCont  = 'L' // unterminated text in the content, content filter in the envelope
	recNorm  = 'N'
	recPad   = 'w'
	recPtr   = 'p'
	recMesg  = 'M'
	recXtra  = 'X'
	recEnd   = 'E'
	attrTime = "create_time"
)

// envelopeTypes are the bytes postcat accepts as the first byte of a queue
// file. Postfix tests membership with strchr, which also finds the
// string's terminating NUL, so a file that starts with a 0 byte passes.
const envelopeTypes = "MCTcFILSDRO/WVA>K<ion\x00"

// recordNames holds the labels Postfix 3.7 prints. Types not listed
// (d and m among them, which 3.7 does not name) print as
// "unknown_record_type".
var recordNames = [256]string{
	'C': "message_size", 'T': "message_arrival_time",
	'c': "queue_file_create_time", 'F': "sender_fullname",
	'I': "content_inspector", 'L': "content_filter", 'S': "sender",
	'D': "done_recipient", 'R': "recipient", 'O': "original_recipient",
	'/': "canceled_recipient", 'W': "warning_message_time",
	'A': "named_attribute", 'K': "killed_record", '>': "redirect_to",
	'f': "flags", 'M': "message_content", 'N': "regular_text",
	'w': "padding", 'X': "extracted_info", 'r': "return_receipt",
	'e': "errors_to", 'P': "priority", 'p': "pointer_record",
	'V': "verp_delimiters", '<': "dsn_return_flags",
	'i': "dsn_envelope_id", 'o': "dsn_original_recipient",
	'n': "dsn_notify_flags", 'E': "message_end",
}

func recordName(t int) string {
	if t >= 0 && t < len(recordNames) && recordNames[t] != "" {
		return recordNames[t]
	}
	return "unknown_record_type"
}

// cstr returns b up to its first NUL, as C's string functions see it.
func cstr(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseLong reads a decimal long the way strtol(s, &end, 10) does: leading
// white space, an optional sign, digits; on overflow the result saturates.
// n is the number of bytes consumed, 0 when there are no digits.
func parseLong(s []byte) (v int64, n int) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	start := i
	var u uint64
	over := false
	for i < len(s) && isDigit(s[i]) {
		d := uint64(s[i] - '0')
		if u > (math.MaxUint64-d)/10 {
			over = true
		} else {
			u = u*10 + d
		}
		i++
	}
	if i == start {
		return 0, 0
	}
	switch {
	case neg && (over || u > 1<<63):
		return math.MinInt64, i
	case neg:
		return -int64(u), i
	case over || u > math.MaxInt64:
		return math.MaxInt64, i
	}
	return int64(u), i
}

// atol is C's atol on a C string.
func atol(b []byte) int64 {
	v, _ := parseLong(cstr(b))
	return v
}

// scanTwoLongs is sscanf(s, "%ld %ld", &a, &b). Like sscanf it stores what
// it converted before it failed, so a and b keep their old values when
// their conversion fails. It returns the number of conversions.
func scanTwoLongs(s []byte, a, b *int64) int {
	s = cstr(s)
	v, n := parseLong(s)
	if n == 0 {
		return 0
	}
	*a = v
	v, m := parseLong(s[n:])
	if m == 0 {
		return 1
	}
	*b = v
	return 2
}

// alldig reports whether s is a non-empty string of decimal digits.
func alldig(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseOffset converts a pointer record's value: digits only, no sign, no
// overflow; the empty string is 0. It returns -1 when the value is bad.
func parseOffset(s []byte) int64 {
	var v int64
	for _, c := range s {
		if !isDigit(c) {
			return -1
		}
		d := int64(c - '0')
		if v > math.MaxInt64/10 || v*10 > math.MaxInt64-d {
			return -1
		}
		v = v*10 + d
	}
	return v
}

// splitNameval splits a named attribute "name = value": white space around
// the name and the value is dropped. The error texts are Postfix's.
func splitNameval(s []byte) (name, value []byte, errText string) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	start := i
	for i < len(s) && !isSpace(s[i]) && s[i] != '=' {
		i++
	}
	if i == start {
		return nil, nil, "missing attribute name"
	}
	name = s[start:i]
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i >= len(s) || s[i] != '=' {
		return nil, nil, "missing '=' after attribute name"
	}
	i++
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	end := len(s)
	for end > i && isSpace(s[end-1]) {
		end--
	}
	return name, s[i:end], ""
}

// isHeader reports whether a line starts like a header: one or more
// printable ASCII characters other than ':' (no white space, no controls,
// no 8-bit), then optional SP/TAB, then ':' (RFC 822 §3.4.2 still allows
// blanks before the colon).
func isHeader(s []byte) bool {
	n := 0
	for _, c := range s {
		switch {
		case c == ':':
			return n != 0
		case c == ' ' || c == '\t':
			if n == 0 {
				return false
			}
			// Blanks end the name; only more blanks or ':' may follow.
			n = -n
		case c > ' ' && c < 0x7f:
			if n < 0 {
				return false
			}
			n++
		default:
			return false
		}
	}
	return false
}

// printable replaces every byte that is not printable ASCII with '?', as
// Postfix does to the text of its warnings.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] < ' ' || b[j] > '~' {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return s
}

// errno renders an error as C's strerror does ("No such file or
// directory"): Go's texts for system errors are the same words with a
// lower-case first letter.
func errno(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		s := e.Error()
		if s != "" && s[0] >= 'a' && s[0] <= 'z' {
			return string(s[0]-'a'+'A') + s[1:]
		}
		return s
	}
	return err.Error()
}

// asctime formats sec as asctime(localtime(&sec)) does, newline included.
// glibc gives up on years whose tm_year does not fit in an int (postcat
// then crashes); ok is false for those.
func asctime(sec int64, loc *time.Location) (s string, ok bool) {
	// Years past ±2.2e9 are ±7e16 seconds away, far beyond what glibc
	// accepts; cutting there also keeps time.Unix clear of overflow.
	const limit = 70_000_000_000_000_000
	if sec < -limit || sec > limit {
		return "", false
	}
	t := time.Unix(sec, 0).In(loc)
	y := t.Year()
	if y-1900 < math.MinInt32 || y > math.MaxInt32 {
		return "", false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%.3s %.3s%3d %.2d:%.2d:%.2d %d\n", t.Weekday().String(), t.Month().String(),
		t.Day(), t.Hour(), t.Minute(), t.Second(), y)
	return b.String(), true
}
