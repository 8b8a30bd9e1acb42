package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SizeRecord is the fixed-width C record (reference §2.3).
type SizeRecord struct {
	MessageLen int64 // content segment length: X offset minus DataOffset
	DataOffset int64 // offset of the first content record
	RcptCount  int64 // recipients when cleanup ran
	QmgrFlags  int64
	ContentLen int64 // message length including milter edits; 0 means MessageLen
	SMTPUTF8   int64
}

// SizeRecordLen is the length of the C record's data: six %15ld fields.
const SizeRecordLen = 6*15 + 5

// Format renders the record's data as Postfix writes it.
func (c SizeRecord) Format() string {
	return fmt.Sprintf("%15d %15d %15d %15d %15d %15d",
		c.MessageLen, c.DataOffset, c.RcptCount, c.QmgrFlags, c.ContentLen, c.SMTPUTF8)
}

// ParseSizeRecord parses C record data. Postfix files from before 2.4 have
// fewer fields; missing fields are zero.
func ParseSizeRecord(data []byte) (SizeRecord, error) {
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return SizeRecord{}, fmt.Errorf("%w: bad size record %q", ErrCorrupt, data)
	}
	var v [6]int64
	for i := 0; i < len(f) && i < 6; i++ {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return SizeRecord{}, fmt.Errorf("%w: bad size record %q", ErrCorrupt, data)
		}
		v[i] = n
	}
	return SizeRecord{v[0], v[1], v[2], v[3], v[4], v[5]}, nil
}

