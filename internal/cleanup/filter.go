package cleanup

// The filter stage: content inspection before the queue file is committed
// (Postfix's cleanup runs milters at this point, for smtpd and for local
// submissions alike).
//
// Without a filter cleanup streams the content into the queue file. With
// one (Message.Filter), the content goes to a spool buffer first (memory,
// then a temporary file past filterMemLimit; message_size_limit bounds
// it), the filter sees the envelope, the headers and the body and may
// edit them, and only then is the queue file written: envelope, our own
// Received: header, the headers and the body as edited. So a refused or
// discarded message never reaches the queue, and a committed one has
// every change applied. The queue ID is the file's, named before the
// content is read, so log lines and the filter's {i} macro agree.
//
// Header edits follow Postfix's index rules (cleanup_milter.c's
// Sendmail-compatible semantics):
//
//   - The filter does not see our own Received: header. Change requests
//     (ChangeHeader) count only the headers it saw: index 1 (or 0) is the
//     first header of that name after our Received:.
//   - Insert requests count every header including ours: InsertHeader(0)
//     puts the header above our Received:, InsertHeader(1) right below it.
//     An index past the end appends. Once a header is inserted above ours,
//     ours is an ordinary header for later requests.
//   - A change with an empty value deletes the header; a change of a
//     header that does not exist adds it at the end.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"sluice/internal/spool"
)

// Filter inspects a message before it is queued. The Content's edits are
// applied to what is queued when the verdict is FilterAccept or
// FilterHold.
type Filter interface {
	Filter(ctx context.Context, c *Content) (Verdict, error)
}

// FilterAction is a filter's decision on the whole message.
type FilterAction int

const (
	// FilterAccept queues the message (with its edits).
	FilterAccept FilterAction = iota
	// FilterHold queues the message to hold/ (milter quarantine).
	FilterHold
	// FilterDiscard acknowledges the message but queues nothing.
	FilterDiscard
	// FilterReject refuses the message with Verdict.Reply.
	FilterReject
)

// Verdict is a filter's result.
type Verdict struct {
	Action FilterAction
	Reply  string // FilterReject: the SMTP reply, "550 5.7.1 ..."
}

// FilterReject is the error Submit returns when a filter refuses a
// message; smtpd answers with its Reply.
type FilterRejectError struct{ Reply string }

func (e *FilterRejectError) Error() string { return "cleanup: message refused by filter: " + e.Reply }

// ErrDiscarded is not returned: a discarded message gets its queue ID
// and nil, as Postfix answers 250 for it. Callers that need to know
// check Content.Discarded.

// Header is one message header as stored: Name is what comes before the
// colon, Raw the whole header, folded lines joined by "\n".
type Header struct {
	Name string
	Raw  string
	own  bool // our own Received: header, not shown to filters
}

// Value is the header's value: what follows the colon, folds kept as
// "\n" line breaks, without the one space after the colon.
func (h Header) Value() string {
	v := h.Raw[len(h.Name)+1:]
	return strings.TrimPrefix(v, " ")
}

// Content is a message at the filter stage: its envelope and content,
// and the edits a filter makes to them.
type Content struct {
	QueueID    string
	Sender     string
	Recipients []Recipient

	headers []Header
	buf     *spoolBuffer
	bodyOff int64 // where the body (after the separator line) starts in buf
	sepLen  int64 // the separator line's length (0 or 1)

	newBody *bytes.Buffer // replaced body, nil when not replaced
}

// Headers returns the headers the filter sees, in order (not our own
// Received:).
func (c *Content) Headers() []Header {
	out := make([]Header, 0, len(c.headers))
	for _, h := range c.headers {
		if !h.own {
			out = append(out, h)
		}
	}
	return out
}

// Body returns a reader of the body as received, lines ending in CRLF as
// on the wire (what milters expect).
func (c *Content) Body() io.Reader {
	if c.newBody != nil {
		// Later filters see what earlier ones made of it.
		return &crlfReader{r: bufio.NewReader(bytes.NewReader(c.newBody.Bytes()))}
	}
	return &crlfReader{r: bufio.NewReader(c.buf.readerAt(c.bodyOff))}
}

// AddHeader appends a header to the header block.
func (c *Content) AddHeader(name, value string) {
	c.headers = append(c.headers, newHeader(name, value))
}

