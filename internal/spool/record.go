package spool

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Record types, as Postfix 3.7's rec_type.h defines them. The same byte can
// mean different things in different segments (L is the content filter in
// the envelope and an unterminated text line in the content).
const (
	RecSize        byte = 'C' // message_size: six %15ld fields
	RecTime        byte = 'T' // message_arrival_time: "sec usec"
	RecCreateTime  byte = 'c' // queue_file_create_time (legacy)
	RecFullName    byte = 'F' // sender_fullname
	RecInspector   byte = 'I' // content_inspector
	RecFilter      byte = 'L' // content_filter (envelope)
	RecSender      byte = 'S' // sender
	RecDone        byte = 'D' // done_recipient
	RecRcpt        byte = 'R' // recipient
	RecOrigRcpt    byte = 'O' // original_recipient
	RecCanceled    byte = '/' // canceled_recipient
	RecWarn        byte = 'W' // warning_message_time, %15ld, -1 when sent
	RecAttr        byte = 'A' // named_attribute name=value
	RecKill        byte = 'K' // killed_record
	RecRedirect    byte = '>' // redirect_to
	RecFlags       byte = 'f' // flags
	RecDelay       byte = 'd' // cleanup delay
	RecMesg        byte = 'M' // message_content: start of content
	RecNorm        byte = 'N' // regular_text: a line, newline implied
	RecCont        byte = 'L' // unterminated_text (content): line continues
	RecDTXT        byte = 'w' // padding
	RecXtra        byte = 'X' // extracted_info: start of extracted segment
	RecRRTO        byte = 'r' // return_receipt
	RecErrTo       byte = 'e' // errors_to
	RecPrio        byte = 'P' // priority
	RecPtr         byte = 'p' // pointer_record, "%15ld" offset
	RecVerp        byte = 'V' // verp_delimiters
	RecDSNRet      byte = '<' // dsn_return_flags
	RecDSNEnvID    byte = 'i' // dsn_envelope_id
	RecDSNOrcpt    byte = 'o' // dsn_original_recipient
	RecDSNNotify   byte = 'n' // dsn_notify_flags
	RecMilterCount byte = 'm' // milter count
	RecEnd         byte = 'E' // message_end
)

// MaxRecordLen is the largest record length the reader accepts. Postfix's
// record reader refuses lengths that do not fit its int; we refuse anything
// that needs more than 32 bits of varint.
const MaxRecordLen = 1<<31 - 1

// maxBackJumps bounds how often a reader follows a pointer record backwards,
// as Postfix does, so a file whose pointers form a loop ends with an error.
const maxBackJumps = 10000

// ErrCorrupt reports a queue file that cannot be parsed. Errors from the
// reader wrap it, so callers can tell a damaged file from an I/O failure.
var ErrCorrupt = errors.New("corrupt queue file")

// Record is one record of a queue file: its type byte, its data and the
// offset of its type byte in the file.
type Record struct {
	Type   byte
	Data   []byte
	Offset int64
}

// RecordName returns the label postcat prints for a record type, given the
// segment it appears in (content and envelope differ for 'L').
func RecordName(typ byte, inContent bool) string {
	if inContent {
		switch typ {
		case RecNorm:
			return "regular_text"
		case RecCont:
			return "unterminated_text"
		}
	}
	if n, ok := recordNames[typ]; ok {
		return n
	}
	return "unknown_record_type_" + strconv.Itoa(int(typ))
}

var recordNames = map[byte]string{
	RecSize: "message_size", RecTime: "message_arrival_time",
	RecCreateTime: "queue_file_create_time", RecFullName: "sender_fullname",
	RecInspector: "content_inspector", RecFilter: "content_filter",
	RecSender: "sender", RecDone: "done_recipient", RecRcpt: "recipient",
	RecOrigRcpt: "original_recipient", RecCanceled: "canceled_recipient",
	RecWarn: "warning_message_time", RecAttr: "named_attribute",
	RecKill: "killed_record", RecRedirect: "redirect_to", RecFlags: "flags",
	RecDelay: "delay", RecMesg: "message_content", RecNorm: "regular_text",
	RecDTXT: "padding", RecXtra: "extracted_info", RecRRTO: "return_receipt",
	RecErrTo: "errors_to", RecPrio: "priority", RecPtr: "pointer_record",
	RecVerp: "verp_delimiters", RecDSNRet: "dsn_return_flags",
	RecDSNEnvID: "dsn_envelope_id", RecDSNOrcpt: "dsn_original_recipient",
	RecDSNNotify: "dsn_notify_flags", RecMilterCount: "milter_count",
	RecEnd: "message_end",
}

// AppendRecord appends one framed record to buf: the type byte, the data
// length as a little-endian base-128 varint, then the data.
func AppendRecord(buf []byte, typ byte, data []byte) []byte {
	buf = append(buf, typ)
	buf = appendVarint(buf, len(data))
	return append(buf, data...)
}

// AppendRecordString is AppendRecord for string data.
func AppendRecordString(buf []byte, typ byte, data string) []byte {
	buf = append(buf, typ)
	buf = appendVarint(buf, len(data))
	return append(buf, data...)
}

func appendVarint(buf []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(buf, b)
		}
		buf = append(buf, b|0x80)
	}
}

// RecordSize is the number of bytes a record with dataLen bytes of data
// occupies on disk.
func RecordSize(dataLen int) int {
	n := 2
	for l := dataLen >> 7; l > 0; l >>= 7 {
		n++
	}
	return n + dataLen
}

