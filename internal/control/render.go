package control

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"sluice/internal/qshape"
	"sluice/internal/showq"
	"sluice/internal/spool"
)

// The listing (mailq, postqueue -p, postqueue -j) and qshape are served
// from the daemon's live model of the queue: the listing through
// showq.Lister (the model, with the directories' order), qshape from the
// model's counts (model.EachQShape); what the model cannot answer (it is
// still loading, qshape -N, a queue it does not hold) is read from the
// files. The daemon renders the same bytes the tool would print from a
// scan of its own; the tool sends the parameters of its configuration and
// environment and copies the answer out.
//
// The answer is a stream of frames, each a kind byte, a 4-byte big-endian
// length and that many bytes: 'o' output for standard output, 'w' one
// warning (without the "tool: warning: " prefix), 'f' a fatal error that
// ends the answer, and for a listing 'F', output that is part of a file
// passed with the frame: the directories' renderings the daemon keeps
// (showq's segments, sealed memory files). The tool copies those to its
// standard output with sendfile(2), so a listing of an unchanged queue
// is neither rendered again nor copied through the socket. For 'F' the
// daemon takes the connection over from the HTTP server (the response
// then has no length and ends when the connection closes), as files
// pass only on the unix socket itself (SCM_RIGHTS).
const (
	frameOut   = 'o'
	frameWarn  = 'w'
	frameFatal = 'f'
	// frameFile: bytes of a file passed with the frame (SCM_RIGHTS): the
	// payload is the offset and the length, 8 bytes each, big-endian.
	// Only to a tool that asked for them (ListingRequest.Segments),
	// on a unix socket.
	frameFile = 'F'
)

// ListingRequest asks for the queue listing: its parameters come from the
// tool's configuration and environment, not the daemon's.
type ListingRequest struct {
	JSON           bool   `json:"json"`     // postqueue -j; else the mailq text
	LongIDs        bool   `json:"long_ids"` // enable_long_queue_ids
	TZ             string `json:"tz"`       // the tool's TZ ("" for the system zone)
	EmptyAddress   string `json:"empty_address"`
	DupFilterLimit int    `json:"dup_filter_limit"`
	UTF8           bool   `json:"utf8"`
	// Segments: the tool takes the daemon's kept renderings as files
	// (frameFile), and copies them out itself (see showq.SegmentWriter).
	Segments bool `json:"segments"`
}

// QshapeRequest asks for qshape's table.
type QshapeRequest struct {
	Flags    map[string]*string `json:"flags"`    // option letter → value (nil: none)
	Terminal bool               `json:"terminal"` // standard output is a terminal
	Clear    string             `json:"clear"`    // clear(1)'s sequence, for -N
	Queues   []string           `json:"queues"`   // absolute, under the spool
}

// FatalError is a fatal error the daemon reported for a listing, worded
// as the tool words it.
type FatalError struct{ Msg string }

func (e *FatalError) Error() string { return e.Msg }

