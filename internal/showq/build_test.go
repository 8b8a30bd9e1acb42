package showq

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/internal/spool"
)

// tmsg describes one message of a test spool. The builder writes it with
// the spool package's writer (or as raw bytes), renames it to its fixed
// ID so outputs are reproducible, and sets its mode, mtime and defer log.
type tmsg struct {
	queue   string
	id      string
	arrival time.Time
	sender  string
	rcpts   []trcpt
	body    []string
	mode    os.FileMode // 0 means 0700 (0744 in maildrop)
	mtime   time.Time   // zero means arrival + 1h
	// log entries for defer/ID. Offset is filled in from the recipient
	// with the same address when it is -1.
	log    []spool.LogEntry
	rawLog string // appended to defer/ID after log, verbatim
	// raw, when set, is the whole queue file (foreign, corrupt or
	// postdrop-style files); the fields above except queue, id, mode,
	// mtime and logs are ignored.
	raw []byte
}

type trcpt struct {
	addr string
	done bool
}

func rcpts(addrs ...string) []trcpt {
	var out []trcpt
	for _, a := range addrs {
		out = append(out, trcpt{addr: a})
	}
	return out
}

// buildSpool creates the queue directories under root and writes msgs in
// order.
func buildSpool(t testing.TB, sp *spool.Spool, msgs []tmsg) {
	t.Helper()
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		writeMsg(t, sp, &msgs[i])
	}
}

func writeMsg(t testing.TB, sp *spool.Spool, m *tmsg) {
	t.Helper()
	dst := sp.Path(m.queue, m.id)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	mode := m.mode
	if mode == 0 {
		mode = 0o700
		if m.queue == spool.Maildrop {
			mode = 0o744
		}
	}
	var offsets map[string]int64
	if m.raw != nil {
		if err := os.WriteFile(dst, m.raw, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		// Written in an unhashed incoming/, then renamed into place.
		staging := spool.New(sp.Root)
		staging.NoSync = true
		staging.HashQueues = map[string]bool{}
		f, err := staging.NewFile(spool.Incoming, m.arrival)
		if err != nil {
			t.Fatal(err)
		}
		env := &spool.NewEnvelope{
			Arrival: m.arrival,
			Attrs:   []spool.Attr{{Name: "rewrite_context", Value: "local"}},
			Sender:  m.sender,
		}
		for _, r := range m.rcpts {
			env.Recipients = append(env.Recipients, spool.NewRecipient{Address: r.addr, DSNOrig: "rfc822;" + r.addr})
		}
		if err := f.WriteEnvelope(env); err != nil {
			t.Fatal(err)
		}
		body := m.body
		if body == nil {
			body = []string{"Subject: test", "From: " + m.sender, "", "Hello."}
		}
		for _, l := range body {
			f.WriteLine([]byte(l))
		}
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		if f.Path != dst {
			if err := os.Rename(f.Path, dst); err != nil {
				t.Fatal(err)
			}
		}
		e, _, err := spool.ReadFile(dst, spool.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		offsets = map[string]int64{}
		for i, r := range e.Recipients {
			if _, dup := offsets[r.Address]; !dup {
				offsets[r.Address] = r.Offset
			}
			if m.rcpts[i].done {
				if err := spool.MarkDone(dst, r.Offset, false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := os.Chmod(dst, mode); err != nil {
		t.Fatal(err)
	}
	if len(m.log) > 0 {
		entries := append([]spool.LogEntry(nil), m.log...)
		for i := range entries {
			if entries[i].Offset == -1 {
				entries[i].Offset = offsets[entries[i].Recipient]
			}
		}
		if err := sp.AppendLog(spool.Defer, m.id, entries...); err != nil {
			t.Fatal(err)
		}
	}
	if m.rawLog != "" {
		p := sp.Path(spool.Defer, m.id)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(m.rawLog)
		f.Close()
	}
	mt := m.mtime
	if mt.IsZero() {
		mt = m.arrival.Add(time.Hour)
	}
	if err := os.Chtimes(dst, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// deferEntry is a defer log entry as Postfix's smtp client writes it for
// a soft failure.
func deferEntry(rcpt, reason string) spool.LogEntry {
	return spool.LogEntry{
		Recipient: rcpt, Offset: -1, DSNOrigRcpt: "rfc822;" + rcpt,
		Status: "4.4.1", Action: "delayed", Reason: reason,
	}
}

// rawFile assembles a queue file from records given as "T:data" strings
// (one type byte, a colon, the data).
func rawFile(recs ...string) []byte {
	var b []byte
	for _, r := range recs {
		typ, data, _ := strings.Cut(r, ":")
		b = spool.AppendRecordString(b, typ[0], data)
	}
	return b
}

// postdropFile is a maildrop file as postdrop writes it: no size record.
func postdropFile(arrival time.Time, sender string, rcpts ...string) []byte {
	recs := []string{
		"T:" + itoa(arrival.Unix()) + " 0",
		"A:rewrite_context=local",
		"F:root",
		"S:" + sender,
	}
	for _, r := range rcpts {
		recs = append(recs, "R:"+r)
	}
	recs = append(recs, "M:", "N:Subject: dropped", "N:", "N:body", "X:", "E:")
	return rawFile(recs...)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
