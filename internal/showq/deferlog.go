package showq

import "bytes"

// logEntry is one entry of a defer log as showq reads it. The slices
// point into the log buffer.
type logEntry struct {
	addr, reason, status, action []byte
}

// Placeholders Postfix's log reader puts in fields an entry lacks.
var (
	noAddress   = []byte("(recipient address unavailable)")
	noReason    = []byte("(description unavailable)")
	nullAddress = []byte("(MAILER-DAEMON)")
)

// parseDeferLog reads a defer log (reference §3) the way Postfix's showq
// does and calls fn for every complete entry, in file order. The rules,
// checked against postqueue 3.7:
//
//   - a line is a C string: it ends at its first NUL byte; an empty line
//     ends the entry that is open, if any. An entry that the file's end
//     cuts off (no empty line after it) is dropped;
//   - every other line is made printable, and opens an entry;
//   - a line that begins with an ASCII letter or digit is "name = value"
//     (spaces around both are trimmed); recipient and reason are
//     used (an empty recipient becomes "(MAILER-DAEMON)"), status and
//     action are kept for callers, other names are ignored;
//   - a line "<address>: text" is the old format and sets both fields;
//     any other line is ignored;
//   - a later line overrides an earlier one in the same entry; a missing
//     recipient or reason gets a placeholder.
//
// Making a line printable changes only bytes that are not printable
// ASCII, and turns every white-space character but the space into '?'.
// So the parser finds the same names and fields in the raw line, if it
// trims only spaces, and makes printable just the fields it keeps.
//
// buf is modified in place.
func parseDeferLog(buf []byte, utf8 bool, fn func(e *logEntry)) {
	var e logEntry
	open := false
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			// The last line has no newline: it is read, but the entry it
			// belongs to can never be closed.
			buf = nil
		}
		line = cString(line)
		if len(line) == 0 {
			if open {
				if len(e.addr) == 0 {
					e.addr = noAddress
				}
				if len(e.reason) == 0 {
					e.reason = noReason
				}
				fn(&e)
				e, open = logEntry{}, false
			}
			continue
		}
		open = true
		if isAlnum(line[0]) {
			name, value, ok := splitNameValue(line)
			if !ok {
				continue
			}
			switch string(name) {
			case "recipient":
				makePrintable(value, utf8)
				e.addr = value
				if len(value) == 0 {
					e.addr = nullAddress
				}
			case "reason":
				makePrintable(value, utf8)
				e.reason = value
			case "status":
				makePrintable(value, utf8)
				e.status = value
			case "action":
				makePrintable(value, utf8)
				e.action = value
			}
			continue
		}
		if line[0] != '<' {
			continue
		}
		i := bytes.Index(line, []byte(">: "))
		if i < 0 {
			continue
		}
		e.addr = line[1:i]
		makePrintable(e.addr, utf8)
		if len(e.addr) == 0 {
			e.addr = nullAddress
		}
		e.reason = trimLeftSpace(line[i+2:])
		makePrintable(e.reason, utf8)
	}
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

// trimLeftSpace drops leading spaces. Other white space would have been
// made '?' by then (see parseDeferLog).
func trimLeftSpace(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}

// splitNameValue splits "name = value": the name runs to a space or '=',
// only spaces may stand between it and the '=', and spaces around the
// value are dropped. A line without that shape is malformed.
func splitNameValue(line []byte) (name, value []byte, ok bool) {
	line = trimLeftSpace(line)
	i := 0
	for i < len(line) && line[i] != '=' && line[i] != ' ' {
		i++
	}
	name = line[:i]
	rest := trimLeftSpace(line[i:])
	if len(name) == 0 || len(rest) == 0 || rest[0] != '=' {
		return nil, nil, false
	}
	value = trimLeftSpace(rest[1:])
	for len(value) > 0 && value[len(value)-1] == ' ' {
		value = value[:len(value)-1]
	}
	return name, value, true
}