// InsertHeader inserts a header at index (0 is the very top, above our
// Received:); past the end it appends.
func (c *Content) InsertHeader(index int, name, value string) {
	h := newHeader(name, value)
	if index < 0 {
		index = 0
	}
	if index >= len(c.headers) {
		c.headers = append(c.headers, h)
		return
	}
	if index == 0 && len(c.headers) > 0 && c.headers[0].own {
		// Above ours: from now on ours counts like any other.
		c.headers[0].own = false
	}
	c.headers = append(c.headers[:index], append([]Header{h}, c.headers[index:]...)...)
}

// ChangeHeader replaces the index'th header named name (1-based among the
// headers the filter saw; 0 means 1); an empty value deletes it, and a
// header that is not there is added.
func (c *Content) ChangeHeader(index int, name, value string) {
	if index < 1 {
		index = 1
	}
	for i, h := range c.headers {
		if h.own || !strings.EqualFold(h.Name, name) {
			continue
		}
		if index--; index > 0 {
			continue
		}
		if value == "" {
			c.headers = append(c.headers[:i], c.headers[i+1:]...)
		} else {
			c.headers[i] = newHeader(h.Name, value)
		}
		return
	}
	if value != "" {
		c.AddHeader(name, value)
	}
}

// SetBody replaces the body (lines ending in CRLF or LF).
func (c *Content) SetBody(b []byte) {
	c.newBody = bytes.NewBuffer(append([]byte(nil), b...))
}

// ChangeSender replaces the envelope sender.
func (c *Content) ChangeSender(addr string) { c.Sender = addr }

// AddRecipient adds an envelope recipient.
func (c *Content) AddRecipient(addr string) {
	c.Recipients = append(c.Recipients, Recipient{Address: addr})
}

// DeleteRecipient removes every envelope recipient with address addr
// (case-insensitive), as given by the client.
func (c *Content) DeleteRecipient(addr string) {
	out := c.Recipients[:0]
	for _, r := range c.Recipients {
		if !strings.EqualFold(r.Address, addr) {
			out = append(out, r)
		}
	}
	c.Recipients = out
}

func newHeader(name, value string) Header {
	value = strings.ReplaceAll(value, "\r\n", "\n")
	sep := ": "
	if value == "" || value[0] == ' ' || value[0] == '\t' {
		sep = ":"
	}
	return Header{Name: name, Raw: name + sep + value}
}

// filterMemLimit is how much of a message the spool buffer keeps in
// memory before it moves to a temporary file.
const filterMemLimit = 1 << 20

// spoolBuffer holds a message's content lines ("\n" ends each) while the
// filter runs: in memory up to filterMemLimit, then in an unlinked
// temporary file.
type spoolBuffer struct {
	mem  bytes.Buffer
	file *os.File
	size int64
	err  error
}

func (b *spoolBuffer) write(p []byte) {
	if b.err != nil {
		return
	}
	b.size += int64(len(p))
	if b.file == nil && int64(b.mem.Len())+int64(len(p)) <= filterMemLimit {
		b.mem.Write(p)
		return
	}
	if b.file == nil {
		f, err := os.CreateTemp("", "sluice-cleanup-*")
		if err != nil {
			b.err = err
			return
		}
		// Unlinked at once: nothing is left behind whatever happens.
		os.Remove(f.Name())
		b.file = f
		if _, err := f.Write(b.mem.Bytes()); err != nil {
			b.err = err
			return
		}
		b.mem = bytes.Buffer{}
	}
	if _, err := b.file.Write(p); err != nil {
		b.err = err
	}
}

// WriteLine and WriteCont make the buffer a contentWriter's sink.
func (b *spoolBuffer) WriteLine(line []byte) { b.write(line); b.write([]byte{'\n'}) }
func (b *spoolBuffer) WriteCont(part []byte) { b.write(part) }

func (b *spoolBuffer) readerAt(off int64) io.Reader {
	if b.file == nil {
		return bytes.NewReader(b.mem.Bytes()[min(off, int64(b.mem.Len())):])
	}
	return io.NewSectionReader(b.file, off, b.size-off)
}

func (b *spoolBuffer) close() {
	if b.file != nil {
		b.file.Close()
	}
}

