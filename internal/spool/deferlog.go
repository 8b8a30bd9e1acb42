package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// LogEntry is one entry of a defer, bounce or trace log (reference §3):
// the outcome of one delivery attempt for one recipient.
type LogEntry struct {
	Recipient   string
	OrigRcpt    string
	Offset      int64
	DSNOrigRcpt string
	NotifyFlags int
	Status      string // DSN status, e.g. 4.4.1
	Action      string // delayed, failed, delivered, relayed, expanded
	DiagType    string
	DiagText    string
	MTAType     string
	MTAName     string
	Reason      string
}

// AppendTo renders the entry as Postfix's bounce_append service writes it,
// with the old-style "<rcpt>: reason" line that
// backwards_bounce_logfile_compatibility=yes adds.
func (e *LogEntry) AppendTo(b []byte) []byte {
	rcpt := e.Recipient
	b = append(b, '\n')
	b = append(b, '<')
	b = append(b, rcpt...)
	b = append(b, ">: "...)
	b = append(b, e.Reason...)
	b = append(b, '\n')
	if rcpt == "" {
		rcpt = "<>"
	}
	b = appendKV(b, "recipient", rcpt)
	if e.OrigRcpt != "" && !strings.EqualFold(e.OrigRcpt, e.Recipient) {
		b = appendKV(b, "original_recipient", e.OrigRcpt)
	}
	if e.Offset > 0 {
		b = appendKV(b, "offset", strconv.FormatInt(e.Offset, 10))
	}
	if e.DSNOrigRcpt != "" {
		b = appendKV(b, "dsn_orig_rcpt", e.DSNOrigRcpt)
	}
	if e.NotifyFlags != 0 {
		b = appendKV(b, "notify_flags", strconv.Itoa(e.NotifyFlags))
	}
	if e.Status != "" {
		b = appendKV(b, "status", e.Status)
	}
	if e.Action != "" {
		b = appendKV(b, "action", e.Action)
	}
	if e.DiagType != "" && e.DiagText != "" {
		b = appendKV(b, "diag_type", e.DiagType)
		b = appendKV(b, "diag_text", e.DiagText)
	}
	if e.MTAType != "" && e.MTAName != "" {
		b = appendKV(b, "mta_type", e.MTAType)
		b = appendKV(b, "mta_mname", e.MTAName)
	}
	if e.Reason != "" {
		b = appendKV(b, "reason", e.Reason)
	}
	return append(b, '\n')
}

func appendKV(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, '=')
	// A value never spans lines in the log; newlines would end the entry.
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\n' || c == '\r' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, '\n')
}

// AppendLog appends entries to the log of id in logQueue (defer, bounce or
// trace) under an exclusive lock, and syncs it.
func (s *Spool) AppendLog(logQueue, id string, entries ...LogEntry) error {
	path := s.Path(logQueue, id)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err = s.MakeHashDir(logQueue, id); err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("spool: open %s log of %s: %w", logQueue, id, err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("spool: lock %s log of %s: %w", logQueue, id, err)
	}
	var b []byte
	for i := range entries {
		b = entries[i].AppendTo(b)
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("spool: write %s log of %s: %w", logQueue, id, err)
	}
	if !s.NoSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("spool: sync %s log of %s: %w", logQueue, id, err)
		}
	}
	return nil
}

// ReadLog reads the log of id in logQueue. A missing log is no error: it
// returns nil entries.
func (s *Spool) ReadLog(logQueue, id string) ([]LogEntry, error) {
	f, err := os.Open(s.Path(logQueue, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseLog(f)
}

// RemoveLog deletes the log of id in logQueue, if there is one.
func (s *Spool) RemoveLog(logQueue, id string) error {
	err := os.Remove(s.Path(logQueue, id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove %s log of %s: %w", logQueue, id, err)
	}
	return nil
}

// LogField is one field of a log entry: a "name=value" line, or one of
// the two fields of an old-style "<recipient>: reason" line. The slices
// point into the log's buffer.
type LogField struct{ Name, Value []byte }

// Names of the fields an old-style line gives.
var (
	fieldRecipient = []byte("recipient")
	fieldReason    = []byte("reason")
)

// ScanLog is the one reader of defer, bounce and trace logs (reference
// §3). It splits buf into entries and calls fn with each entry's fields
// in file order; complete is false for a last entry the end of the file
// cuts off (no empty line after it), which Postfix's showq drops. The
// rules are those of Postfix's readers, checked against postqueue 3.7:
//
//   - a line is a C string: it ends at its first NUL byte; an empty line
//     ends the entry that is open, if any;
//   - every other line opens an entry;
//   - a line that begins with an ASCII letter or digit is "name = value",
//     spaces around both trimmed; one without that shape is ignored;
//   - a line "<address>: text" is the old format and gives the fields
//     recipient and reason; any other line is ignored;
//   - later fields override earlier ones with the same name (the
//     caller's job, as it keeps what it wants).
//
// scratch is room for the fields, returned for reuse, so a scan of many
// logs does not allocate per log.
func ScanLog(buf []byte, scratch []LogField, fn func(fields []LogField, complete bool)) []LogField {
	fields := scratch[:0]
	open := false
	for len(buf) > 0 {
		line := buf
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			line, buf = buf[:i], buf[i+1:]
		} else {
			buf = nil // the last line has no newline
		}
		if i := bytes.IndexByte(line, 0); i >= 0 {
			line = line[:i]
		}
		if len(line) == 0 {
			if open {
				fn(fields, true)
				fields, open = fields[:0], false
			}
			continue
		}
		open = true
		if isAlnum(line[0]) {
			if name, value, ok := splitNameValue(line); ok {
				fields = append(fields, LogField{name, value})
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
		fields = append(fields, LogField{fieldRecipient, line[1:i]}, LogField{fieldReason, trimLeftSpace(line[i+2:])})
	}
	if open {
		fn(fields, false)
	}
	return fields[:0]
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
}

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

// ParseLog parses a defer, bounce or trace log with ScanLog into entries.
// An entry with no recipient is dropped; "<>" as the recipient is the
// null address (the caller shows it as MAILER-DAEMON). Unlike showq, it
// keeps a last entry the end of the file cuts off: the writer may have
// been stopped there, and the outcome it records still happened.
func ParseLog(r io.Reader) ([]LogEntry, error) {
	buf, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("spool: read log: %w", err)
	}
	var out []LogEntry
	ScanLog(buf, nil, func(fields []LogField, _ bool) {
		var cur LogEntry
		have := false
		for _, f := range fields {
			val := string(f.Value)
			switch string(f.Name) {
			case "recipient":
				if val == "<>" {
					val = ""
				}
				cur.Recipient, have = val, true
			case "original_recipient":
				cur.OrigRcpt = val
			case "offset":
				cur.Offset, _ = strconv.ParseInt(val, 10, 64)
			case "dsn_orig_rcpt":
				cur.DSNOrigRcpt = val
			case "notify_flags":
				cur.NotifyFlags, _ = strconv.Atoi(val)
			case "status":
				cur.Status = val
			case "action":
				cur.Action = val
			case "diag_type":
				cur.DiagType = val
			case "diag_text":
				cur.DiagText = val
			case "mta_type":
				cur.MTAType = val
			case "mta_mname":
				cur.MTAName = val
			case "reason":
				cur.Reason = val
			}
		}
		if have {
			out = append(out, cur)
		}
	})
	return out, nil
}