// frameWriter writes frames of one kind.
type frameWriter struct {
	w    io.Writer
	kind byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	if err := writeFrame(f.w, f.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// stream wraps a response in frames; warn and fatal go through it too,
// so that all frames are written by the handler's goroutine in order.
type stream struct {
	bw  *bufio.Writer
	out io.Writer
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-sluice-frames")
	bw := bufio.NewWriterSize(w, 64<<10)
	return &stream{bw: bw, out: frameWriter{bw, frameOut}}
}

// segmentStream is a stream written on the unix socket itself (the
// HTTP connection taken over), which passes files: a showq.SegmentWriter.
type segmentStream struct {
	frameWriter
	bw *bufio.Writer
	uc *net.UnixConn
}

func (s *segmentStream) WriteSegment(f *os.File, off, n int64) error {
	if s.uc == nil {
		_, err := io.Copy(s.frameWriter, io.NewSectionReader(f, off, n))
		return err
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	var hdr [5 + 16]byte
	hdr[0] = frameFile
	binary.BigEndian.PutUint32(hdr[1:], 16)
	binary.BigEndian.PutUint64(hdr[5:], uint64(off))
	binary.BigEndian.PutUint64(hdr[13:], uint64(n))
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	// Control holds the file open while it is passed.
	err = rc.Control(func(fd uintptr) {
		_, _, werr = s.uc.WriteMsgUnix(hdr[:], syscall.UnixRights(int(fd)), nil)
	})
	if err != nil {
		return err
	}
	return werr
}

// takeOver answers on the connection itself, for a listing that passes
// files: the HTTP response is a head with no length (its body ends when
// the connection closes) and the frames follow. ok is false, and nothing
// is done, when the connection is not a unix socket.
func takeOver(w http.ResponseWriter, r *http.Request) (st *stream, done func(), ok bool) {
	hj, isHJ := w.(http.Hijacker)
	if _, isUnix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); !isHJ || !isUnix {
		return nil, nil, false
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	conn.SetDeadline(time.Time{})
	bw := bufio.NewWriterSize(conn, 64<<10)
	bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/x-sluice-frames\r\nConnection: close\r\n\r\n")
	uc, _ := conn.(*net.UnixConn)
	seg := &segmentStream{frameWriter: frameWriter{bw, frameOut}, bw: bw, uc: uc}
	return &stream{bw: bw, out: seg}, func() { bw.Flush(); conn.Close() }, true
}

func (s *stream) warn(msg string) { writeFrame(s.bw, frameWarn, []byte(msg)) }

func (s *stream) fatal(msg string) { writeFrame(s.bw, frameFatal, []byte(msg)) }

func (s *stream) close() { s.bw.Flush() }

func (s *Server) handleListing(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, AccessList) {
		return
	}
	var req ListingRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if s.b.Listing == nil {
		http.Error(w, "listing not available", http.StatusNotImplemented)
		return
	}
	var st *stream
	if req.Segments {
		var done func()
		var ok bool
		if st, done, ok = takeOver(w, r); ok {
			defer done()
		}
	}
	if st == nil {
		st = newStream(w)
		defer st.close()
	}
	opt := showq.DefaultOptions()
	opt.EmptyAddress, opt.DupFilterLimit, opt.UTF8 = req.EmptyAddress, req.DupFilterLimit, req.UTF8
	opt.Warn = st.warn
	f := showq.Format{Kind: showq.Text, Long: req.LongIDs, Loc: showq.Zone(req.TZ)}
	if req.JSON {
		f.Kind = showq.JSON
	}
	out := &errWriter{w: st.out}
	if err := s.b.Listing.Write(out, opt, f); err != nil && out.err == nil {
		// The queue could not be read: nothing was written (no
		// "Mail queue is empty" or summary before the error).
		st.fatal("Queue report unavailable: " + err.Error())
	}
}

// errWriter remembers a write error, to tell it from a failure to read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// WriteSegment passes a listing's segment on as a file when the stream
// takes files (segmentStream), else writes its bytes.
func (e *errWriter) WriteSegment(f *os.File, off, n int64) error {
	var err error
	if sw, ok := e.w.(showq.SegmentWriter); ok {
		err = sw.WriteSegment(f, off, n)
	} else {
		_, err = io.Copy(e.w, io.NewSectionReader(f, off, n))
	}
	if err != nil && e.err == nil {
		e.err = err
	}
	return err
}

func (s *Server) handleQshape(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, AccessList) {
		return
	}
	var req QshapeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	flags, err := qshapeFlags(req.Flags)
	if err == nil {
		err = s.inSpool(req.Queues)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	opt := qshape.FromFlags(flags, req.Terminal)
	opt.Clear = req.Clear
	now := time.Now
	if s.b.Now != nil {
		now = s.b.Now
	}
	at := now()
	opt.Now = func() time.Time { return at }
	st := newStream(w)
	defer st.close()
	opt.Warnf = func(format string, args ...any) { st.warn(fmt.Sprintf(format, args...)) }
	if names, ok := s.modelQueues(req.Queues, opt); ok {
		// The model's counts give the very table the files give (see
		// qshape.RunCounts), without reading a file.
		counts := func(add func(string, int64, int64)) { s.b.Model.EachQShape(names, opt.Senders, add) }
		if err := qshape.RunCounts(opt, counts, st.out); err != nil {
			st.fatal(err.Error())
		}
		return
	}
	if err := qshape.Run(opt, req.Queues, st.out); err != nil {
		st.fatal(err.Error())
	}
}

// modelQueues decides whether the model answers a qshape request: it
// must have loaded, the queues must be ones it holds (incoming, active,
// deferred, hold: corrupt/ and maildrop/ files are only in the files),
// each an existing directory (a missing one is warned about, as the
// files' reading does), and no interim tables (-N) are asked for. It
// returns the queues' names.
func (s *Server) modelQueues(queues []string, opt qshape.Options) ([]string, bool) {
	if s.b.Model == nil || s.b.Model.Loading() || opt.BatchMsgs.F > 0 || len(queues) == 0 {
		return nil, false
	}
	root := filepath.Clean(s.b.Queue.Spool.Root)
	var names []string
	for _, q := range queues {
		rel, err := filepath.Rel(root, filepath.Clean(q))
		if err != nil {
			return nil, false
		}
		switch rel {
		case spool.Incoming, spool.Active, spool.Deferred, spool.Hold:
		default:
			return nil, false
		}
		if fi, err := os.Stat(q); err != nil || !fi.IsDir() {
			return nil, false
		}
		names = append(names, rel)
	}
	return names, true
}

// qshapeFlags turns the request's flags back into qshape's form.
func qshapeFlags(in map[string]*string) (map[byte]*string, error) {
	flags := make(map[byte]*string, len(in))
	for k, v := range in {
		if len(k) != 1 {
			return nil, fmt.Errorf("bad qshape option %q", k)
		}
		flags[k[0]] = v
	}
	return flags, nil
}

// inSpool checks that every queue is a path in the spool: the daemon
// reads for anyone who asks, so it shows nothing outside the queue.
func (s *Server) inSpool(queues []string) error {
	root := filepath.Clean(s.b.Queue.Spool.Root) + "/"
	for _, q := range queues {
		if !strings.HasPrefix(q, "/") || !strings.HasPrefix(filepath.Clean(q)+"/", root) || filepath.Clean(q)+"/" == root {
			return fmt.Errorf("queue %s is not in the spool %s", q, root)
		}
	}
	return nil
}

// Listing asks the daemon for the queue listing. Output goes to out, each
// warning to warn. started reports whether anything was written; when it
// is false and err is not a *FatalError, the caller may read the queue
// itself instead.
func (c *Client) Listing(req ListingRequest, out io.Writer, warn func(string)) (started bool, err error) {
	req.Segments = true
	return c.stream("/v1/listing", req, out, warn)
}

// Qshape asks the daemon for qshape's table; as Listing.
func (c *Client) Qshape(req QshapeRequest, out io.Writer, warn func(string)) (started bool, err error) {
	return c.stream("/v1/qshape", req, out, warn)
}

func (c *Client) stream(path string, req any, out io.Writer, warn func(string)) (started bool, err error) {
	var conn *fdConn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { conn, _ = info.Conn.(*fdConn) },
	})
	resp, err := c.do(ctx, http.MethodPost, path, req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var buf []byte
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return started, nil
			}
			return started, fmt.Errorf("control: read answer: %w", err)
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return started, fmt.Errorf("control: read answer: %w", err)
		}
		switch hdr[0] {
		case frameOut:
			started = true
			if _, err := out.Write(buf); err != nil {
				return true, &OutputError{err}
			}
		case frameWarn:
			started = true
			warn(string(buf))
		case frameFatal:
			return started, &FatalError{string(buf)}
		case frameFile:
			var f *os.File
			if conn != nil {
				f = conn.takeFile()
			}
			if f == nil || len(buf) != 16 {
				return started, errors.New("control: read answer: a file frame without its file")
			}
			started = true
			off, n := int64(binary.BigEndian.Uint64(buf)), int64(binary.BigEndian.Uint64(buf[8:]))
			err := copyFile(out, f, off, n)
			f.Close()
			if err != nil {
				return true, &OutputError{err}
			}
		default:
			return started, fmt.Errorf("control: bad frame %q", hdr[0])
		}
	}
}

// OutputError is a failure to write the answer out (a closed pipe).
type OutputError struct{ Err error }

func (e *OutputError) Error() string { return e.Err.Error() }
func (e *OutputError) Unwrap() error { return e.Err }