// parse splits the buffered content into headers and body.
func (c *Content) parse(received []string) error {
	c.headers = c.headers[:0]
	if len(received) > 0 {
		c.headers = append(c.headers, Header{Name: "Received", Raw: strings.Join(received, "\n"), own: true})
	}
	br := bufio.NewReader(c.buf.readerAt(0))
	var off int64
	for {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if line == "" {
			c.bodyOff, c.sepLen = off, 0
			return nil
		}
		text := strings.TrimSuffix(line, "\n")
		switch {
		case (text != "" && (text[0] == ' ' || text[0] == '\t')) && len(c.headers) > 0 && !c.headers[len(c.headers)-1].own:
			c.headers[len(c.headers)-1].Raw += "\n" + text
		case isHeaderStart([]byte(text)):
			name := strings.TrimRight(text[:strings.IndexByte(text, ':')], " \t")
			c.headers = append(c.headers, Header{Name: name, Raw: text})
		default:
			// The body begins; an empty line is the separator.
			c.bodyOff, c.sepLen = off, 0
			if text == "" {
				c.bodyOff, c.sepLen = off+int64(len(line)), 1
			}
			return nil
		}
		off += int64(len(line))
	}
}

// writeTo writes the edited content into the queue file.
func (c *Content) writeTo(f *spool.File) error {
	for _, h := range c.headers {
		for _, l := range strings.Split(h.Raw, "\n") {
			f.WriteLine([]byte(strings.TrimSuffix(l, "\r")))
		}
	}
	var body io.Reader
	switch {
	case c.newBody != nil:
		f.WriteLine(nil)
		body = bytes.NewReader(c.newBody.Bytes())
	default:
		if c.sepLen > 0 || c.bodyOff < c.buf.size {
			f.WriteLine(nil)
		}
		body = c.buf.readerAt(c.bodyOff)
	}
	return copyLines(f, body)
}

// copyLines writes r's lines (LF or CRLF) as content records, long lines
// in bounded pieces.
func copyLines(f *spool.File, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			n := 0
			for len(line)-n > spool.LineLengthLimit+1 {
				f.WriteCont(line[n : n+spool.LineLengthLimit])
				n += spool.LineLengthLimit
			}
			line = append(line[:0], line[n:]...)
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(line) > 0 {
			l := bytes.TrimSuffix(line, []byte{'\n'})
			l = bytes.TrimSuffix(l, []byte{'\r'})
			f.WriteLine(l)
		}
		line = line[:0]
		if err != nil {
			return nil
		}
	}
}

// crlfReader turns "\n" line ends into "\r\n".
type crlfReader struct {
	r       *bufio.Reader
	pending []byte
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		line, err := c.r.ReadSlice('\n')
		if len(line) == 0 && err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = nil
			}
			return 0, err
		}
		if n := len(line); n > 0 && line[n-1] == '\n' && (n < 2 || line[n-2] != '\r') {
			c.pending = append(append(c.pending[:0], line[:n-1]...), '\r', '\n')
		} else {
			c.pending = append(c.pending[:0], line...)
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// filterAndWrite runs m.Filter over the buffered content and writes the
// queue file. It returns the verdict; the file is written only for
// FilterAccept and FilterHold.
func (c *Cleanup) filterAndWrite(ctx context.Context, f *spool.File, m *Message, env *spool.NewEnvelope, received []string, buf *spoolBuffer) (Verdict, error) {
	if buf.err != nil {
		return Verdict{}, fmt.Errorf("cleanup: %w: spool message for filter: %w", ErrQueueWrite, buf.err)
	}
	ct := &Content{QueueID: f.ID, Sender: m.Sender, buf: buf}
	for _, r := range m.Recipients {
		if !r.Extracted {
			ct.Recipients = append(ct.Recipients, r)
		}
	}
	if err := ct.parse(received); err != nil {
		return Verdict{}, fmt.Errorf("cleanup: %w: read spooled message: %w", ErrQueueWrite, err)
	}
	v, err := m.Filter.Filter(ctx, ct)
	if err != nil {
		return v, err
	}
	if v.Action == FilterReject || v.Action == FilterDiscard {
		return v, nil
	}
	env.Sender = c.qualify(ct.Sender)
	env.Recipients = env.Recipients[:0]
	for _, r := range ct.Recipients {
		env.Recipients = append(env.Recipients, c.newRecipient(r))
	}
	if err := f.WriteEnvelope(env); err != nil {
		return v, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
	}
	if err := ct.writeTo(f); err != nil {
		return v, fmt.Errorf("cleanup: %w: %w", ErrQueueWrite, err)
	}
	return v, nil
}