// Reader reads records from a queue file held in memory or on disk. By
// default it is transparent the way Postfix's rec_get is: it follows
// pointer records, skips padding, and returns io.EOF after the E record.
// In raw mode (postcat -r) it returns every record in file order and keeps
// going after E.
type Reader struct {
	src       io.ReaderAt
	size      int64
	off       int64
	buf       []byte // window of the file starting at bufOff
	bufOff    int64
	raw       bool
	done      bool
	backJumps int
}

// NewReader returns a Reader over src, whose total length is size.
func NewReader(src io.ReaderAt, size int64) *Reader {
	return &Reader{src: src, size: size}
}

// Reset makes r read src, whose total length is size, from the start,
// keeping its buffer: a scan over many files reuses one Reader per worker
// instead of allocating a buffer per file.
func (r *Reader) Reset(src io.ReaderAt, size int64) {
	buf := r.buf
	if r.src == nil {
		buf = nil // an in-memory reader's buffer is the caller's file
	}
	*r = Reader{src: src, size: size, buf: buf[:0], bufOff: 0}
}

// NewBytesReader returns a Reader over a queue file held in memory.
func NewBytesReader(b []byte) *Reader {
	return &Reader{buf: b, bufOff: 0, size: int64(len(b))}
}

// SetRaw switches raw mode on or off.
func (r *Reader) SetRaw(raw bool) { r.raw = raw }

// Offset returns the offset at which the next record will be read.
func (r *Reader) Offset() int64 { return r.off }

// SeekTo makes the next record be read at off.
func (r *Reader) SeekTo(off int64) {
	r.off = off
	r.done = false
}

// Next returns the next record. The returned data is only valid until the
// next call. At the end it returns io.EOF; for a damaged file an error that
// wraps ErrCorrupt.
func (r *Reader) Next() (Record, error) {
	for {
		if r.done {
			return Record{}, io.EOF
		}
		rec, err := r.readAt(r.off)
		if err != nil {
			return Record{}, err
		}
		r.off = rec.Offset + int64(RecordSize(len(rec.Data)))
		if r.raw {
			return rec, nil
		}
		switch rec.Type {
		case RecDTXT:
			continue
		case RecPtr:
			target, err := ParsePointer(rec.Data)
			if err != nil {
				return Record{}, fmt.Errorf("%w: pointer record at offset %d: %v", ErrCorrupt, rec.Offset, err)
			}
			if target == 0 {
				continue // a placeholder cleanup reserved and never used
			}
			if target < rec.Offset {
				r.backJumps++
				if r.backJumps > maxBackJumps {
					return Record{}, fmt.Errorf("%w: too many pointer jumps", ErrCorrupt)
				}
			}
			if target >= r.size {
				return Record{}, fmt.Errorf("%w: pointer record at offset %d points past the end", ErrCorrupt, rec.Offset)
			}
			r.off = target
			continue
		case RecEnd:
			r.done = true
		}
		return rec, nil
	}
}

// ParsePointer reads the decimal offset of a pointer record.
func ParsePointer(data []byte) (int64, error) {
	s := strings.TrimSpace(string(data))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad pointer %q", s)
	}
	return n, nil
}

// readAt decodes the record whose type byte is at off.
func (r *Reader) readAt(off int64) (Record, error) {
	if off >= r.size {
		if off == r.size {
			if r.raw {
				return Record{}, io.EOF
			}
			return Record{}, fmt.Errorf("%w: premature end of file at offset %d", ErrCorrupt, off)
		}
		return Record{}, fmt.Errorf("%w: offset %d beyond end of file", ErrCorrupt, off)
	}
	// Header: type byte plus at most 5 varint bytes.
	hdr, err := r.window(off, 6)
	if err != nil {
		return Record{}, err
	}
	if len(hdr) < 2 {
		return Record{}, fmt.Errorf("%w: truncated record at offset %d", ErrCorrupt, off)
	}
	typ := hdr[0]
	var length uint64
	var shift uint
	i := 1
	for ; ; i++ {
		if i >= len(hdr) {
			return Record{}, fmt.Errorf("%w: truncated record length at offset %d", ErrCorrupt, off)
		}
		b := hdr[i]
		length |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
		if shift > 28 {
			return Record{}, fmt.Errorf("%w: record length too long at offset %d", ErrCorrupt, off)
		}
	}
	if length > MaxRecordLen {
		return Record{}, fmt.Errorf("%w: record length %d too large at offset %d", ErrCorrupt, length, off)
	}
	dataOff := off + int64(i) + 1
	if dataOff+int64(length) > r.size {
		return Record{}, fmt.Errorf("%w: record at offset %d (type %d, length %d) runs past the end of file", ErrCorrupt, off, typ, length)
	}
	data, err := r.window(dataOff, int(length))
	if err != nil {
		return Record{}, err
	}
	if len(data) < int(length) {
		return Record{}, fmt.Errorf("%w: short record at offset %d", ErrCorrupt, off)
	}
	return Record{Type: typ, Data: data[:length], Offset: off}, nil
}

// window returns up to n bytes of the file starting at off, reading from
// the source when the current buffer does not hold them.
func (r *Reader) window(off int64, n int) ([]byte, error) {
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		s := off - r.bufOff
		return r.buf[s : s+int64(n)], nil
	}
	if r.src == nil {
		// In-memory reader: return what exists.
		if off >= int64(len(r.buf)) {
			return nil, nil
		}
		end := off + int64(n)
		if end > int64(len(r.buf)) {
			end = int64(len(r.buf))
		}
		return r.buf[off:end], nil
	}
	want := n
	if want < 16384 {
		want = 16384
	}
	if rem := r.size - off; int64(want) > rem {
		want = int(rem)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	m, err := r.src.ReadAt(r.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("spool: read at offset %d: %w", off, err)
	}
	r.buf = r.buf[:m]
	r.bufOff = off
	if m > n {
		m = n
	}
	return r.buf[:m], nil
}
