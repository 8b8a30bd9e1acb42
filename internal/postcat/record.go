package postcat

import (
	"fmt"

	"sluice/internal/spool"
)

// Results of getRecord besides a record type (0..255).
const (
	recEOF   = -1 // clean end of input, at a record boundary
	recError = -2 // damaged input; a warning has been given
)

// Reader transparency, as postcat asks for it: everything by default,
// nothing with -v.
type readFlags uint8

const (
	followPointers readFlags = 1 << iota // go where p records point
	skipPadding                          // hide w records
	seekEndAfterE                        // move to the end of the file after E
	readDefault    = followPointers | skipPadding | seekEndAfterE
)

// reverseJumpLimit bounds the backward pointer jumps per file name, so a
// file whose pointers form a loop ends.
const reverseJumpLimit = 10000

// jumpState is the reverse-jump bookkeeping. Postfix keeps it for the
// last file name it saw and resets it only when the name changes, so it
// lives in the Cat, not in one file's reader.
type jumpState struct {
	path    string
	started bool
	last    int64 // target of the previous jump
	reverse int
}

// getRecord reads one record into *data and returns its type, recEOF or
// recError. The length is a little-endian base-128 number computed in a C
// int, so bits beyond 32 vanish and a set bit 31 makes it negative, as in
// Postfix.
func (c *Cat) getRecord(s *stream, data *[]byte, flags readFlags) int {
	for {
		typ := s.getc()
		if typ < 0 {
			return recEOF
		}
		d := spool.LengthDecoder{Rule: spool.LengthSigned}
		for {
			b := s.getc()
			if b < 0 {
				c.warnf("%s: unexpected EOF reading length, record type %d", s.name, typ)
				return recError
			}
			done, err := d.Add(byte(b))
			if err != nil {
				c.warnf("%s: too many length bits, record type %d", s.name, typ)
				return recError
			}
			if done {
				break
			}
		}
		n, err := d.Value()
		if err != nil {
			c.warnf("%s: illegal length %d, record type %d", s.name, n, typ)
			return recError
		}
		*data = s.read((*data)[:0], n)
		if int64(len(*data)) != n {
			c.warnf("%s: unexpected EOF in data, record type %d length %d", s.name, typ, n)
			return recError
		}
		switch {
		case typ == recPtr && flags&followPointers != 0:
			if !c.followPointer(s, *data) {
				return recError
			}
			continue
		case typ == recPad && flags&skipPadding != 0:
			continue
		case typ == recEnd && flags&seekEndAfterE != 0:
			if err := s.seekEnd(); err != nil {
				c.warnf("%s: seek error after reading END record: %s", s.name, errno(err))
				return recError
			}
		}
		return typ
	}
}

// followPointer moves the input to where a p record points. The value is
// a decimal offset after optional white space; 0 (or nothing) marks a
// placeholder and moves nowhere.
func (c *Cat) followPointer(s *stream, value []byte) bool {
	j := &c.jumps
	if !j.started || j.path != s.name {
		*j = jumpState{path: s.name, started: true}
	}
	v := cstr(value)
	for len(v) > 0 && isSpace(v[0]) {
		v = v[1:]
	}
	off := parseOffset(v)
	switch {
	case off < 0:
		c.warnf("%s: malformed pointer record value: %s", s.name, v)
		return false
	case off == 0:
		return true
	}
	if off <= j.last {
		j.reverse++
		if j.reverse > reverseJumpLimit {
			c.warnf("%s: too many reverse jump records", s.name)
			return false
		}
	}
	if err := s.seek(off); err != nil {
		c.warnf("%s: seek error after pointer record: %s", s.name, errno(err))
		return false
	}
	j.last = off
	return true
}

// warnf gives a warning the way Postfix's msg_warn does: non-printable
// bytes become '?'. The output postcat would have written so far goes
// first, so the two streams interleave as postcat's do.
func (c *Cat) warnf(format string, args ...any) {
	c.out.sync()
	c.warn(printable(fmt.Sprintf(format, args...)))
}
