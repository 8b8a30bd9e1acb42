package server

import (
	"bufio"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"sluice/internal/audit"
	"sluice/internal/dashboard"
	"sluice/internal/event"
	"sluice/internal/manage"
	"sluice/internal/model"
	"sluice/internal/smtp"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// The dashboard (package dashboard) reads the daemon through dashSource:
// the overview from the queue model's aggregates (never its messages),
// listings and actions through manage with the queue manager as the
// coordinator, exactly as the control socket's, and a message's headers
// and body from its queue file. The events feed its delivery rates, the
// example reason of each class and each destination's last reasons, and
// wake its live updates.

// dashWho is the name the dashboard's changes are recorded under: the
// API token's name.
const dashWho = "dashboard"

// exactDestinations is the queue size up to which the destinations page
// counts each domain's messages, oldest and classes from the model's
// messages; above it, from the qshape aggregates and the notes the events
// leave, so that the page never walks a huge queue.
const exactDestinations = 100_000

type dashSource struct {
	s     *Server
	q     *manage.Queue
	notes *dashNotes
}

// newDashboard builds the dashboard over the daemon and subscribes it to
// the events.
func (s *Server) newDashboard(token string, secure bool) (*dashboard.Dashboard, error) {
	notes := newDashNotes()
	rates := &dashboard.Rates{}
	src := &dashSource{s: s, notes: notes,
		q: s.manageQueue()}
	d, err := dashboard.New(dashboard.Options{
		Source: src, Token: token, Rates: rates, Now: s.clk.Now, Secure: secure, Who: dashWho,
		Audit: func(r dashboard.AuditRecord) {
			// Every change made on the dashboard goes to the queue's
			// audit log (package audit), under the token's name.
			e := audit.Entry{Time: r.Time, User: r.Who, UID: -1, Interface: audit.Dashboard,
				Action: r.Action, Selector: r.Selector, Matched: r.Matched, Changed: r.Changed, Skipped: r.Skipped,
				Detail: "from " + r.Remote}
			if r.Err != "" {
				e.Failed, e.Detail = 1, e.Detail+"; error: "+r.Err
			}
			if err := audit.Append(s.auditPath(), e); err != nil {
				s.log.Warn("dashboard", "audit: %v", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	s.events.Subscribe(event.Func(func(e event.Event) {
		switch e := e.(type) {
		case *event.Sent:
			rates.Add("sent", e.Time)
		case *event.Deferred:
			rates.Add("deferred", e.Time)
			notes.deferred(&e.Attempt)
		case *event.Bounced:
			rates.Add("bounced", e.Time)
		}
		d.Changed()
	}))
	return d, nil
}

// --- notes --------------------------------------------------------------

// maxNoteDomains bounds the per-domain notes; past it, the domain noted
// longest ago is forgotten.
const maxNoteDomains = 10_000

// dashNotes keeps what the model does not: the last reason of each class
// and the last few reasons per recipient domain, from the deferrals seen
// since the daemon started.
type dashNotes struct {
	mu      sync.Mutex
	example map[string]string
	domains map[string]*domainNote
	seq     uint64
}

type domainNote struct {
	reasons []string // newest first, distinct, at most 3
	seq     uint64
}

func newDashNotes() *dashNotes {
	return &dashNotes{example: map[string]string{}, domains: map[string]*domainNote{}}
}

func (n *dashNotes) deferred(a *event.Attempt) {
	d := rcptDomain(a.To)
	n.mu.Lock()
	defer n.mu.Unlock()
	if a.Class != "" {
		n.example[a.Class] = a.Reason
	}
	n.seq++
	x := n.domains[d]
	if x == nil {
		if len(n.domains) >= maxNoteDomains {
			var oldK string
			var oldS uint64 = ^uint64(0)
			for k, v := range n.domains {
				if v.seq < oldS {
					oldK, oldS = k, v.seq
				}
			}
			delete(n.domains, oldK)
		}
		x = &domainNote{}
		n.domains[d] = x
	}
	x.seq = n.seq
	x.reasons = slices.DeleteFunc(x.reasons, func(r string) bool { return r == a.Reason })
	x.reasons = append([]string{a.Reason}, x.reasons...)
	if len(x.reasons) > 3 {
		x.reasons = x.reasons[:3]
	}
}

func (n *dashNotes) exampleOf(class string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.example[class]
}

func (n *dashNotes) reasonsOf(domain string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if x := n.domains[domain]; x != nil {
		return slices.Clone(x.reasons)
	}
	return nil
}

// rcptDomain is the qshape row name of an address's domain.
func rcptDomain(addr string) string {
	if addr == "" {
		return "MAILER-DAEMON"
	}
	d := addr
	if i := strings.LastIndexByte(d, '@'); i >= 0 {
		d = d[i+1:]
	}
	return strings.Trim(strings.ToLower(d), ".")
}

// --- the overview -------------------------------------------------------

func (d *dashSource) Summary(now time.Time) dashboard.Summary {
	ms := d.s.model.Summary()
	out := dashboard.Summary{Loading: ms.Loading}
	for _, q := range ms.Queues {
		out.Queues = append(out.Queues, dashboard.QueueCount{Queue: q.Queue, Messages: q.Messages, Recipients: q.Recipients, Bytes: q.Bytes, Oldest: q.Oldest})
	}
	for _, c := range ms.Classes {
		out.Classes = append(out.Classes, dashboard.ClassCount{Class: c.Class, Description: event.ClassDescription(c.Class),
			Messages: c.Messages, Recipients: c.Recipients, Example: d.notes.exampleOf(c.Class)})
	}
	return out
}

func (d *dashSource) HeatMap(queue string, senders bool, now time.Time) dashboard.HeatMap {
	t := d.s.model.QShape(model.QShapeOptions{Queues: []string{queue}, Senders: senders}, now)
	h := dashboard.HeatMap{Queue: queue, Senders: senders, Bounds: t.Bounds}
	for i, r := range t.Rows {
		if i == 0 && r.Domain == "TOTAL" {
			h.Total = r.Counts
			continue
		}
		h.Rows = append(h.Rows, dashboard.HeatRow{Domain: r.Domain, Total: r.Total, Counts: r.Counts})
	}
	return h
}

// --- listings and actions ------------------------------------------------

func (d *dashSource) selector(sel string) (*manage.Selector, error) {
	s, err := manage.ParseSelector(sel)
	if err != nil {
		return nil, &dashboard.SelectorError{Err: err}
	}
	return s, nil
}

func rowOf(m *manage.Message) dashboard.MessageRow {
	r := dashboard.MessageRow{ID: m.ID, Queue: m.Queue, Arrival: m.Arrival, Size: m.Size, Sender: m.Sender}
	for _, x := range m.Recipients {
		if x.Done {
			continue
		}
		r.Recipients = append(r.Recipients, x.Address)
		if r.Reason == "" {
			r.Reason = x.Reason
		}
	}
	return r
}

// Messages selects with manage, as "sluice queue list" does, and pages by
// queue ID. It keeps only the page's rows while it scans (a heap of the
// limit+1 lowest IDs after the cursor), so a page of a huge selection
// costs the scan, not its size in memory.
func (d *dashSource) Messages(ctx context.Context, sel string, limit int, after string) (dashboard.MessagePage, error) {
	s, err := d.selector(sel)
	if err != nil {
		return dashboard.MessagePage{}, err
	}
	h := &rowHeap{}
	err = d.q.Each(ctx, s, manage.SelectOptions{Full: true}, func(m *manage.Message) error {
		if m.ID <= after {
			return nil
		}
		if h.Len() <= limit {
			heap.Push(h, rowOf(m))
		} else if m.ID < (*h)[0].ID {
			(*h)[0] = rowOf(m)
			heap.Fix(h, 0)
		}
		return nil
	})
	if err != nil {
		return dashboard.MessagePage{}, err
	}
	rows := []dashboard.MessageRow(*h)
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	var pg dashboard.MessagePage
	if len(rows) > limit {
		rows = rows[:limit]
		pg.Next = rows[limit-1].ID
	}
	pg.Messages = rows
	return pg, nil
}

// rowHeap is a max-heap of rows by ID.
type rowHeap []dashboard.MessageRow

func (h rowHeap) Len() int           { return len(h) }
func (h rowHeap) Less(i, j int) bool { return h[i].ID > h[j].ID }
func (h rowHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *rowHeap) Push(x any)        { *h = append(*h, x.(dashboard.MessageRow)) }
func (h *rowHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// sampleSize is how many messages a preview names.
const sampleSize = 10

// Act runs an action as "sluice queue ACTION" does: select, keep the
// messages in the queues the action applies to, then act on each through
// the queue manager. Each change is published as an event, so the model,
// the mail log (postsuper's lines) and the live views see it at once.
func (d *dashSource) Act(ctx context.Context, req dashboard.ActRequest) (dashboard.ActResult, error) {
	res := dashboard.ActResult{Action: req.Action, Selector: req.Selector, DryRun: req.DryRun}
	op := manage.Op(req.Action)
	if !slices.Contains(manage.Ops, op) {
		return res, fmt.Errorf("unknown action %q", req.Action)
	}
	s, err := d.selector(req.Selector)
	if err != nil {
		return res, err
	}
	msgs, err := d.q.Select(ctx, s, manage.SelectOptions{Envelope: true})
	if err != nil {
		return res, err
	}
	res.Matched = len(msgs)
	queues := manage.DefaultQueues(op)
	var ids []string
	byID := map[string]*manage.Message{}
	for _, m := range msgs {
		if !slices.Contains(queues, m.Queue) {
			res.Skipped++
			continue
		}
		ids = append(ids, m.ID)
		byID[m.ID] = m
		if len(res.Sample) < sampleSize {
			res.Sample = append(res.Sample, rowOf(m))
		}
	}
	if res.Skipped > 0 {
		res.Reasons = append(res.Reasons, fmt.Sprintf("%d selected message(s) not in a queue %s applies to (%s); left alone",
			res.Skipped, op, strings.Join(queues, ", ")))
	}
	if req.DryRun {
		res.Changed = len(ids)
		return res, nil
	}
	gone := 0
	err = d.q.ActAll(ctx, op, ids, nil, func(out manage.Outcome, err error) {
		switch {
		case errors.Is(err, manage.ErrNotFound):
			gone++
		case err != nil:
			res.Skipped++
			if len(res.Reasons) < 20 {
				res.Reasons = append(res.Reasons, out.ID+": "+err.Error())
			}
		case out.Changed:
			res.Changed++ // manage published the change (the model, the mail log, the live views)
		default:
			res.Skipped++
		}
	})
	if gone > 0 {
		res.Skipped += gone
		res.Reasons = append(res.Reasons, fmt.Sprintf("%d message(s) gone meanwhile (delivered, deleted or moved)", gone))
	}
	return res, err
}

// --- one message ----------------------------------------------------------

// Limits of what the message page reads of a queue file.
const (
	dashHeaderBytes = 64 << 10
	dashBodyBytes   = 16 << 10
)

func (d *dashSource) Message(ctx context.Context, id string) (*dashboard.MessageDetail, error) {
	if !spool.ValidID(id) {
		return nil, dashboard.ErrNotFound
	}
	// The model may still be loading and not know the message: the
	// files decide whether it is queued, the model adds its state.
	mm, ok := d.s.model.Message(id)
	queue, err := d.s.sp.Locate(id, manage.ScanQueues...)
	if err != nil {
		return nil, dashboard.ErrNotFound
	}
	m := &dashboard.MessageDetail{ID: id, Queue: queue, Size: mm.Size, Arrival: mm.Arrival, Sender: mm.Sender, Next: mm.Next}
	path := d.s.sp.Path(queue, id)
	c, err := spool.OpenContent(path)
	if err != nil {
		m.Error = err.Error()
	} else {
		defer c.Close()
		env := c.Envelope
		m.Sender, m.Arrival = env.Sender, env.Arrival
		if !ok {
			m.Size = c.Size
		}
		if queue != spool.Hold && queue != spool.Corrupt {
			d.s.mu.Lock() // Reload replaces the settings
			life := d.s.set.maxLifetime
			if env.Sender == "" {
				life = d.s.set.bounceLifetime
			}
			d.s.mu.Unlock()
			if life > 0 {
				m.Expiry = time.Unix(env.CreateTime, 0).UTC().Add(life)
			}
		}
		m.Headers, m.Body, m.BodyTruncated, err = readText(c)
		if err != nil {
			m.Error = err.Error()
		}
		m.Recipients = recipientsOf(env, mm)
	}
	if m.Recipients == nil {
		for _, r := range mm.Recipients {
			m.Recipients = append(m.Recipients, rcptDetail(r))
		}
	}
	hist, _ := d.s.sp.ReadHistory(id, m.Arrival.Unix())
	for i := range m.Recipients {
		r := &m.Recipients[i]
		for _, a := range hist {
			if strings.EqualFold(a.Recipient, r.Address) {
				r.Attempts = append(r.Attempts, dashboard.Attempt{Time: a.Time, Relay: a.Relay, Status: a.Status, DSN: a.DSN, Reply: a.Reason})
			}
		}
		if r.AttemptN < len(r.Attempts) {
			r.AttemptN = len(r.Attempts)
		}
	}
	return m, nil
}

func rcptDetail(r model.Recipient) dashboard.RecipientDetail {
	st := "pending"
	switch {
	case r.Done:
		st = "done"
	case r.Reason != "":
		st = "deferred"
	}
	return dashboard.RecipientDetail{Address: r.Address, State: st, DSN: r.DSN, Class: r.Class, Reason: r.Reason,
		LastAttempt: r.LastAttempt, AttemptN: r.Attempts}
}

// recipientsOf joins the queue file's recipients (with their original
// addresses) to the model's state of each.
func recipientsOf(env *spool.Envelope, mm model.Message) []dashboard.RecipientDetail {
	var out []dashboard.RecipientDetail
	for i, r := range env.Recipients {
		var rd dashboard.RecipientDetail
		if i < len(mm.Recipients) && mm.Recipients[i].Address == r.Address {
			rd = rcptDetail(mm.Recipients[i])
		} else {
			rd = dashboard.RecipientDetail{Address: r.Address, State: "pending"}
		}
		if r.Done {
			rd.State = "done"
		}
		if r.Orig != "" && !strings.EqualFold(r.Orig, r.Address) {
			rd.Original = r.Orig
		}
		out = append(out, rd)
	}
	return out
}

// readText reads the header (unfolded) and the start of the body.
func readText(c io.Reader) ([]dashboard.Header, string, bool, error) {
	br := bufio.NewReaderSize(io.LimitReader(c, dashHeaderBytes+dashBodyBytes+1), 4096)
	tr := textproto.NewReader(br)
	var hdrs []dashboard.Header
	var n int
	for {
		line, err := tr.ReadContinuedLine()
		if err != nil && err != io.EOF {
			return hdrs, "", false, fmt.Errorf("read header: %w", err)
		}
		if line == "" {
			break
		}
		n += len(line)
		if n > dashHeaderBytes {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			// Not a header line: the text has no header.
			hdrs = append(hdrs, dashboard.Header{Name: "", Value: line})
			continue
		}
		hdrs = append(hdrs, dashboard.Header{Name: name, Value: strings.TrimSpace(value)})
		if err == io.EOF {
			break
		}
	}
	body := make([]byte, dashBodyBytes+1)
	k, _ := io.ReadFull(br, body)
	body = body[:k]
	cut := k > dashBodyBytes
	if cut {
		body = body[:dashBodyBytes]
	}
	return hdrs, strings.ToValidUTF8(string(body), "\uFFFD"), cut, nil
}

// --- destinations ---------------------------------------------------------

func (d *dashSource) Destinations(ctx context.Context, now time.Time) ([]dashboard.Destination, error) {
	var total int64
	for _, q := range d.s.model.Summary().Queues {
		total += q.Messages
	}
	var out []dashboard.Destination
	if total <= exactDestinations {
		out = d.exactDestinations()
	} else {
		out = d.shapeDestinations(now)
	}
	for i := range out {
		if len(out[i].Reasons) == 0 {
			out[i].Reasons = d.notes.reasonsOf(out[i].Domain)
		}
		out[i].Suspension = d.suspensionOf(out[i].Domain, now)
	}
	return out, nil
}

// exactDestinations walks the model's deferred messages.
func (d *dashSource) exactDestinations() []dashboard.Destination {
	type acc struct {
		dashboard.Destination
		msgs    map[string]bool
		classes map[string]int64
		last    map[string]time.Time
	}
	by := map[string]*acc{}
	for _, m := range d.s.model.Messages() {
		if m.Queue != spool.Deferred {
			continue
		}
		for _, r := range m.Recipients {
			if r.Done {
				continue
			}
			dom := rcptDomain(r.Address)
			a := by[dom]
			if a == nil {
				a = &acc{Destination: dashboard.Destination{Domain: dom}, msgs: map[string]bool{}, classes: map[string]int64{}, last: map[string]time.Time{}}
				by[dom] = a
			}
			a.Recipients++
			a.msgs[m.ID] = true
			if a.Oldest.IsZero() || m.Arrival.Before(a.Oldest) {
				a.Oldest = m.Arrival
			}
			if r.Class != "" {
				a.classes[r.Class]++
			}
			if r.Reason != "" {
				if t, seen := a.last[r.Reason]; !seen || r.LastAttempt.After(t) {
					a.last[r.Reason] = r.LastAttempt
				}
			}
		}
	}
	out := make([]dashboard.Destination, 0, len(by))
	for _, a := range by {
		a.Messages = int64(len(a.msgs))
		for c, n := range a.classes {
			a.Classes = append(a.Classes, dashboard.ClassCount{Class: c, Recipients: n})
		}
		sort.Slice(a.Classes, func(i, j int) bool { return a.Classes[i].Recipients > a.Classes[j].Recipients })
		for r := range a.last {
			a.Reasons = append(a.Reasons, r)
		}
		sort.Slice(a.Reasons, func(i, j int) bool { return a.last[a.Reasons[i]].After(a.last[a.Reasons[j]]) })
		if len(a.Reasons) > 3 {
			a.Reasons = a.Reasons[:3]
		}
		out = append(out, a.Destination)
	}
	sortDestinations(out)
	return out
}

// shapeDestinations reads the qshape aggregates: counts per domain, and
// the oldest as the lower bound of its oldest age column.
func (d *dashSource) shapeDestinations(now time.Time) []dashboard.Destination {
	t := d.s.model.QShape(model.QShapeOptions{Queues: []string{spool.Deferred}}, now)
	var out []dashboard.Destination
	for i, r := range t.Rows {
		if i == 0 {
			continue
		}
		x := dashboard.Destination{Domain: r.Domain, Recipients: r.Total}
		for c := len(r.Counts) - 1; c >= 0; c-- {
			if r.Counts[c] > 0 {
				if c > 0 {
					x.Oldest = now.Add(-time.Duration(t.Bounds[c-1] * float64(time.Minute)))
				} else {
					x.Oldest = now
				}
				break
			}
		}
		out = append(out, x)
	}
	sortDestinations(out)
	return out
}

func sortDestinations(out []dashboard.Destination) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Recipients != out[j].Recipients {
			return out[i].Recipients > out[j].Recipients
		}
		return out[i].Domain < out[j].Domain
	})
}

// --- probe and suspensions ----------------------------------------------------

func (d *dashSource) Probe(ctx context.Context, target string) (*smtp.ProbeReport, error) {
	return d.s.deliv.c.Load().Probe(ctx, target, smtp.ProbeOptions{}), nil
}

// suspensionTarget is the selector of a dashboard target: a domain (the
// destinations page's form), or a selector of the queue language.
func suspensionTarget(target string) string {
	if strings.ContainsAny(target, "=<>~") {
		return target
	}
	return "domain=" + strings.ToLower(strings.TrimSuffix(target, "."))
}

// Suspend makes a suspension (package suspend) of target's mail.
func (d *dashSource) Suspend(_ context.Context, target string, dur time.Duration, reason, who string) error {
	if d.s.susp == nil {
		return dashboard.ErrUnavailable
	}
	_, err := d.s.susp.Add(suspensionTarget(target), reason, dur, who)
	return err
}

// Resume ends the suspensions whose selector is target's, or the one
// whose number target is.
func (d *dashSource) Resume(_ context.Context, target, who string) error {
	if d.s.susp == nil {
		return dashboard.ErrUnavailable
	}
	if id, err := strconv.ParseInt(target, 10, 64); err == nil {
		_, err := d.s.susp.Resume(id)
		return err
	}
	want := suspensionTarget(target)
	if sel, err := suspend.ParseSelector(want); err == nil {
		want = sel.String()
	}
	found := false
	for _, x := range d.s.susp.List() {
		if x.Selector == want {
			if _, err := d.s.susp.Resume(x.ID); err != nil {
				return err
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no suspension in force for %s", target)
	}
	return nil
}

// suspensionOf is the suspension in force for a domain's mail, if any.
func (d *dashSource) suspensionOf(domain string, now time.Time) *dashboard.Suspension {
	if d.s.susp == nil {
		return nil
	}
	want := suspensionTarget(domain)
	for _, x := range d.s.susp.List() {
		if now.Before(x.Until) && x.Selector == want {
			return &dashboard.Suspension{Until: x.Until, Reason: x.Reason, By: x.User}
		}
	}
	return nil
}

func (d *dashSource) Capabilities() dashboard.Capabilities {
	return dashboard.Capabilities{Probe: true, Suspend: d.s.susp != nil}
}
