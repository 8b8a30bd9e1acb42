package postcat

import (
	"fmt"
	"io"
	"time"
)

// Options are postcat's flags.
type Options struct {
	Envelope bool  // -e: envelope records and the banners
	Header   bool  // -h: message headers
	Body     bool  // -b: message body
	Offsets  bool  // -o: "%9lu " record offset before each line
	Decimal  bool  // -d: "%3d " record type before each line
	Raw      bool  // -r: do not follow pointers (with -v), go on after E
	Verbose  bool  // -v: show p and w records, label text records
	Start    int64 // -s: start reading at this offset (0: from the start)
	// Location is the zone for time stamps (the process's local zone for
	// postcat). Nil means UTC.
	Location *time.Location
}

// Fatal is an error after which postcat stops with exit status 1. Its
// text is what follows "postcat: fatal: ".
type Fatal struct{ Msg string }

func (f *Fatal) Error() string { return f.Msg }

func fatalf(format string, args ...any) *Fatal {
	return &Fatal{Msg: printable(fmt.Sprintf(format, args...))}
}

// maxSkipSeeks bounds the seeks a size record can cause in one file.
// postcat follows a size record that points back into the envelope for
// ever; we stop.
const maxSkipSeeks = 10000

// Cat prints queue files. One Cat serves one run of the tool: the output
// buffer and the pointer-loop bookkeeping carry from one file to the next
// as they do in postcat.
type Cat struct {
	opts  Options
	out   output
	warn  func(msg string)
	jumps jumpState
	data  []byte
}

