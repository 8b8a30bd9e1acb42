package model

import (
	"strings"
	"time"
)

// SummaryKeys are the rules of a summary that belong to its caller
// (package manage's): the age groups and the key of recipients without a
// reason yet.
type SummaryKeys struct {
	// Age returns the age group of a message of age d.
	Age func(d time.Duration) string
	// NoReason is the key of pending recipients with no reason yet.
	NoReason string
}

// SummaryRow is one group of a summary of every message: the messages and
// pending recipients that share a key, the oldest arrival, and what the
// caller needs to describe the group's example, the message with the
// smallest queue ID.
type SummaryRow struct {
	Key        string
	Messages   int
	Recipients int
	Oldest     time.Time
	ExampleID  string // "" for the no-reason group, which has no example
	// Sender and Rcpt are the example's sender and its first pending
	// recipient in the group (by domain: in the domain; otherwise: of
	// the message); More counts its other pending recipients (not by
	// domain or reason). Reason is the first pending recipient's reason
	// of the group's class, "" when the model keeps it on disk only.
	Sender, Rcpt, Reason string
	More                 int
}

// summaryAcc is a row being counted.
type summaryAcc struct {
	SummaryRow
	oldest uint32
	ex     *msg // the example: the smallest queue ID so far
	last   *msg // the last message counted, so each counts once
	hasEx  bool
}

// Summarize groups every message by reason class, recipient domain,
// sender, age or queue, as package manage's Summarizer does for the
// messages it is given, without making a view of each message: it walks
// the model's own records once under the read lock. Rows come in no
// particular order. It is the summary of an empty selection; a selection
// that picks messages goes through the views.
func (m *Model) Summarize(by string, now time.Time, keys SummaryKeys) (rows []SummaryRow, messages, recipients int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var (
		byClass [32]*summaryAcc
		byQueue [8]*summaryAcc
		byAge   = map[string]*summaryAcc{}
		byKey   = map[string]*summaryAcc{}
		order   []*summaryAcc
		lower   = map[sym]string{} // senders' keys
	)
	get := func(slot **summaryAcc, key string) *summaryAcc {
		if *slot == nil {
			*slot = &summaryAcc{SummaryRow: SummaryRow{Key: key}}
			order = append(order, *slot)
		}
		return *slot
	}
	keyed := func(table map[string]*summaryAcc, key string) *summaryAcc {
		a := table[key]
		if a == nil {
			a = &summaryAcc{SummaryRow: SummaryRow{Key: key}}
			table[key] = a
			order = append(order, a)
		}
		return a
	}
	nowSec := now.Unix()
	count := func(a *summaryAcc, x *msg, rcpts int, example bool) {
		a.Recipients += rcpts
		if a.last == x {
			return
		}
		a.last = x
		a.Messages++
		// As manage's Summarizer: an unreadable message's arrival is the
		// zero time (0 here), which counts as "none yet".
		if a.oldest == 0 || x.arrival < a.oldest {
			a.oldest = x.arrival
		}
		if example && (!a.hasEx || x.id < a.ex.id) {
			a.ex, a.hasEx = x, true
		}
	}
	m.msgs.each(func(x *msg) {
		messages++
		pending := 0
		for i := range x.rcpts {
			if !x.rcpts[i].done {
				pending++
			}
		}
		recipients += pending
		switch by {
		case "sender":
			k, ok := lower[x.sender]
			if !ok {
				k = strings.ToLower(m.syms.str(x.sender))
				if k == "" {
					k = "MAILER-DAEMON"
				}
				lower[x.sender] = k
			}
			count(keyed(byKey, k), x, pending, true)
		case "age":
			count(keyed(byAge, keys.Age(time.Duration(nowSec-int64(x.arrival))*time.Second)), x, pending, true)
		case "queue":
			count(get(&byQueue[x.queue], Queues[x.queue]), x, pending, true)
		default: // reason, domain
			for i := range x.rcpts {
				r := &x.rcpts[i]
				if r.done {
					continue
				}
				if by == "domain" {
					count(keyed(byKey, summaryDomain(r.addr)), x, 1, true)
					continue
				}
				key := keys.NoReason
				if r.class != 0 {
					key = classNames[r.class]
				}
				count(get(&byClass[r.class], key), x, 1, r.class != 0)
			}
		}
	})
	rows = make([]SummaryRow, 0, len(order))
	for _, a := range order {
		if a.oldest != 0 {
			a.Oldest = time.Unix(int64(a.oldest), 0).UTC()
		}
		if a.hasEx {
			m.describe(&a.SummaryRow, a.ex, by)
		}
		rows = append(rows, a.SummaryRow)
	}
	return rows, messages, recipients
}

// describe fills in row's example from x (under the read lock).
func (m *Model) describe(row *SummaryRow, x *msg, by string) {
	row.ExampleID, row.Sender = x.id, m.syms.str(x.sender)
	n := 0
	for i := range x.rcpts {
		r := &x.rcpts[i]
		if r.done {
			continue
		}
		switch by {
		case "domain":
			if summaryDomain(r.addr) == row.Key {
				row.Rcpt = r.addr
				return
			}
			continue
		case "reason":
			if classNames[r.class] == row.Key {
				row.Rcpt, row.Reason = r.addr, m.syms.str(r.reason)
				return
			}
			continue
		}
		if n == 0 {
			row.Rcpt = r.addr
		}
		n++
	}
	row.More = max(n-1, 0)
}

// summaryDomain is a recipient's group in a summary by domain, as
// manage's: the lower-cased domain, "(local)" when there is none.
func summaryDomain(addr string) string {
	if j := strings.LastIndexByte(addr, '@'); j >= 0 && j+1 < len(addr) {
		return strings.ToLower(addr[j+1:])
	}
	return "(local)"
}
