package smtpd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// errTooBig is the data reader's own size limit being passed.
var errTooBig = errors.New("smtpd: message exceeds message_size_limit")

// errAborted is what Submit reads when a BDAT transfer is given up.
var errAborted = errors.New("smtpd: message transfer aborted")

// readError marks an error from the connection while message data was
// read, so it is told apart from Submit's own failures.
type readError struct{ err error }

func (e *readError) Error() string { return "smtpd: read message data: " + e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// dataReader is the message as Submit reads it during DATA: the lines
// from the connection with dot-stuffing undone (RFC 5321 §4.5.2), up to
// the CRLF "." CRLF that ends them. It holds at most one buffer of the
// connection's reader; long lines pass through in pieces. When the
// connection fails it returns a *readError and the message must not be
// queued.
type dataReader struct {
	br    *bufio.Reader
	limit int64 // message_size_limit; 0: none

	out      []byte // what Read has not handed out yet
	bol      bool   // at the beginning of a line
	prevCRLF bool   // the last line ended in CRLF (or there was none)
	lastCR   bool   // the last piece of a long line ended in CR
	done     bool   // the terminator was read
	err      error  // sticky
	discard  bool   // draining: deliver nothing, check nothing

	received int64 // bytes of complete lines and pieces read, for the log
	size     int64 // bytes delivered, line ends counted as one byte
}

func newDataReader(br *bufio.Reader, limit int64) *dataReader {
	return &dataReader{br: br, limit: limit, bol: true, prevCRLF: true}
}

func (r *dataReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	return n, nil
}

// fill reads the next line, or piece of a long line, into out.
func (r *dataReader) fill() {
	chunk, err := r.br.ReadSlice('\n')
	switch {
	case err == nil:
		r.received += int64(len(chunk))
		if r.bol {
			// Only CRLF "." CRLF ends the data: a "." line after a bare
			// LF, or ending in a bare LF, is content (the defence
			// against SMTP smuggling).
			if r.prevCRLF && string(chunk) == ".\r\n" {
				r.done = true
				r.out = nil
				return
			}
			if chunk[0] == '.' {
				chunk = chunk[1:]
			}
		}
		n := len(chunk)
		r.prevCRLF = n >= 2 && chunk[n-2] == '\r' || n == 1 && r.lastCR
		r.bol, r.lastCR = true, false
		r.deliver(chunk, 1)
	case errors.Is(err, bufio.ErrBufferFull):
		r.received += int64(len(chunk))
		if r.bol && chunk[0] == '.' {
			chunk = chunk[1:]
		}
		r.bol = false
		r.lastCR = len(chunk) > 0 && chunk[len(chunk)-1] == '\r'
		r.deliver(chunk, 0)
	default:
		// A partial line before the failure is dropped with the rest.
		// The end of input is not the end of the message: Submit must
		// not mistake it for a clean io.EOF.
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.err = &readError{err}
		r.out = nil
	}
}

// deliver hands chunk to the reader unless draining; eol says how many
// bytes of it are the line end's LF, which count as one byte with its CR.
func (r *dataReader) deliver(chunk []byte, eol int) {
	if r.discard {
		r.out = nil
		return
	}
	size := int64(len(chunk))
	if eol > 0 && size >= 2 && chunk[size-2] == '\r' {
		size--
	}
	r.size += size
	if r.limit > 0 && r.size > r.limit {
		r.err = errTooBig
		r.out = nil
		return
	}
	r.out = chunk
}

// drain reads and drops the rest of the data, up to its end; it returns
// the connection's error, if any.
func (r *dataReader) drain() error {
	if r.err != nil && !errors.Is(r.err, errTooBig) {
		return r.err
	}
	r.err, r.discard, r.out = nil, true, nil
	for !r.done && r.err == nil {
		r.fill()
	}
	return r.err
}

func (ss *session) doData(args string) {
	switch {
	case ss.inBDAT():
		ss.reply("503 5.5.1 Error: DATA after BDAT")
		return
	case ss.tx == nil:
		ss.reply("503 5.5.1 Error: need RCPT command")
		return
	case len(ss.tx.rcpts) == 0:
		ss.reply(replyNoRcpt)
		return
	case args != "":
		ss.reply("501 5.5.4 Syntax: DATA")
		return
	}
	if r := ss.milterData(); r != "" {
		ss.reply(r)
		ss.resetTransaction()
		return
	}
	ss.reply("354 End data with <CR><LF>.<CR><LF>")
	ss.flush()
	if ss.writeErr != nil {
		return
	}
	r := newDataReader(ss.br, ss.cfg.MessageSizeLimit)
	ss.tc.limit = time.Now().Add(ss.cfg.DataTimeLimit)
	defer func() { ss.tc.limit = time.Time{} }()
	id, err := ss.cfg.Submit(ss.s.ctx, ss.message(), r)
	tooBig := errors.Is(r.err, errTooBig)
	// Whatever Submit did, the data is read to its end before the next
	// command, or the session ends: it is never read as commands.
	if derr := r.drain(); derr != nil {
		ss.code = 421 // counted as failed
		ss.readFailed(derr, fmt.Sprintf("DATA (%d bytes)", r.received))
		return
	}
	if tooBig {
		err = errTooBig
	}
	ss.finish(id, err, "")
}

// finish replies to the end of a message's data and ends the
// transaction. sizeNote ("N bytes ") goes before "queued as" after BDAT
// LAST, as Postfix's reply has it.
func (ss *session) finish(id string, err error, sizeNote string) {
	if err == nil {
		ss.reply("250 2.0.0 Ok: " + sizeNote + "queued as " + id)
		// Postfix forgives a client's errors once it delivered mail.
		ss.errors = 0
	} else {
		ss.reply(ss.replyFor(err))
	}
	ss.tx = nil
}

// bdatTransfer is a message arriving in BDAT chunks (RFC 3030): Submit
// runs in its own goroutine and reads the chunks through a pipe, so
// nothing is held but the chunk being copied.
type bdatTransfer struct {
	pw     *io.PipeWriter
	result chan submitResult
	res    *submitResult // once Submit returned
	size   int64
	failed string // the reply to the chunk that failed; later ones are discarded
}

type submitResult struct {
	id  string
	err error
}

// wait returns Submit's result, waiting for it once.
func (b *bdatTransfer) wait() submitResult {
	if b.res == nil {
		r := <-b.result
		b.res = &r
	}
	return *b.res
}

// abortBDAT gives up a BDAT transfer in progress: Submit reads an error,
// so nothing is queued.
func (ss *session) abortBDAT() {
	if ss.bdat == nil {
		return
	}
	ss.bdat.pw.CloseWithError(errAborted)
	ss.bdat.wait()
	ss.bdat = nil
}

func (ss *session) doBdat(args string) {
	f := strings.Fields(args)
	n, err := int64(0), error(nil)
	if len(f) > 0 {
		n, err = strconv.ParseInt(f[0], 10, 64)
	}
	last := len(f) == 2 && strings.EqualFold(f[1], "LAST")
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !last || err != nil || n < 0 || f[0][0] == '+' {
		// Without a size there is no knowing where the chunk ends: as
		// Postfix, refuse with 521 and close.
		ss.s.warn("NOQUEUE: malformed BDAT command syntax from %s: %.100s", ss.origin(), strings.TrimSpace("BDAT "+args))
		ss.reply("521 5.5.4 Syntax: BDAT count [LAST]")
		ss.abortBDAT()
		ss.closing = true
		return
	}
	refuse := ""
	switch {
	case ss.discarded("chunking"):
		refuse = "502 5.5.1 Error: command not implemented"
	case ss.tx == nil:
		refuse = "503 5.5.1 Error: need RCPT command"
	case len(ss.tx.rcpts) == 0:
		refuse = replyNoRcpt
	}
	if refuse != "" {
		// The chunk is read and dropped: its bytes are never commands.
		if ss.copyChunk(n, io.Discard) {
			ss.reply(refuse)
			ss.bdatRefused = !last
		}
		return
	}
	if ss.bdat == nil {
		ss.startBDAT()
	}
	b := ss.bdat
	failedBefore := b.failed != ""
	if b.failed == "" && ss.cfg.MessageSizeLimit > 0 && n > ss.cfg.MessageSizeLimit-b.size {
		ss.s.warn("BDAT request from %s exceeds message size limit", ss.origin())
		b.failed = "552 5.3.4 Chunk exceeds message size limit"
		b.pw.CloseWithError(errTooBig)
	}
	dst := io.Writer(io.Discard)
	if b.failed == "" {
		dst = &pipeSink{pw: b.pw}
	}
	if !ss.copyChunk(n, dst) {
		return
	}
	b.size += n
	if b.failed == "" && dst.(*pipeSink).err != nil {
		// Submit stopped reading: it has failed.
		res := b.wait()
		b.failed = ss.replyFor(res.err)
		if res.err == nil {
			b.failed = ss.replyFor(fmt.Errorf("smtpd: Submit returned before the last chunk"))
		}
	}
	switch {
	case failedBefore:
		ss.reply("551 5.0.0 Discarded " + strconv.FormatInt(n, 10) + " bytes after earlier error")
		if last {
			ss.abortBDAT()
			ss.tx = nil
		}
	case b.failed != "":
		ss.reply(b.failed)
		if last {
			ss.abortBDAT()
			ss.tx = nil
		}
	case !last:
		ss.reply("250 2.0.0 Ok: " + strconv.FormatInt(n, 10) + " bytes")
	default:
		b.pw.Close()
		res := b.wait()
		ss.bdat = nil
		// Postfix names the message's size after BDAT LAST.
		ss.finish(res.id, res.err, strconv.FormatInt(b.size, 10)+" bytes ")
	}
}

// startBDAT starts Submit for a message that arrives in chunks.
func (ss *session) startBDAT() {
	pr, pw := io.Pipe()
	b := &bdatTransfer{pw: pw, result: make(chan submitResult, 1)}
	m := ss.message()
	go func() {
		id, err := ss.cfg.Submit(ss.s.ctx, m, pr)
		// Later writes fail at once instead of waiting for a reader.
		pr.CloseWithError(errAborted)
		b.result <- submitResult{id, err}
	}()
	ss.bdat = b
}

// pipeSink writes into the pipe until the first failure, then drops.
type pipeSink struct {
	pw  *io.PipeWriter
	err error
}

func (s *pipeSink) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.pw.Write(p)
	}
	return len(p), nil
}

// copyChunk copies a BDAT chunk of n bytes from the connection to dst,
// within DataTimeLimit. On a read failure it ends the session (the
// transfer is aborted, the message not queued) and returns false.
func (ss *session) copyChunk(n int64, dst io.Writer) bool {
	ss.tc.limit = time.Now().Add(ss.cfg.DataTimeLimit)
	defer func() { ss.tc.limit = time.Time{} }()
	var done int64
	for done < n {
		want := int(min(n-done, int64(readBufferSize)))
		p, err := ss.br.Peek(min(want, max(ss.br.Buffered(), 1)))
		if len(p) > 0 {
			dst.Write(p)
			ss.br.Discard(len(p))
			done += int64(len(p))
			continue
		}
		if err != nil {
			got := done
			if ss.bdat != nil {
				got += ss.bdat.size
			}
			ss.abortBDAT()
			ss.code = 421
			ss.readFailed(err, fmt.Sprintf("BDAT (%d bytes)", got))
			return false
		}
	}
	return true
}