// New returns a Cat that prints to stdout and gives warnings (the text
// after "postcat: warning: ") to warn. When none of Envelope, Header and
// Body is set, all three are.
func New(opts Options, stdout io.Writer, warn func(msg string)) *Cat {
	if !opts.Envelope && !opts.Header && !opts.Body {
		opts.Envelope, opts.Header, opts.Body = true, true, true
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	return &Cat{opts: opts, out: output{w: stdout}, warn: warn}
}

// Input is one file to print.
type Input struct {
	Name  string    // as printed in banners and messages: the path, or "stdin"
	R     io.Reader // seekable when it is a regular file
	Stdin bool      // -s skips by reading, as postcat does on its standard input
}

// Print prints one file. It returns a *Fatal when postcat would stop, and
// an error from reading, which postcat reports when it closes the file
// ("close NAME: Is a directory"), as readErr.
func (c *Cat) Print(in Input) (readErr error, fatal *Fatal) {
	defer c.out.sync()
	s := newStream(in.Name, in.R)
	f := c.print(s, in.Stdin)
	return s.err, f
}

// Parser states.
const (
	stEnvelope = iota // initial or extracted envelope
	stHeader          // primary message headers
	stBody            // everything after the headers
)

// fileState is the state machine of one file.
type fileState struct {
	state      int
	print      bool  // does the current state print?
	prev       int   // type of the last record printed, 0 after a line end
	dataOffset int64 // from the C record, -1 until known
	dataSize   int64
	skipSeeks  int
}

func (c *Cat) print(s *stream, stdin bool) *Fatal {
	o := &c.opts
	if o.Start > 0 {
		if stdin {
			for i := int64(0); i < o.Start; i++ {
				if s.getc() < 0 {
					return fatalf("%s: skip %d bytes failed after %d", s.name, o.Start, i)
				}
			}
		} else if err := s.seek(o.Start); err != nil {
			return fatalf("%s: seek to %d: %s", s.name, o.Start, errno(err))
		}
	} else if ch := s.getc(); ch >= 0 {
		if !isEnvelopeType(ch) {
			c.warnf("%s: input is not a valid queue file", s.name)
			return nil
		}
		s.ungetc()
	}
	if o.Start == 0 && o.Envelope {
		// Not flushed: postcat loses this banner if nothing follows.
		c.out.printf("*** ENVELOPE RECORDS %s ***\n", s.name)
	}
	flags := readDefault
	if o.Verbose {
		flags = 0
	}
	fs := &fileState{state: stEnvelope, print: o.Envelope, dataOffset: -1, dataSize: -1}
	for {
		offset := s.tell()
		typ := c.getRecord(s, &c.data, flags)
		if typ == recError {
			return &Fatal{Msg: "record read error"}
		}
		if typ == recEOF {
			return nil
		}
		data := c.data
		stop, f := c.steer(s, fs, typ, data, offset)
		if f != nil {
			return f
		}
		if stop {
			return nil
		}
	}
}

func isEnvelopeType(ch int) bool {
	for i := 0; i < len(envelopeTypes); i++ {
		if int(envelopeTypes[i]) == ch {
			return true
		}
	}
	return false
}

// steer handles one record: first the types that move the state machine
// or the reader, then the printing of the rest. stop ends the file.
func (c *Cat) steer(s *stream, fs *fileState, typ int, data []byte, offset int64) (stop bool, f *Fatal) {
	o := &c.opts
	text := o.Header || o.Body
	switch typ {
	case recCont, recNorm:
		// The body starts at the first line that is neither a header nor
		// a continuation, unless an L record's text runs into this one.
		if fs.state == stHeader && text && fs.prev != recCont {
			line := cstr(data)
			if !isHeader(line) && !(len(line) > 0 && (line[0] == ' ' || line[0] == '\t')) {
				fs.state, fs.print = stBody, o.Body
				if !fs.print && !o.Envelope {
					return true, nil
				}
				if !fs.print && o.Envelope {
					if f := c.skipContent(s, fs); f != nil {
						return false, f
					}
				}
			}
		}
	case recMesg:
		if fs.state != stEnvelope {
			c.warnf("%s: out-of-order message content marker", s.name)
		}
		if o.Envelope {
			c.marker(s, offset, typ, "MESSAGE CONTENTS")
		}
		if !text {
			if f := c.skipContent(s, fs); f != nil {
				return false, f
			}
		}
		fs.state, fs.print = stHeader, o.Header
		return false, nil
	case recXtra:
		if fs.state == stEnvelope {
			c.warnf("%s: out-of-order extracted segment marker", s.name)
		}
		if fs.print && fs.prev == recCont {
			// End the joined line; unflushed, so lost if we stop now.
			c.out.writeByte('\n')
		}
		if o.Envelope {
			c.marker(s, offset, typ, "HEADER EXTRACTED")
		}
		fs.state, fs.print = stEnvelope, o.Envelope
		return !fs.print, nil
	case recEnd:
		if fs.state != stEnvelope {
			c.warnf("%s: out-of-order message end marker", s.name)
		}
		if o.Envelope {
			c.marker(s, offset, typ, "MESSAGE FILE END")
		}
		return !o.Raw, nil
	case recPtr:
		// Only seen with -v; without it the reader follows pointers.
		if fs.print {
			c.record(offset, typ, cstr(data))
		}
		if !o.Raw && !c.followPointer(s, data) {
			return false, &Fatal{Msg: "bad pointer record, or input is not seekable"}
		}
		return false, nil
	case recSize:
		if fs.print {
			c.record(offset, typ, cstr(data))
		}
		return false, c.sizeRecord(s, fs, data)
	}
	if !fs.print {
		return false, nil
	}
	return false, c.printRecord(s, fs, typ, data, offset)
}

// sizeRecord takes the content length and offset from the C record. A
// reader without -e goes straight to the content.
func (c *Cat) sizeRecord(s *stream, fs *fileState, data []byte) *Fatal {
	if fs.dataSize >= 0 || fs.dataOffset >= 0 {
		c.warnf("file contains multiple size records")
		return nil
	}
	if scanTwoLongs(data, &fs.dataSize, &fs.dataOffset) != 2 || fs.dataOffset <= 0 || fs.dataSize <= 0 {
		c.warnf("invalid size record: %.100s", cstr(data))
	}
	if !c.opts.Envelope {
		if err := s.seek(fs.dataOffset); err != nil {
			return fatalf("seek error: %s", errno(err))
		}
		fs.state, fs.print = stHeader, c.opts.Header
	}
	return nil
}

// skipContent jumps to the X record, when the size record said where it
// is (or claimed to).
func (c *Cat) skipContent(s *stream, fs *fileState) *Fatal {
	if fs.dataOffset < 0 || fs.dataSize < 0 {
		return nil
	}
	fs.skipSeeks++
	if fs.skipSeeks > maxSkipSeeks {
		return fatalf("%s: size record makes the content skip loop", s.name)
	}
	if err := s.seek(fs.dataOffset + fs.dataSize); err != nil {
		return fatalf("seek error: %s", errno(err))
	}
	return nil
}

// prefix writes the -o and -d columns.
func (c *Cat) prefix(offset int64, typ int) {
	if c.opts.Offsets {
		c.out.printf("%9d ", uint64(offset))
	}
	if c.opts.Decimal {
		c.out.printf("%3d ", typ)
	}
}

func (c *Cat) marker(s *stream, offset int64, typ int, text string) {
	c.prefix(offset, typ)
	c.out.printf("*** %s %s ***\n", text, s.name)
	c.out.flush()
}

func (c *Cat) record(offset int64, typ int, value []byte) {
	c.prefix(offset, typ)
	c.out.writeString(recordName(typ))
	c.out.writeString(": ")
	c.out.write(value)
	c.out.writeByte('\n')
	c.out.flush()
}

// printRecord prints a record that does not steer anything.
func (c *Cat) printRecord(s *stream, fs *fileState, typ int, data []byte, offset int64) *Fatal {
	o := &c.opts
	out := &c.out
	c.prefix(offset, typ)
	switch typ {
	case recTime, recWarn:
		if f := c.printTime(s, recordName(typ), atol(data)); f != nil {
			return f
		}
	case recCont:
		newline := fs.state == stEnvelope || o.Verbose || o.Offsets
		if fs.state == stEnvelope {
			out.writeString(recordName(typ) + ": ")
		} else if o.Verbose {
			out.writeString("unterminated_text: ")
		}
		out.write(data)
		if newline {
			// The line is complete, so the next record is not a continuation.
			typ = 0
			out.writeByte('\n')
		}
	case recNorm:
		if o.Verbose {
			out.writeString(recordName(typ) + ": ")
		}
		out.write(data)
		out.writeByte('\n')
	case recPad:
		out.writeString(recordName(typ) + ": ")
		out.write(data)
		out.writeByte('\n')
	case recAttr:
		name, value, errText := splitNameval(cstr(data))
		switch {
		case errText != "":
			c.warnf("%s: malformed attribute: %s: %.100s", s.name, errText, cstr(data))
		case string(name) == attrTime:
			if f := c.printTime(s, attrTime, atol(value)); f != nil {
				return f
			}
		default:
			out.writeString(recordName(typ) + ": ")
			out.write(name)
			out.writeByte('=')
			out.write(value)
			out.writeByte('\n')
		}
	default:
		out.writeString(recordName(typ) + ": ")
		out.write(cstr(data))
		out.writeByte('\n')
	}
	fs.prev = typ
	out.flush()
	return nil
}

// printTime prints "label: asctime". Where glibc's localtime or asctime
// fail, postcat dereferences a null pointer and dies with what it had not
// flushed; we stop the same way, with a message instead of a core dump.
func (c *Cat) printTime(s *stream, label string, sec int64) *Fatal {
	t, ok := asctime(sec, c.opts.Location)
	if !ok {
		return fatalf("%s: %s %d is out of the range of the C library's time functions", s.name, label, sec)
	}
	c.out.writeString(label + ": " + t)
	return nil
}
