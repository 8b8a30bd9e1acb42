package manage

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Group is one row of a summary: messages and recipients that share a key.
type Group struct {
	Key        string    `json:"key"`
	Messages   int       `json:"messages"`
	Recipients int       `json:"recipients"`
	Oldest     time.Time `json:"oldest"`            // earliest arrival in the group
	Example    string    `json:"example,omitempty"` // one full reason; for other keys, one message's sender → recipient
	ExampleID  string    `json:"example_id,omitempty"`
	Detail     string    `json:"detail,omitempty"` // what the key means (reason classes)
}

// SummaryBy names what a summary groups by.
var SummaryBy = []string{"reason", "domain", "sender", "age", "queue"}

// ageBuckets are the age groups of a summary by age, as upper bounds.
var ageBuckets = []struct {
	max   time.Duration
	label string
}{
	{5 * time.Minute, "< 5m"}, {time.Hour, "5m-1h"}, {4 * time.Hour, "1h-4h"},
	{24 * time.Hour, "4h-1d"}, {3 * 24 * time.Hour, "1d-3d"}, {5 * 24 * time.Hour, "3d-5d"},
	{1<<63 - 1, ">= 5d"},
}

// AgeBuckets returns the age groups of a summary by age, youngest first:
// a message is in the first whose upper bound its age is under.
func AgeBuckets() (below []time.Duration, labels []string) {
	for _, b := range ageBuckets {
		below, labels = append(below, b.max), append(labels, b.label)
	}
	return below, labels
}

// NoReason is the key of the recipients without a reason yet in a
// summary by reason.
const NoReason = "(no reason yet)"

// Summarize groups messages by key ("reason", "domain", "sender", "age",
// "queue"). Grouping by reason uses the reason class of each pending
// recipient (recipients with no reason yet count as "(no reason yet)"),
// so "why is it stuck" fits on one screen. Each group's example is its
// oldest message: the earliest arrival, and among messages that arrived
// in the same second the smallest queue ID (arrivals count in whole
// seconds, as the model keeps them); a message whose arrival is unknown
// (an unreadable file) is the example only of a group with no other. So
// the example's arrival is the group's Oldest, and the same messages
// give the same summary in any order. Rows are sorted by recipients (then
// messages) descending; age rows in age order.
func Summarize(msgs []*Message, by string, now time.Time) []Group {
	s := NewSummarizer(by, now)
	for _, m := range msgs {
		s.Add(m)
	}
	return s.Groups()
}

// Summarizer is Summarize one message at a time: Add keeps nothing of a
// message but its counts and, while it is a group's example, a few
// strings, so a caller can stream a large queue through it.
type Summarizer struct {
	by     string
	now    time.Time
	groups map[string]*Group
	exAt   map[string]time.Time // each group's example's arrival
	order  []string
	seen   []string // keys counted for the current message
}

// NewSummarizer starts a summary by by at now.
func NewSummarizer(by string, now time.Time) *Summarizer {
	return &Summarizer{by: by, now: now, groups: map[string]*Group{}, exAt: map[string]time.Time{}}
}

// ExampleBefore reports whether a message (arrival a, id) comes before
// another (arrival b, exID) as a group's example.
func ExampleBefore(a time.Time, id string, b time.Time, exID string) bool {
	return exampleBefore(a, id, b, exID)
}

func exampleBefore(a time.Time, id string, b time.Time, exID string) bool {
	a, b = a.Truncate(time.Second), b.Truncate(time.Second)
	if a.IsZero() != b.IsZero() {
		return b.IsZero()
	}
	if !a.Equal(b) {
		return a.Before(b)
	}
	return id < exID
}

func (s *Summarizer) get(k string) *Group {
	g, ok := s.groups[k]
	if !ok {
		g = &Group{Key: k}
		s.groups[k] = g
		s.order = append(s.order, k)
	}
	return g
}

// count adds rcpts recipients of m to group k; example is m's example
// for the group, made only when needed.
func (s *Summarizer) count(m *Message, k string, rcpts int, example func() string) {
	g := s.get(k)
	g.Recipients += rcpts
	for _, seen := range s.seen {
		if seen == k {
			return
		}
	}
	s.seen = append(s.seen, k)
	g.Messages++
	// An unknown arrival (an unreadable file) is no oldest.
	if !m.Arrival.IsZero() && (g.Oldest.IsZero() || m.Arrival.Before(g.Oldest)) {
		g.Oldest = m.Arrival
	}
	if g.ExampleID == "" || exampleBefore(m.Arrival, m.ID, s.exAt[k], g.ExampleID) {
		if ex := example(); ex != "" {
			g.Example, g.ExampleID = ex, m.ID
			s.exAt[k] = m.Arrival
		}
	}
}

