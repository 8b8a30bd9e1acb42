package spool

import (
	"errors"
	"fmt"
	"io"
	"strconv"
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

// LengthRule is how a record's length is decoded. Postfix's record
// reader and the tools that read queue files their own way differ only
// here and in how pointers are followed, so these are options of the one
// decoder rather than separate readers.
type LengthRule uint8

const (
	// LengthRecGet is Postfix's rec_get: at most five length bytes, and a
	// length beyond MaxRecordLen, or cut off by the end of the file, makes
	// the file corrupt.
	LengthRecGet LengthRule = iota
	// LengthSigned is postcat's: the length is computed in a C int, so
	// bits beyond 32 vanish and a set bit 31 makes it negative, which is
	// an error (ErrLengthNegative).
	LengthSigned
	// LengthScript is the qshape script's: at most three length bytes; the
	// end of the file inside the length leaves the length read so far; a
	// type byte '0' reads as the end, and a short data read ends the walk.
	LengthScript
)

// ErrTruncated reports a file that ends where a record should be or
// inside one; it wraps ErrCorrupt.
var ErrTruncated = fmt.Errorf("%w: premature end of file", ErrCorrupt)

// Errors of the length decoder, for callers that word them themselves
// (postcat). Both wrap ErrCorrupt.
var (
	ErrLengthBits     = fmt.Errorf("%w: too many length bits", ErrCorrupt)
	ErrLengthNegative = fmt.Errorf("%w: negative record length", ErrCorrupt)
)

// LengthDecoder decodes a record length, a little-endian base-128 number,
// one byte at a time under a LengthRule. The Reader uses it on its window
// and postcat on its byte stream, so there is one decoding of the framing.
type LengthDecoder struct {
	Rule  LengthRule
	acc   uint64
	shift uint
}

// Reset starts a new length.
func (d *LengthDecoder) Reset() { d.acc, d.shift = 0, 0 }

// maxShift is the shift of the last length byte the rule allows.
func (d *LengthDecoder) maxShift() uint {
	if d.Rule == LengthScript {
		return 14
	}
	return 28
}

// Add takes the next length byte and reports whether the length is
// complete; ErrLengthBits when the rule allows no further byte.
func (d *LengthDecoder) Add(b byte) (bool, error) {
	d.acc |= uint64(b&0x7f) << d.shift
	if b&0x80 == 0 {
		return true, nil
	}
	d.shift += 7
	if d.shift > d.maxShift() {
		return false, ErrLengthBits
	}
	return false, nil
}

// Value returns the length decoded so far, as the rule computes it.
func (d *LengthDecoder) Value() (int64, error) {
	switch d.Rule {
	case LengthSigned:
		n := int64(int32(uint32(d.acc)))
		if n < 0 {
			return n, ErrLengthNegative
		}
		return n, nil
	case LengthRecGet:
		if d.acc > MaxRecordLen {
			return int64(d.acc), fmt.Errorf("%w: record length %d too large", ErrCorrupt, d.acc)
		}
	}
	return int64(d.acc), nil
}

// PointerRule is how a Reader treats pointer (p) records.
type PointerRule uint8

const (
	// PointersRecGet follows them as Postfix's rec_get does: a target of 0
	// is a placeholder and is passed over, a target at or past the end of
	// the file is corrupt, and at most maxBackJumps backward jumps are
	// followed, so pointers in a loop end with an error.
	PointersRecGet PointerRule = iota
	// PointersScript returns them to the caller, who follows those the
	// qshape script follows with Follow: a positive target (as the
	// options' PointerValue reads it), past the end meaning the end, and
	// at most maxBackJumps jumps of either direction.
	PointersScript
)

// ReaderOptions are the quirks of one reading of a queue file. The zero
// value reads as Postfix's qmgr, cleanup and showq do.
type ReaderOptions struct {
	// Raw returns every record in file order, pointers and padding
	// included, and keeps going after E (postcat -r).
	Raw      bool
	Length   LengthRule
	Pointers PointerRule
	// PointerValue reads a pointer record's target for Follow; nil reads
	// a decimal number after optional white space, as C's atol does.
	PointerValue func(data []byte) (int64, bool)
}

// Reader reads records from a queue file held in memory or on disk,
// through a window it keeps and reuses across files (Reset). By default
// it is transparent the way Postfix's rec_get is: it follows pointer
// records, skips padding, and returns io.EOF after the E record.
// ReaderOptions select the quirks of Postfix's other readers.
type Reader struct {
	src       io.ReaderAt
	size      int64
	off       int64
	buf       []byte // window of the file starting at bufOff
	bufOff    int64
	opt       ReaderOptions
	done      bool
	backJumps int
}

// NewReader returns a Reader over src, whose total length is size.
func NewReader(src io.ReaderAt, size int64) *Reader {
	return &Reader{src: src, size: size}
}

// Reset makes r read src, whose total length is size, from the start,
// keeping its buffer and options: a scan over many files reuses one
// Reader per worker instead of allocating a buffer per file.
func (r *Reader) Reset(src io.ReaderAt, size int64) {
	buf := r.buf
	if r.src == nil {
		buf = nil // an in-memory reader's buffer is the caller's file
	}
	*r = Reader{src: src, size: size, buf: buf[:0], opt: r.opt}
}

// NewBytesReader returns a Reader over a queue file held in memory.
func NewBytesReader(b []byte) *Reader {
	return &Reader{buf: b, bufOff: 0, size: int64(len(b))}
}

// SetOptions sets the quirks of the reading.
func (r *Reader) SetOptions(opt ReaderOptions) { r.opt = opt }

// SetRaw switches raw mode on or off.
func (r *Reader) SetRaw(raw bool) { r.opt.Raw = raw }

// Size returns the length of the file being read.
func (r *Reader) Size() int64 { return r.size }

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
		if r.opt.Raw {
			return rec, nil
		}
		switch rec.Type {
		case RecDTXT:
			continue
		case RecPtr:
			if r.opt.Pointers == PointersScript {
				return rec, nil
			}
			target, err := ParsePointer(rec.Data)
			if err != nil {
				return Record{}, fmt.Errorf("%w: pointer record at offset %d: %v", ErrCorrupt, rec.Offset, err)
			}
			if target == 0 {
				continue // a placeholder cleanup reserved and never used
			}
			if target < r.off {
				if err := r.jumped(); err != nil {
					return Record{}, err
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

// jumped counts one followed jump against the bound.
func (r *Reader) jumped() error {
	r.backJumps++
	if r.backJumps > maxBackJumps {
		return fmt.Errorf("%w: too many pointer jumps", ErrCorrupt)
	}
	return nil
}

// Follow jumps to where the pointer record data points, under
// PointersScript: only a positive target moves, a target past the end
// moves to the end, and every jump counts against the bound.
func (r *Reader) Follow(data []byte) error {
	parse := r.opt.PointerValue
	if parse == nil {
		parse = Atol
	}
	n, ok := parse(data)
	if !ok || n <= 0 {
		return nil
	}
	if err := r.jumped(); err != nil {
		return err
	}
	r.SeekTo(min(n, r.size))
	return nil
}

// ParsePointer reads the decimal offset of a pointer record: optional
// white space, then digits up to the first other byte, as C's atol.
func ParsePointer(data []byte) (int64, error) {
	n, ok := Atol(data)
	if !ok || n < 0 {
		return 0, fmt.Errorf("bad pointer %q", data)
	}
	return n, nil
}

// Atol parses a decimal number the way C's atol/sscanf("%ld") do: leading
// white space, an optional sign, then digits up to the first non-digit.
// ok is false when there are no digits. Values beyond int64 saturate.
func Atol(b []byte) (int64, bool) {
	i := 0
	for i < len(b) && IsSpace(b[i]) {
		i++
	}
	neg := false
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		neg = b[i] == '-'
		i++
	}
	start := i
	var n int64
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := int64(b[i] - '0')
		if n > (1<<63-1-d)/10 {
			if neg {
				return -1 << 63, true
			}
			return 1<<63 - 1, true
		}
		n = n*10 + d
	}
	if neg {
		n = -n
	}
	return n, i > start
}

// IsSpace is C's isspace() in the C locale.
func IsSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// errScriptEnd ends a LengthScript walk: the script's reader returns
// nothing more, and the caller says why that is wrong where it matters.
var errScriptEnd = fmt.Errorf("%w: end of records", ErrCorrupt)

// readAt decodes the record whose type byte is at off.
func (r *Reader) readAt(off int64) (Record, error) {
	script := r.opt.Length == LengthScript
	if off >= r.size {
		if script {
			return Record{}, errScriptEnd
		}
		if off == r.size && r.opt.Raw {
			return Record{}, io.EOF
		}
		return Record{}, fmt.Errorf("%w at offset %d", ErrTruncated, off)
	}
	// Header: type byte plus at most 5 varint bytes.
	hdr, err := r.window(off, 6)
	if err != nil {
		return Record{}, err
	}
	if script && hdr[0] == '0' {
		return Record{}, errScriptEnd
	}
	typ := hdr[0]
	d := LengthDecoder{Rule: r.opt.Length}
	i := 1
	for ; ; i++ {
		if i >= len(hdr) {
			if script {
				break // the end of the file leaves the length read so far
			}
			return Record{}, fmt.Errorf("%w: record length cut off at offset %d", ErrTruncated, off)
		}
		done, err := d.Add(hdr[i])
		if err != nil {
			if script {
				return Record{}, errScriptEnd
			}
			return Record{}, fmt.Errorf("%w: record length too long at offset %d", ErrCorrupt, off)
		}
		if done {
			i++
			break
		}
	}
	length, err := d.Value()
	if err != nil {
		return Record{}, fmt.Errorf("%w at offset %d", err, off)
	}
	dataOff := off + int64(i)
	if dataOff+length > r.size {
		if script {
			r.off = r.size
			return Record{}, errScriptEnd
		}
		return Record{}, fmt.Errorf("%w: record at offset %d (type %d, length %d) runs past the end of file", ErrCorrupt, off, typ, length)
	}
	if length == 0 {
		return Record{Type: typ, Offset: off}, nil
	}
	data, err := r.window(dataOff, int(length))
	if err != nil {
		return Record{}, err
	}
	if len(data) < int(length) {
		if script {
			return Record{}, errScriptEnd
		}
		return Record{}, fmt.Errorf("%w: short record at offset %d", ErrTruncated, off)
	}
	return Record{Type: typ, Data: data[:length], Offset: off}, nil
}

// window returns up to n bytes of the file starting at off, reading from
// the source when the current buffer does not hold them. It returns fewer
// than n bytes only at the end of the file.
func (r *Reader) window(off int64, n int) ([]byte, error) {
	if rem := r.size - off; int64(n) > rem {
		n = int(max(rem, 0)) // near the end: ask only for what is there
	}
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		s := off - r.bufOff
		return r.buf[s : s+int64(n)], nil
	}
	if r.src == nil {
		// In-memory reader: return what exists.
		if off >= int64(len(r.buf)) {
			return nil, nil
		}
		return r.buf[off:min(off+int64(n), int64(len(r.buf)))], nil
	}
	// Read 16 KB at a time, more only for a record that needs it: the
	// whole of a typical queue file, the envelope of a large one.
	want := max(n, 16<<10)
	if rem := r.size - off; int64(want) > rem {
		want = int(max(rem, 0))
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	m, err := r.src.ReadAt(r.buf, off)
	if err != nil && !errors.Is(err, io.EOF) {
		r.buf, r.bufOff = r.buf[:0], 0
		return nil, fmt.Errorf("spool: read at offset %d: %w", off, err)
	}
	r.buf, r.bufOff = r.buf[:m], off
	return r.buf[:min(n, m)], nil
}
