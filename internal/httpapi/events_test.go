package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"sluice/internal/event"
)

// streamServer serves ring's stream over real HTTP with a short
// ReadTimeout, as the daemon's listener has one.
func streamServer(t testing.TB, ring *Ring, opt StreamOptions) *httptest.Server {
	srv := httptest.NewUnstartedServer(EventsHandler(ring, opt))
	srv.Config.ReadTimeout = 200 * time.Millisecond
	srv.Start()
	t.Cleanup(func() { ring.Close(); srv.Close() })
	return srv
}

// openStream connects with the selector terms and Last-Event-ID.
func openStream(t testing.TB, srv *httptest.Server, lastID string, terms ...string) (*SSEReader, func()) {
	t.Helper()
	q := url.Values{"select": terms}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/?"+q.Encode(), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return NewSSEReader(resp.Body), func() { cancel(); resp.Body.Close() }
}

// next reads the next event, failing after a generous wait.
func next(t testing.TB, r *SSEReader) SSE {
	t.Helper()
	type res struct {
		ev  SSE
		err error
	}
	ch := make(chan res, 1)
	go func() { ev, err := r.Next(); ch <- res{ev, err} }()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatalf("stream: %v", x.err)
		}
		return x.ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event in 10 s")
	}
	return SSE{}
}

func deferred(id, to, class string) *event.Deferred {
	return &event.Deferred{Attempt: event.Attempt{ID: id, To: to, Time: time.Unix(1700000000, 0), Service: "smtp",
		DSN: "4.7.1", Reason: "host said: 450 try later", Class: class, Delay: 1500 * time.Millisecond, Relay: "mx[127.0.0.1]:25"}}
}

func TestStreamFiltersAndConverts(t *testing.T) {
	senders := map[string]string{"A1": "alice@src.test"}
	ring := NewRing(100, nil, func(id string) (string, string, bool) {
		s, ok := senders[id]
		return "active", s, ok
	})
	srv := streamServer(t, ring, StreamOptions{})
	all, closeAll := openStream(t, srv, "")
	defer closeAll()
	grey, closeGrey := openStream(t, srv, "", "class=greylisting domain=dest.test")
	defer closeGrey()
	alice, closeAlice := openStream(t, srv, "", "sender=alice@src.test")
	defer closeAlice()

	ring.Observe(deferred("A1", "bob@other.test", "greylisting"))
	ring.Observe(deferred("A1", "bob@dest.test", "rate-limited"))
	ring.Observe(deferred("B2", "carol@dest.test", "greylisting"))
	ring.Observe(&event.Moved{ID: "B2", From: "active", To: "deferred", Time: time.Unix(1700000001, 0), Next: time.Unix(1700000300, 0)})

	var types []string
	for range 4 {
		ev := next(t, all)
		se, err := ev.Decode()
		if err != nil || ev.Event != "" || !strings.HasSuffix(ev.ID, fmt.Sprint("-", len(types)+1)) {
			t.Fatalf("event %+v: %v", ev, err)
		}
		types = append(types, se.Type+":"+se.QueueID)
	}
	if got := strings.Join(types, " "); got != "deferred:A1 deferred:A1 deferred:B2 moved:B2" {
		t.Errorf("all events: %s", got)
	}

	ev := next(t, grey)
	se, _ := ev.Decode()
	if se.QueueID != "B2" || se.Recipient != "carol@dest.test" || se.Class != "greylisting" {
		t.Errorf("greylisting to dest.test: %s", ev.Data)
	}
	// The JSON's field names are the documented snake_case ones.
	var raw map[string]any
	json.Unmarshal(ev.Data, &raw)
	for _, k := range []string{"type", "time", "queue_id", "queue", "recipient", "relay", "dsn", "reason", "class", "delay", "delays", "service"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("event JSON lacks %q: %s", k, ev.Data)
		}
	}
	if raw["delay"] != 1.5 || raw["queue"] != "active" {
		t.Errorf("delay or queue: %s", ev.Data)
	}
	if _, ok := raw["sender"]; ok {
		t.Errorf("B2's sender is unknown but the event has one: %s", ev.Data)
	}

	for range 2 {
		ev := next(t, alice)
		se, _ := ev.Decode()
		if se.QueueID != "A1" || se.Sender == nil || *se.Sender != "alice@src.test" {
			t.Errorf("alice's events: %s", ev.Data)
		}
	}
	// Nothing else reached the filtered streams: the next event each
	// sees is one published now.
	ring.Observe(deferred("A1", "dave@dest.test", "greylisting"))
	if se, _ := next(t, grey).Decode(); se.Recipient != "dave@dest.test" {
		t.Errorf("greylisting stream then saw %+v", se)
	}
	if se, _ := next(t, alice).Decode(); se.Recipient != "dave@dest.test" {
		t.Errorf("alice's stream then saw %+v", se)
	}
}

