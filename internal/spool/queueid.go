package spool

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// Queue IDs come in two forms (reference §1.5):
//
//	short: %05X of the microseconds, then %lX of the inode number
//	long:  base52(seconds, at least 6 digits) base52(microseconds, 4 digits) 'z' base51(inode)
//
// Both are computed when the file is renamed to its final name, from the
// time then and the file's inode, so an ID names exactly one live file.

const base52Digits = "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz"

// LongIDSeparator separates the time part of a long ID from the inode.
const LongIDSeparator = 'z'

var base52Value = func() [256]int8 {
	var v [256]int8
	for i := range v {
		v[i] = -1
	}
	for i := 0; i < len(base52Digits); i++ {
		v[base52Digits[i]] = int8(i)
	}
	return v
}()

// ShortID returns the short queue ID for a file renamed at t with inode ino.
func ShortID(t time.Time, ino uint64) string {
	const hex = "0123456789ABCDEF"
	var b [5 + 16]byte
	us := t.Nanosecond() / 1000
	for i := 4; i >= 0; i-- {
		b[i] = hex[us&0xF]
		us >>= 4
	}
	n := 5
	for shift := 60; shift >= 0; shift -= 4 {
		if d := (ino >> uint(shift)) & 0xF; d != 0 || n > 5 || shift == 0 {
			b[n] = hex[d]
			n++
		}
	}
	return string(b[:n])
}

// LongID returns the long queue ID for a file renamed at t with inode ino.
func LongID(t time.Time, ino uint64) string {
	var b strings.Builder
	b.WriteString(padLeft(encodeBase(uint64(t.Unix()), 52), 6))
	b.WriteString(padLeft(encodeBase(uint64(t.Nanosecond()/1000), 52), 4))
	b.WriteByte(LongIDSeparator)
	b.WriteString(encodeBase(ino, 51))
	return b.String()
}

func encodeBase(n uint64, base uint64) string {
	if n == 0 {
		return "0"
	}
	var tmp [16]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = base52Digits[n%base]
		n /= base
	}
	return string(tmp[i:])
}

func padLeft(s string, width int) string {
	if len(s) >= width {
		return s
	}
	return strings.Repeat("0", width-len(s)) + s
}

func decodeBase(s string, base int) (uint64, bool) {
	var n uint64
	for i := 0; i < len(s); i++ {
		d := base52Value[s[i]]
		if d < 0 || int(d) >= base {
			return 0, false
		}
		n = n*uint64(base) + uint64(d)
	}
	return n, true
}

// ValidID reports whether name can be a queue file name: Postfix accepts
// only ASCII letters and digits (mail_queue_id_ok also allows '_', which
// appears only in fast-flush log names).
func ValidID(name string) bool {
	if name == "" || len(name) > 100 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// IDInfo is what a queue ID says about the file it names.
type IDInfo struct {
	Long  bool
	Sec   int64 // long IDs only
	Usec  int
	Inode uint64
}

// ParseID decodes a long or short queue ID.
func ParseID(id string) (IDInfo, error) {
	if !ValidID(id) {
		return IDInfo{}, fmt.Errorf("spool: bad queue ID %q", id)
	}
	if info, ok := parseLongID(id); ok {
		return info, nil
	}
	if len(id) >= 6 {
		usec, err1 := strconv.ParseUint(id[:5], 16, 32)
		ino, err2 := strconv.ParseUint(id[5:], 16, 64)
		if err1 == nil && err2 == nil && usec < 1000000 {
			return IDInfo{Usec: int(usec), Inode: ino}, nil
		}
	}
	return IDInfo{}, fmt.Errorf("spool: queue ID %q is neither a short nor a long ID", id)
}

func parseLongID(id string) (IDInfo, bool) {
	z := strings.LastIndexByte(id, LongIDSeparator)
	if z < 10 || z == len(id)-1 {
		return IDInfo{}, false
	}
	sec, ok1 := decodeBase(id[:z-4], 52)
	usec, ok2 := decodeBase(id[z-4:z], 52)
	ino, ok3 := decodeBase(id[z+1:], 51)
	if !ok1 || !ok2 || !ok3 || usec >= 1000000 {
		return IDInfo{}, false
	}
	return IDInfo{Long: true, Sec: int64(sec), Usec: int(usec), Inode: ino}, true
}

// IsLongID reports whether id has the long form.
func IsLongID(id string) bool {
	_, ok := parseLongID(id)
	return ok
}

// hashKey returns the string whose leading characters name the hash
// subdirectories of id: the ID itself for short IDs, the %05X of the
// microseconds for long IDs.
func hashKey(id string) string {
	if info, ok := parseLongID(id); ok {
		return fmt.Sprintf("%05X", info.Usec)
	}
	return id
}

// ShortIDFor returns the short ID the file fi named id should have: the
// same microseconds part, with fi's inode, as postsuper -s renames it.
func ShortIDFor(id string, fi fs.FileInfo) string {
	if len(id) < 5 {
		return id
	}
	return fmt.Sprintf("%s%X", id[:5], inode(fi))
}
