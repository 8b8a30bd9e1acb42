package spool

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// FuzzReadEnvelope feeds arbitrary bytes to the record reader and the
// envelope parser: they must return a record stream or an error wrapping
// ErrCorrupt, never panic, loop or allocate without bound.
func FuzzReadEnvelope(f *testing.F) {
	if b, err := os.ReadFile("testdata/queuefile-54AB4BA048.bin"); err == nil {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(AppendRecordString(AppendRecordString(nil, RecPtr, "              0"), RecEnd, ""))
	f.Add([]byte("T\x011"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ReadEnvelope(NewBytesReader(b), ReadOptions{SkipContent: true})
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error does not wrap ErrCorrupt: %v", err)
		}
		if err == nil && e == nil {
			t.Fatal("nil envelope without error")
		}
		// Raw mode walks every record to the end of the file.
		r := NewBytesReader(b)
		r.SetRaw(true)
		for i := 0; ; i++ {
			rec, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("raw read: %v", err)
				}
				break
			}
			if rec.Offset < 0 || rec.Offset >= int64(len(b)) || i > len(b) {
				t.Fatalf("record %d at offset %d out of range", i, rec.Offset)
			}
		}
	})
}

// FuzzParseLog checks that the defer-log parser never panics and that what
// it parses renders and parses back to the same entries.
func FuzzParseLog(f *testing.F) {
	if b, err := os.ReadFile("testdata/defer-log-99240BA05B.raw"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("\nrecipient=a@b\noffset=12\nreason=x\n\n"))
	f.Add([]byte("recipient=\nstatus=5.0.0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, err := ParseLog(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out []byte
		for i := range ents {
			out = ents[i].AppendTo(out)
		}
		again, err := ParseLog(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again) != len(ents) {
			t.Fatalf("round trip: %d entries became %d", len(ents), len(again))
		}
	})
}