func TestStreamRefusesBadSelectors(t *testing.T) {
	ring := NewRing(10, nil, nil)
	srv := streamServer(t, ring, StreamOptions{})
	for _, sel := range []string{"age>1h", "size>1M", "bogus=1", "queue=nowhere"} {
		resp, err := http.Get(srv.URL + "/?select=" + url.QueryEscape(sel))
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]string
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.HasPrefix(e["error"], "selector: bad term") {
			t.Errorf("select=%s: %d %v", sel, resp.StatusCode, e)
		}
	}
	resp, _ := http.Get(srv.URL + "/?last_event_id=garbage")
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("bad Last-Event-ID: %d", resp.StatusCode)
	}
}

func TestStreamResume(t *testing.T) {
	ring := NewRing(5, nil, nil)
	srv := streamServer(t, ring, StreamOptions{})
	s, closeS := openStream(t, srv, "")
	ring.Observe(deferred("A1", "a@x.test", "timeout"))
	first := next(t, s)
	closeS()
	ring.Observe(deferred("A2", "b@x.test", "timeout"))
	ring.Observe(deferred("A3", "c@x.test", "timeout"))

	// Resumed: the two events published while away, then live ones.
	s, closeS = openStream(t, srv, first.ID)
	for _, want := range []string{"A2", "A3"} {
		if se, _ := next(t, s).Decode(); se.QueueID != want {
			t.Errorf("resumed: got %s, want %s", se.QueueID, want)
		}
	}
	closeS()

	// Away for longer than the ring holds: told how many were lost,
	// then the oldest the ring has.
	for i := 4; i <= 10; i++ {
		ring.Observe(deferred(fmt.Sprint("A", i), "d@x.test", "timeout"))
	}
	s, closeS = openStream(t, srv, first.ID)
	defer closeS()
	ev := next(t, s)
	if ev.Event != EventLost || string(ev.Data) != `{"lost":4}` {
		t.Errorf("after a long absence: %+v %s", ev, ev.Data)
	}
	if se, _ := next(t, s).Decode(); se.QueueID != "A6" {
		t.Errorf("after the loss: %+v", se)
	}
	if lost, _ := ring.Stats(); lost < 4 { // and what streams left behind lost
		t.Errorf("ring counts %d lost", lost)
	}

	// An ID of an earlier run of the daemon.
	s2, close2 := openStream(t, srv, "zzz-3")
	defer close2()
	if ev := next(t, s2); ev.Event != EventRestart {
		t.Errorf("ID of another run: %+v", ev)
	}
	if ev := next(t, s2); ev.Event != EventLost || string(ev.Data) != `{"lost":5}` {
		t.Errorf("ID of another run, then: %+v %s", ev, ev.Data)
	}
}

// TestStreamOutlivesTimeouts: a stream idle for longer than the server's
// ReadTimeout still delivers, and heartbeats move the client's
// Last-Event-ID past the events its selector left out.
func TestStreamOutlivesTimeouts(t *testing.T) {
	ring := NewRing(10, nil, nil)
	srv := streamServer(t, ring, StreamOptions{Heartbeat: 50 * time.Millisecond})
	s, closeS := openStream(t, srv, "", "domain=wanted.test")
	defer closeS()
	time.Sleep(500 * time.Millisecond) // beyond ReadTimeout
	ring.Observe(deferred("A1", "c@wanted.test", "timeout"))
	if se, _ := next(t, s).Decode(); se.QueueID != "A1" {
		t.Errorf("after idling: %+v", se)
	}

	resp, err := http.Get(srv.URL + "/?select=domain%3Dwanted.test")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	ring.Observe(deferred("A2", "d@other.test", "timeout"))
	heartbeat := false
	for lines.Scan() {
		l := lines.Text()
		if l == ": heartbeat" {
			heartbeat = true
		}
		if strings.HasPrefix(l, "data:") {
			t.Fatalf("an event the selector leaves out was sent: %s", l)
		}
		if l == "id: "+ring.ID(2) {
			break
		}
	}
	if !heartbeat {
		t.Errorf("no heartbeat before the id line (%v)", lines.Err())
	}
}

// TestSlowClientNeverBlocksPublisher: a client that does not read at
// all, with the socket's buffers full, does not slow the publisher; it
// is told of the loss when it reads again.
func TestSlowClientNeverBlocksPublisher(t *testing.T) {
	ring := NewRing(1000, nil, nil)
	srv := streamServer(t, ring, StreamOptions{WriteWait: time.Minute})
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1000)
	done := make(chan struct{})
	const n = 200000
	go func() {
		for i := range n {
			ring.Observe(&event.Deferred{Attempt: event.Attempt{ID: fmt.Sprint("Q", i), To: "a@b.test", Reason: big}})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the publisher was blocked by a client that does not read")
	}
	// Now read: somewhere in the stream is a "lost" event.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	r := NewSSEReader(resp.Body)
	for {
		ev, err := r.Next()
		if err != nil {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("no lost event before %v (last %s)\n%s", err, r.LastID, buf[:n])
		}
		if ev.Event == EventLost {
			break
		}
	}
}
