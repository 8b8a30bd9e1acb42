package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Stream timing. A comment line every heartbeat keeps proxies and NAT
// tables from closing an idle stream and tells the client the daemon is
// alive; writeWait bounds each write, so a client that stops reading is
// cut off instead of holding a goroutine and a socket for ever.
const (
	heartbeat = 15 * time.Second
	writeWait = 30 * time.Second
	// batch is how many events one write carries at most.
	batch = 256
)

// Stream options, for tests.
type StreamOptions struct {
	Heartbeat time.Duration // heartbeat when 0
	WriteWait time.Duration // writeWait when 0
}

// Control events a client can act on, sent with an "event:" field so an
// EventSource's onmessage sees only queue events:
//
//	event: lost     data: {"lost": N}   N events were dropped because the client
//	                                     fell behind the ring (or resumed from an ID
//	                                     it no longer holds): re-read the state
//	event: restart  data: {}            the Last-Event-ID is of an earlier run of the
//	                                     daemon: what happened in between is unknown
const (
	EventLost    = "lost"
	EventRestart = "restart"
)

// EventsHandler serves GET ?select=TERMS (the parameter may repeat) as
// a stream of r's events (see the top of events.go). Authentication is
// the caller's.
func EventsHandler(r *Ring, opt StreamOptions) http.Handler {
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = heartbeat
	}
	if opt.WriteWait <= 0 {
		opt.WriteWait = writeWait
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		f, err := newEventFilter(q["select"]...)
		if err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		lastID := req.Header.Get("Last-Event-ID")
		if lastID == "" {
			lastID = q.Get("last_event_id") // for clients that cannot set headers
		}
		after, restarted, err := r.position(lastID)
		if err != nil {
			Error(w, http.StatusBadRequest, err.Error())
			return
		}
		r.stream(1)
		defer r.stream(-1)
		serveStream(w, req, r, f, after, restarted, opt)
	})
}

func serveStream(w http.ResponseWriter, req *http.Request, r *Ring, f *eventFilter, after uint64, restarted bool, opt StreamOptions) {
	rc := http.NewResponseController(w)
	// The server's ReadTimeout would otherwise end the stream: when it
	// expires, net/http's background read of the idle connection fails
	// and cancels the request's context.
	rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	// retry: how long an EventSource waits before reconnecting.
	buf.WriteString("retry: 2000\n\n")
	if restarted {
		buf.WriteString("event: " + EventRestart + "\ndata: {}\n\n")
	}
	send := func() bool {
		if buf.Len() == 0 {
			return true
		}
		rc.SetWriteDeadline(time.Now().Add(opt.WriteWait))
		_, err := w.Write(buf.Bytes())
		if err == nil {
			err = rc.Flush()
		}
		buf.Reset()
		return err == nil
	}
	if !send() {
		return
	}
	tick := time.NewTicker(opt.Heartbeat)
	defer tick.Stop()
	entries := make([]*entry, 0, batch)
	sentID := after // the last ID the client knows
	for {
		var lost uint64
		var wake <-chan struct{}
		var closed bool
		entries, lost, wake, closed = r.read(after, batch, entries[:0])
		if lost > 0 {
			fmt.Fprintf(&buf, "event: %s\ndata: {\"lost\":%d}\n\n", EventLost, lost)
			after += lost
		}
		for _, e := range entries {
			after = e.seq
			if !f.match(e) {
				continue
			}
			buf.WriteString("id: " + r.ID(e.seq) + "\ndata: ")
			buf.Write(e.json())
			buf.WriteString("\n\n")
			sentID = e.seq
		}
		if !send() {
			return
		}
		if len(entries) == batch {
			continue // more is waiting
		}
		if closed {
			return
		}
		select {
		case <-wake:
		case <-tick.C:
			buf.WriteString(": heartbeat\n")
			if sentID != after {
				// An id without data moves the client's Last-Event-ID
				// past the events the selector left out, so a resume
				// does not report them lost (HTML, "interpreting an
				// event stream": the id is kept, nothing dispatched).
				buf.WriteString("id: " + r.ID(after) + "\n")
				sentID = after
			}
			buf.WriteString("\n")
			if !send() {
				return
			}
		case <-req.Context().Done():
			return
		}
	}
}

// SSE is one event read from a stream.
type SSE struct {
	ID    string // the id field; "" when the event had none
	Event string // the event field; "" for a queue event
	Data  []byte
}

// Decode reads a queue event's data.
func (e SSE) Decode() (StreamEvent, error) {
	var se StreamEvent
	err := json.Unmarshal(e.Data, &se)
	return se, err
}

// SSEReader reads a text/event-stream: events, with the last event ID
// as the HTML standard's EventSource keeps it.
type SSEReader struct {
	br     *bufio.Reader
	LastID string
}

// NewSSEReader reads from r.
func NewSSEReader(r io.Reader) *SSEReader { return &SSEReader{br: bufio.NewReader(r)} }

// maxLine bounds one line of a stream.
const maxLine = 1 << 20

// Next returns the next event with data; comments, retry fields and
// id-only blocks update LastID and are skipped.
func (s *SSEReader) Next() (SSE, error) {
	var ev SSE
	var data []byte
	have := false
	for {
		line, err := s.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather it.
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(long) < maxLine {
				line, err = s.br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) == 0 {
				return SSE{}, io.EOF
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return SSE{}, err
		}
		l := strings.TrimRight(string(line), "\r\n")
		if l == "" {
			if have {
				ev.ID = s.LastID
				ev.Data = data
				return ev, nil
			}
			ev = SSE{}
			continue
		}
		if l[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(l, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			if !strings.ContainsRune(value, 0) {
				s.LastID = value
			}
		case "event":
			ev.Event = value
		case "data":
			if have {
				data = append(data, '\n')
			}
			data = append(data, value...)
			have = true
		case "retry":
			if _, err := strconv.Atoi(value); err != nil {
				continue
			}
		}
	}
}

// handleEvents routes GET /api/v1/events to r's stream; no route when r
// is nil.
func handleEvents(mux *router, r *Ring) {
	if r != nil {
		mux.HandleFunc("GET /api/v1/events", EventsHandler(r, StreamOptions{}).ServeHTTP)
	}
}
