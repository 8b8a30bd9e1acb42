package spool

import (
	"bufio"
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

// ParseLog parses a defer, bounce or trace log as Postfix's bounce_log
// reader does: blank lines delimit entries; lines that begin with a letter
// or digit are name=value; other lines (the "<rcpt>: reason" line) are
// ignored, as are unknown names. An entry with no recipient line is
// dropped; an empty recipient becomes "" (the caller shows it as
// MAILER-DAEMON).
func ParseLog(r io.Reader) ([]LogEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var out []LogEntry
	var cur LogEntry
	have := false
	flush := func() {
		if have {
			out = append(out, cur)
		}
		cur, have = LogEntry{}, false
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			flush()
			continue
		}
		c := line[0]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			continue
		}
		val := string(v)
		switch string(k) {
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
	flush()
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("spool: read log: %w", err)
	}
	return out, nil
}
