package manage

import (
	"fmt"
	"sort"
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

// Summarize groups messages by key ("reason", "domain", "sender", "age",
// "queue"). Grouping by reason uses the normalized reason class of each
// pending recipient (recipients with no reason yet count as "(no reason
// yet)"), so "why is it stuck" fits on one screen. Rows are sorted by
// recipients (then messages) descending; age rows in age order.
func Summarize(msgs []*Message, by string, now time.Time) []Group {
	groups := map[string]*Group{}
	var order []string
	get := func(k string) *Group {
		g, ok := groups[k]
		if !ok {
			g = &Group{Key: k}
			groups[k] = g
			order = append(order, k)
		}
		return g
	}
	for _, m := range msgs {
		seen := map[string]bool{}
		count := func(k, example string, rcpts int) {
			g := get(k)
			g.Recipients += rcpts
			if !seen[k] {
				seen[k] = true
				g.Messages++
				if g.Oldest.IsZero() || m.Arrival.Before(g.Oldest) {
					g.Oldest = m.Arrival
				}
			}
			if g.Example == "" && example != "" {
				g.Example, g.ExampleID = example, m.ID
			}
		}
		ex := example(m)
		switch by {
		case "sender":
			s := strings.ToLower(m.Sender)
			if s == "" {
				s = "MAILER-DAEMON"
			}
			count(s, ex, pendingCount(m))
		case "age":
			age := now.Sub(m.Arrival)
			for _, b := range ageBuckets {
				if age < b.max {
					count(b.label, ex, pendingCount(m))
					break
				}
			}
		case "queue":
			count(m.Queue, ex, pendingCount(m))
		default: // reason, domain
			for _, r := range m.Recipients {
				if r.Done {
					continue
				}
				if by == "domain" {
					d := domainOf(r.Address)
					if d == "" {
						d = "(local)"
					}
					count(d, showSender(m.Sender)+" → "+r.Address, 1)
					continue
				}
				if r.Reason == "" {
					count("(no reason yet)", "", 1)
					continue
				}
				count(r.ReasonClass(), r.Reason, 1)
			}
		}
	}
	out := make([]Group, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if by == "reason" {
			g.Detail = ClassDescription(k)
		}
		out = append(out, *g)
	}
	if by == "age" {
		rank := map[string]int{}
		for i, b := range ageBuckets {
			rank[b.label] = i
		}
		sort.SliceStable(out, func(i, j int) bool { return rank[out[i].Key] < rank[out[j].Key] })
		return out
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Recipients != out[j].Recipients {
			return out[i].Recipients > out[j].Recipients
		}
		if out[i].Messages != out[j].Messages {
			return out[i].Messages > out[j].Messages
		}
		// Placeholder rows such as "(no reason yet)" go after real ones.
		if pi, pj := strings.HasPrefix(out[i].Key, "("), strings.HasPrefix(out[j].Key, "("); pi != pj {
			return pj
		}
		return out[i].Key < out[j].Key
	})
	return out
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
	s := showSender(m.Sender) + " → " + first
	if n > 1 {
		s += fmt.Sprintf(" (+%d)", n-1)
	}
	return s
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
