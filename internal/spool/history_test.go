package spool

import (
	"testing"
	"time"
)

func TestHistory(t *testing.T) {
	s := New(t.TempDir())
	if h, err := s.ReadHistory("54AB4BA048", 0); err != nil || h != nil {
		t.Fatalf("missing history: %v %v", h, err)
	}
	t1, t2 := time.Unix(100, 0).UTC(), time.Unix(400, 0).UTC()
	if err := s.AppendHistory("54AB4BA048",
		Attempt{Time: t1, Arrival: 90, Recipient: "a@x", Status: "deferred", Reason: "refused"},
		Attempt{Time: t1, Arrival: 90, Recipient: "b@x", Status: "sent"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendHistory("54AB4BA048", Attempt{Time: t2, Arrival: 90, Recipient: "a@x", Status: "deferred"}); err != nil {
		t.Fatal(err)
	}
	// A stale entry from an earlier message that had the same ID.
	if err := s.AppendHistory("54AB4BA048", Attempt{Time: t2, Arrival: 7, Recipient: "old@x", Status: "deferred"}); err != nil {
		t.Fatal(err)
	}
	h, err := s.ReadHistory("54AB4BA048", 90)
	if err != nil || len(h) != 3 || CountAttempts(h) != 2 || h[0].Reason != "refused" {
		t.Fatalf("history = %+v, %v", h, err)
	}
	if got := s.RelPath(History, "54AB4BA048"); got != "history/5/54AB4BA048" {
		t.Errorf("history path %s", got)
	}
}
