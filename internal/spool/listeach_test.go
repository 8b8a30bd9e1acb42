package spool

import (
	"os"
	"reflect"
	"testing"
	"time"
)

// TestListEach: ListEach gives List's entries, in List's order, in parts
// of at most n, across hash subdirectories; an error from fn stops it.
func TestListEach(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 40; i++ {
		f, err := s.NewFile(Incoming, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteEnvelope(&NewEnvelope{Arrival: now, Sender: "a@b.test", Recipients: []NewRecipient{{Address: "c@d.test"}}})
		if err := f.CommitNoDirSync(); err != nil {
			t.Fatal(err)
		}
		if err := s.Move(f.ID, Incoming, Deferred); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.List(Deferred)
	if err != nil || len(all) != 40 {
		t.Fatalf("List: %d entries, %v", len(all), err)
	}
	for _, n := range []int{1, 7, 40, 100} {
		var got []Entry
		parts := 0
		err := s.ListEach(Deferred, n, func(es []Entry) error {
			if len(es) == 0 || len(es) > n {
				t.Errorf("n %d: a part of %d", n, len(es))
			}
			parts++
			got = append(got, es...)
			return nil
		})
		if err != nil || !reflect.DeepEqual(got, all) {
			t.Errorf("n %d: %v, entries differ from List's:\n%v\n%v", n, err, got, all)
		}
		if want := (40 + n - 1) / n; parts != want {
			t.Errorf("n %d: %d parts, want %d", n, parts, want)
		}
	}
	calls := 0
	err = s.ListEach(Deferred, 5, func([]Entry) error { calls++; return os.ErrClosed })
	if err != os.ErrClosed || calls != 1 {
		t.Errorf("an error from fn: %v after %d calls", err, calls)
	}
}