// DisplaySize returns the size mailq shows for a size record's data: the
// first field when the record holds only digits and spaces, else -1.
func DisplaySize(data []byte) int64 {
	for _, c := range data {
		if c != ' ' && (c < '0' || c > '9') {
			return -1
		}
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// Attr is a named attribute (A record).
type Attr struct{ Name, Value string }

// Recipient is one R (or D) record and what precedes it.
type Recipient struct {
	Address   string
	Orig      string // O record before it
	DSNOrig   string // A dsn_orig_rcpt= before it
	Notify    int    // A dsn_notify= before it
	Offset    int64  // offset of the R/D record: the byte MarkDone rewrites
	Done      bool
	Extracted bool // found in the extracted segment (sendmail -t)
}

// Envelope is what a queue file says about its message, without the
// content.
type Envelope struct {
	HasSize       bool
	Size          SizeRecord
	SizeData      string // the raw C record text
	HasArrival    bool
	Arrival       time.Time // first T record
	CreateTime    int64     // A create_time=, or c, or T seconds
	HasSender     bool
	Sender        string
	FullName      string
	Filter        string // envelope L record
	WarnTime      int64  // W record; -1 once the warning is sent
	WarnOffset    int64  // offset of the W record, 0 when absent
	Attrs         []Attr
	Recipients    []Recipient
	ContentOffset int64 // offset just past the M record, -1 if none
	ExtractOffset int64 // offset of the X record, -1 if none
	DSNEnvID      string
	DSNRet        int
}

// Attr returns the value of the first named attribute called name.
func (e *Envelope) Attr(name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
}

// Pending returns the recipients still to deliver.
func (e *Envelope) Pending() []Recipient {
	var out []Recipient
	for _, r := range e.Recipients {
		if !r.Done {
			out = append(out, r)
		}
	}
	return out
}

// ReadOptions says how much of a queue file ReadEnvelope must look at.
type ReadOptions struct {
	// SkipContent jumps over the content using the size record, as qmgr
	// and qshape do, instead of walking every content record.
	SkipContent bool
}

// ReadEnvelope reads the envelope and extracted segments of a queue file.
// It returns an error wrapping ErrCorrupt when the file is damaged.
func ReadEnvelope(r *Reader, opt ReadOptions) (*Envelope, error) {
	e := &Envelope{ContentOffset: -1, ExtractOffset: -1}
	var pendingOrig, pendingDSNOrig string
	var pendingNotify int
	segment := 0 // 0 envelope, 1 content, 2 extracted
	first := true
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return e, err
		}
		if first {
			first = false
			if !strings.ContainsRune("CTcFILSDRO/WVA>K<ion", rune(rec.Type)) || rec.Type == 0 {
				return e, fmt.Errorf("%w: first record type %d is not an envelope record", ErrCorrupt, rec.Type)
			}
		}
		if segment == 1 {
			switch rec.Type {
			case RecNorm, RecCont:
				continue
			case RecXtra:
				segment = 2
				e.ExtractOffset = rec.Offset
				continue
			default:
				return e, fmt.Errorf("%w: record type %d at offset %d inside message content", ErrCorrupt, rec.Type, rec.Offset)
			}
		}
		switch rec.Type {
		case RecSize:
			if e.HasSize {
				continue
			}
			e.SizeData = string(rec.Data)
			sz, err := ParseSizeRecord(rec.Data)
			if err != nil {
				return e, err
			}
			e.HasSize, e.Size = true, sz
		case RecTime:
			if e.HasArrival {
				continue
			}
			f := strings.Fields(string(rec.Data))
			if len(f) == 0 {
				return e, fmt.Errorf("%w: bad arrival time %q", ErrCorrupt, rec.Data)
			}
			sec, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return e, fmt.Errorf("%w: bad arrival time %q", ErrCorrupt, rec.Data)
			}
			var usec int64
			if len(f) > 1 {
				usec, _ = strconv.ParseInt(f[1], 10, 64)
			}
			e.HasArrival, e.Arrival = true, time.Unix(sec, usec*1000)
		case RecCreateTime:
			if n, err := strconv.ParseInt(strings.TrimSpace(string(rec.Data)), 10, 64); err == nil && e.CreateTime == 0 {
				e.CreateTime = n
			}
		case RecFullName:
			e.FullName = string(rec.Data)
		case RecFilter:
			e.Filter = string(rec.Data)
		case RecSender:
			if e.HasSender {
				return e, fmt.Errorf("%w: duplicate sender record", ErrCorrupt)
			}
			e.HasSender, e.Sender = true, string(rec.Data)
		case RecWarn:
			n, err := strconv.ParseInt(strings.TrimSpace(string(rec.Data)), 10, 64)
			if err == nil {
				e.WarnTime, e.WarnOffset = n, rec.Offset
			}
		case RecAttr:
			name, value, _ := strings.Cut(string(rec.Data), "=")
			switch name {
			case "create_time":
				if n, err := strconv.ParseInt(value, 10, 64); err == nil {
					e.CreateTime = n
				}
			case "dsn_orig_rcpt":
				pendingDSNOrig = value
			case "notify_flags", "dsn_notify":
				// Postfix 3.x writes DSN data as named attributes.
				pendingNotify, _ = strconv.Atoi(value)
			case "envelope_id":
				e.DSNEnvID = value
			case "ret_flags":
				e.DSNRet, _ = strconv.Atoi(value)
			}
			e.Attrs = append(e.Attrs, Attr{name, value})
		case RecOrigRcpt:
			pendingOrig = string(rec.Data)
		case RecDSNNotify:
			pendingNotify, _ = strconv.Atoi(string(rec.Data))
		case RecDSNOrcpt:
			pendingDSNOrig = string(rec.Data)
		case RecDSNEnvID:
			e.DSNEnvID = string(rec.Data)
		case RecDSNRet:
			e.DSNRet, _ = strconv.Atoi(string(rec.Data))
		case RecRcpt, RecDone:
			e.Recipients = append(e.Recipients, Recipient{
				Address: string(rec.Data), Orig: pendingOrig, DSNOrig: pendingDSNOrig,
				Notify: pendingNotify, Offset: rec.Offset, Done: rec.Type == RecDone,
				Extracted: segment == 2,
			})
			pendingOrig, pendingDSNOrig, pendingNotify = "", "", 0
		case RecMesg:
			if segment != 0 {
				return e, fmt.Errorf("%w: second content marker at offset %d", ErrCorrupt, rec.Offset)
			}
			segment = 1
			e.ContentOffset = r.Offset()
			if opt.SkipContent && e.HasSize && e.Size.DataOffset == e.ContentOffset {
				// Jump to the X record, as qmgr does; fall back to
				// walking when the size record is wrong.
				save := r.Offset()
				r.SeekTo(e.Size.DataOffset + e.Size.MessageLen)
				if x, err := r.Next(); err == nil && x.Type == RecXtra {
					segment = 2
					e.ExtractOffset = x.Offset
				} else {
					r.SeekTo(save)
				}
			}
		case RecXtra:
			segment = 2
			e.ExtractOffset = rec.Offset
		case RecEnd:
			if e.CreateTime == 0 && e.HasArrival {
				e.CreateTime = e.Arrival.Unix()
			}
			return e, nil
		}
	}
	return e, fmt.Errorf("%w: no end record", ErrCorrupt)
}