// Add counts one message.
func (s *Summarizer) Add(m *Message) {
	s.seen = s.seen[:0]
	ex := func() string { return example(m) }
	switch s.by {
	case "sender":
		k := strings.ToLower(m.Sender)
		if k == "" {
			k = "MAILER-DAEMON"
		}
		s.count(m, k, pendingCount(m), ex)
	case "age":
		s.count(m, AgeGroup(s.now.Sub(m.Arrival)), pendingCount(m), ex)
	case "queue":
		s.count(m, m.Queue, pendingCount(m), ex)
	default: // reason, domain
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Done {
				continue
			}
			if s.by == "domain" {
				d := domainOf(r.Address)
				if d == "" {
					d = "(local)"
				}
				s.count(m, d, 1, func() string { return ExampleText(m.Sender, r.Address, 0) })
				continue
			}
			class := r.ReasonClass()
			if class == "" {
				s.count(m, NoReason, 1, func() string { return "" })
				continue
			}
			s.count(m, class, 1, func() string { return r.Reason })
		}
	}
}

// Before reports whether a message (arrival, id) would come before the
// example of group key, had its example text been known: a caller that
// leaves some texts out (the model keeps some reasons on disk) fills
// them in afterwards by the same rule.
func (s *Summarizer) Before(key string, arrival time.Time, id string) bool {
	g, ok := s.groups[key]
	return !ok || g.ExampleID == "" || exampleBefore(arrival, id, s.exAt[key], g.ExampleID)
}

// SetExample makes a message (id, arrival) with example text ex the
// example of group key (see Before).
func (s *Summarizer) SetExample(key, ex, id string, arrival time.Time) {
	if g, ok := s.groups[key]; ok {
		g.Example, g.ExampleID = ex, id
		s.exAt[key] = arrival
	}
}

// Groups returns the groups, sorted.
func (s *Summarizer) Groups() []Group {
	out := make([]Group, 0, len(s.order))
	for _, k := range s.order {
		out = append(out, *s.groups[k])
	}
	return FinishGroups(s.by, out)
}

// FinishGroups gives the groups of a summary by by their details (what a
// reason class means) and sorts them: by recipients, then messages,
// descending; age groups in age order.
func FinishGroups(by string, out []Group) []Group {
	if by == "reason" {
		for i := range out {
			out[i].Detail = ClassDescription(out[i].Key)
		}
	}
	// Keys are unique, so these orders are total and need no stable
	// sort (whose moves of whole rows cost milliseconds at ten thousand
	// senders).
	if by == "age" {
		rank := map[string]int{}
		for i, b := range ageBuckets {
			rank[b.label] = i
		}
		slices.SortFunc(out, func(a, b Group) int { return cmp.Compare(rank[a.Key], rank[b.Key]) })
		return out
	}
	slices.SortFunc(out, func(a, b Group) int {
		if c := cmp.Compare(b.Recipients, a.Recipients); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Messages, a.Messages); c != 0 {
			return c
		}
		// Placeholder rows such as "(no reason yet)" go after real ones.
		if pa, pb := strings.HasPrefix(a.Key, "("), strings.HasPrefix(b.Key, "("); pa != pb {
			if pa {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}

// AgeGroup is the group of a message of age d in a summary by age.
func AgeGroup(d time.Duration) string {
	for _, b := range ageBuckets {
		if d < b.max {
			return b.label
		}
	}
	return ageBuckets[len(ageBuckets)-1].label
}

// ExampleText describes a summary row's example message: its sender, a
// pending recipient, and how many more it has ("alice@a → bob@b (+2)").
func ExampleText(sender, rcpt string, more int) string {
	s := showSender(sender) + " → " + rcpt
	if more > 0 {
		s += fmt.Sprintf(" (+%d)", more)
	}
	return s
}

// example describes a message in a summary row: its sender and its first
// pending recipient (and how many more).
func example(m *Message) string {
	first, n := "", 0
	for _, r := range m.Recipients {
		if !r.Done {
			if n == 0 {
				first = r.Address
			}
			n++
		}
	}
	return ExampleText(m.Sender, first, max(n-1, 0))
}

func showSender(s string) string {
	if s == "" {
		return "MAILER-DAEMON"
	}
	return s
}

func pendingCount(m *Message) int {
	n := 0
	for _, r := range m.Recipients {
		if !r.Done {
			n++
		}
	}
	return n
}
