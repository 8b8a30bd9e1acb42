package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// hub wakes the live streams when the queue changes. changed closes the
// current channel, a broadcast to every stream waiting on it, and puts a
// fresh one in its place. A stream takes the current channel before it
// reads the state, so a change that lands while it reads wakes it again.
type hub struct {
	mu  sync.Mutex
	ch  chan struct{}
	gen uint64 // changes so far

	// The last overview state, shared by the streams that ask for the
	// same view at the same generation and second: the overview is the
	// costly part of an update, and every open page would compute it.
	cacheKey   snapKey
	cacheState liveState
}

type snapKey struct {
	gen     uint64
	senders bool
	sec     int64
	ok      bool
}

func newHub() *hub { return &hub{ch: make(chan struct{})} }

func (h *hub) changed() {
	h.mu.Lock()
	close(h.ch)
	h.ch = make(chan struct{})
	h.gen++
	h.mu.Unlock()
}

// current returns the channel that the next change closes.
func (h *hub) current() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ch
}

// liveState is what the live script can change in place: the text of
// the elements with a data-k attribute (Set), the shade of heat-map
// cells (Level), the heights of the rate bars (Bars), and the layout's
// name (Shape): when that differs from the page's, the script redraws
// the page's main part.
type liveState struct {
	Set   map[string]string `json:"set,omitempty"`
	Level map[string]int    `json:"level,omitempty"`
	Bars  map[string]int    `json:"bars,omitempty"`
	Shape string            `json:"shape,omitempty"`
}

// snapshot is the live state of a page: the queue counts that every
// page's header shows, and with full the whole overview.
func (d *Dashboard) snapshot(full, senders bool, now time.Time) liveState {
	if !full {
		return d.computeSnapshot(false, senders, now)
	}
	h := d.live
	h.mu.Lock()
	key := snapKey{gen: h.gen, senders: senders, sec: now.Unix(), ok: true}
	if h.cacheKey == key {
		st := h.cacheState
		h.mu.Unlock()
		return st
	}
	h.mu.Unlock()
	st := d.computeSnapshot(true, senders, now)
	h.mu.Lock()
	h.cacheKey, h.cacheState = key, st
	h.mu.Unlock()
	return st
}

// computeSnapshot reads the state afresh. The maps it returns are not
// changed afterwards (streams share them through the cache).
func (d *Dashboard) computeSnapshot(full, senders bool, now time.Time) liveState {
	st := liveState{Set: map[string]string{}, Level: map[string]int{}, Bars: map[string]int{}}
	var ov overviewData
	if full {
		ov = d.buildOverview(senders, now)
		st.Shape = ov.Shape
	} else {
		ov.Summary = d.src.Summary(now)
	}
	for _, q := range ov.Summary.Queues {
		k := "q." + q.Queue
		st.Set[k+".m"] = strconv.FormatInt(q.Messages, 10)
		if !full {
			continue
		}
		st.Set[k+".r"] = strconv.FormatInt(q.Recipients, 10)
		st.Set[k+".b"] = humanBytes(q.Bytes)
		st.Set[k+".o"] = age(now, q.Oldest)
	}
	if !full {
		return st
	}
	for _, c := range ov.Classes {
		k := "c." + c.Class
		st.Set[k+".r"] = strconv.FormatInt(c.Recipients, 10)
		st.Set[k+".m"] = strconv.FormatInt(c.Messages, 10)
		st.Set[k+".e"] = clip(c.Example, maxReasonLen)
	}
	for _, m := range ov.Maps {
		rows := append([]heatRowView{m.Total}, m.Rows...)
		for _, r := range rows {
			st.Set[r.Key+".t"] = strconv.FormatInt(r.Total, 10)
			for _, c := range r.Cells {
				st.Set[c.Key] = strconv.FormatInt(c.N, 10)
				st.Level[c.Key] = c.Level
			}
		}
	}
	for _, r := range ov.Rates {
		st.Set["r."+r.Kind] = strconv.FormatInt(r.Total, 10)
		for _, b := range r.Bars {
			st.Bars[b.Key] = b.H
		}
	}
	return st
}

// diff is what changed from old to cur; the shape is always sent.
func diff(old, cur liveState) liveState {
	out := liveState{Set: map[string]string{}, Level: map[string]int{}, Bars: map[string]int{}, Shape: cur.Shape}
	for k, v := range cur.Set {
		if o, ok := old.Set[k]; !ok || o != v {
			out.Set[k] = v
		}
	}
	for k, v := range cur.Level {
		if o, ok := old.Level[k]; !ok || o != v {
			out.Level[k] = v
		}
	}
	for k, v := range cur.Bars {
		if o, ok := old.Bars[k]; !ok || o != v {
			out.Bars[k] = v
		}
	}
	return out
}

func (s liveState) empty() bool {
	return len(s.Set) == 0 && len(s.Level) == 0 && len(s.Bars) == 0
}

// refreshEvery redraws ages and rates, which change with time alone.
const refreshEvery = 30 * time.Second

// events is the live stream (Server-Sent Events): a full state first,
// then, after each change in the queue (at most one per LiveInterval)
// and every refreshEvery, the values that changed. It ends when the
// session does.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	full, senders := q.Get("view") == "overview", q.Get("senders") == "1"
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var last liveState
	send := func(first bool) error {
		// A stream lives longer than the listener's write timeout, if
		// it has one: each write gets its own deadline instead.
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		cur := d.snapshot(full, senders, d.opt.Now())
		delta := cur
		if !first {
			delta = diff(last, cur)
			if delta.empty() && delta.Shape == last.Shape {
				return nil
			}
		}
		last = cur
		b, err := json.Marshal(delta)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: delta\ndata: %s\n\n", b); err != nil {
			return err
		}
		return rc.Flush()
	}
	ch := d.live.current()
	if err := send(true); err != nil {
		return
	}
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
			// Let a burst of events settle into one update.
			select {
			case <-r.Context().Done():
				return
			case <-time.After(d.opt.LiveInterval):
			}
		case <-tick.C:
		}
		ch = d.live.current()
		if d.sess.get(r) == nil {
			fmt.Fprint(w, "event: logout\ndata: {}\n\n")
			rc.Flush()
			return
		}
		if err := send(false); err != nil {
			return
		}
	}
}