// ReadFile opens and reads the envelope of the queue file at path.
func ReadFile(path string, opt ReadOptions) (*Envelope, fs.FileInfo, error) {
	f, err := Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	env, err := ReadEnvelope(NewReader(f, fi.Size()), opt)
	return env, fi, err
}

// MarkDone marks the recipient whose R record starts at offset as
// delivered, by overwriting its type byte with D (reference §2.5), and
// syncs the file. Lengths do not change, so no other offset moves.
func MarkDone(path string, offset int64, sync bool) error {
	// Plain descriptors: a delivery marks each recipient so, and an
	// *os.File would cost a fcntl and a finalizer each time.
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("spool: mark done: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	return markDone(rawFD(fd), path, offset, sync)
}

// markDone rewrites the record at offset in f (the file at path) as a
// done recipient; one already done is left alone.
func markDone(f recordFile, path string, offset int64, sync bool) error {
	var b [1]byte
	if n, err := f.ReadAt(b[:], offset); err != nil || n != 1 {
		if err == nil {
			err = io.EOF
		}
		return fmt.Errorf("spool: mark done %s at %d: %w", path, offset, err)
	}
	switch typ := b[0]; typ {
	case RecDone:
		return nil
	case RecRcpt:
	default:
		return fmt.Errorf("spool: mark done %s at %d: %w: record type %d is not a recipient", path, offset, ErrCorrupt, typ)
	}
	if _, err := f.WriteAt([]byte{RecDone}, offset); err != nil {
		return fmt.Errorf("spool: mark done %s at %d: %w", path, offset, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("spool: mark done %s: sync: %w", path, err)
		}
	}
	return nil
}

// recordFile is what markDone needs of a file: an *os.File, or a rawFD.
type recordFile interface {
	ReadAt(b []byte, off int64) (int, error)
	WriteAt(b []byte, off int64) (int, error)
	Sync() error
}

// rawFD is a plain descriptor as a recordFile.
type rawFD int

func (fd rawFD) ReadAt(b []byte, off int64) (int, error)  { return unix.Pread(int(fd), b, off) }
func (fd rawFD) WriteAt(b []byte, off int64) (int, error) { return unix.Pwrite(int(fd), b, off) }
func (fd rawFD) Sync() error                              { return unix.Fsync(int(fd)) }

// UpdateWarnTime rewrites the fixed-width W record in place (-1 once the
// delay warning is sent).
func UpdateWarnTime(path string, offset int64, value int64) error {
	f, err := OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: update warning time: %w", err)
	}
	defer f.Close()
	var hdr [2]byte
	if _, err := f.ReadAt(hdr[:], offset); err != nil || hdr[0] != RecWarn || hdr[1] != 15 {
		return fmt.Errorf("spool: update warning time %s at %d: %w", path, offset, ErrCorrupt)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf("%15d", value)), offset+2); err != nil {
		return fmt.Errorf("spool: update warning time %s: %w", path, err)
	}
	return f.Sync()
}
