package dashboard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"sluice/internal/smtp"
)

// The queues the overview shows, in the order Postfix's tools list them.
var heatQueues = []string{"deferred", "active"}

// --- login ---------------------------------------------------------------

type loginData struct {
	Next  string
	Error string
}

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.render(w, http.StatusOK, "login", d.newPage(nil, "Log in", "", loginData{Next: localPath(r.URL.Query().Get("next"))}))
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		d.fail(w, r, nil, http.StatusForbidden, "Refused: the login came from another site.")
		return
	}
	if err := r.ParseForm(); err != nil {
		d.fail(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	next := localPath(r.PostForm.Get("next"))
	if !d.sess.tokenOK(strings.TrimSpace(r.PostForm.Get("token"))) {
		d.render(w, http.StatusUnauthorized, "login", d.newPage(nil, "Log in", "", loginData{Next: next, Error: "That is not the API token."}))
		return
	}
	_, id := d.sess.start()
	http.SetCookie(w, cookie(id, d.opt.Secure, int(d.opt.SessionTTL/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request, s *session) {
	d.sess.end(r)
	http.SetCookie(w, cookie("", d.opt.Secure, -1))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath keeps a "next" target on this site: a path, never a URL
// or a scheme-relative "//host" that would send the browser elsewhere.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") || strings.ContainsAny(p, "\r\n") {
		return "/"
	}
	return p
}

// --- overview ------------------------------------------------------------

type overviewData struct {
	Summary Summary
	Classes []classView
	Maps    []heatView
	Rates   []rateView
	Senders bool
	Shape   string
}

type classView struct {
	ClassCount
	Name string
	URL  string
}

type heatView struct {
	Queue   string
	Senders bool
	Heads   []string
	Total   heatRowView
	Rows    []heatRowView
	More    int // rows not shown
	Empty   bool
}

type heatRowView struct {
	Domain string
	Key    string
	Total  int64
	URL    string
	Cells  []cellView
}

type cellView struct {
	N     int64
	Level int
	Key   string
	URL   string
	Title string
}

type rateView struct {
	Kind  string
	Total int64
	Max   int64
	Bars  []barView
}

type barView struct {
	X, Y, H int
	N       int64
	Key     string
	Title   string
}

func (d *Dashboard) overview(w http.ResponseWriter, r *http.Request, s *session) {
	senders := r.URL.Query().Get("senders") == "1"
	ov := d.buildOverview(senders, d.opt.Now())
	d.render(w, http.StatusOK, "overview", d.newPage(s, "Overview", "overview", ov))
}

// buildOverview reads the aggregates: O(queues + classes + domains ×
// buckets), whatever the number of messages.
func (d *Dashboard) buildOverview(senders bool, now time.Time) overviewData {
	ov := overviewData{Summary: d.src.Summary(now), Senders: senders}
	for _, c := range ov.Summary.Classes {
		cv := classView{ClassCount: c, Name: c.Class}
		if c.Class == "" {
			cv.Name = "not tried yet"
			cv.URL = messagesURL("queue=incoming queue=active queue=deferred attempts=0")
		} else {
			cv.URL = messagesURL("class=" + quoteValue(c.Class))
		}
		ov.Classes = append(ov.Classes, cv)
	}
	for _, q := range heatQueues {
		ov.Maps = append(ov.Maps, heatMapView(d.src.HeatMap(q, senders, now)))
	}
	ov.Rates = rateViews(d.opt.Rates.Snapshot(now))
	ov.Shape = shapeOf(ov)
	return ov
}

// shapeOf names what the overview's layout depends on (which rows and
// classes it has, in which order): the live updates change numbers in
// place while it stays the same, and redraw the page when it changes.
func shapeOf(ov overviewData) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%t|", ov.Senders)
	for _, q := range ov.Summary.Queues {
		b.WriteString(q.Queue + ",")
	}
	b.WriteString("|")
	for _, c := range ov.Classes {
		b.WriteString(c.Class + ",")
	}
	for _, m := range ov.Maps {
		fmt.Fprintf(&b, "|%s:%d:%d:", m.Queue, len(m.Heads), m.More)
		for _, r := range m.Rows {
			b.WriteString(r.Domain + ",")
		}
	}
	return shortHash(b.String())
}

// heatLevel maps a count to one of six shades, on a log scale relative
// to the map's largest cell, so that one busy domain does not wash the
// others out.
func heatLevel(n, max int64) int {
	if n <= 0 || max <= 0 {
		return 0
	}
	l := 1 + int(5*math.Log1p(float64(n))/math.Log1p(float64(max)))
	return min(l, 6)
}

// ageTerm writes an age bound in the selector language: whole minutes
// when it is one, seconds otherwise.
func ageTerm(op string, minutes float64) string {
	if minutes == math.Trunc(minutes) {
		return "age" + op + strconv.FormatFloat(minutes, 'f', -1, 64) + "m"
	}
	return "age" + op + strconv.FormatInt(int64(math.Round(minutes*60)), 10) + "s"
}

// cellSelector is the selector of one heat-map cell: the queue, the
// domain (of a recipient, or the sender) and the column's age range.
func cellSelector(queue string, senders bool, domain string, bounds []float64, col int) string {
	terms := []string{"queue=" + queue}
	if domain != "" {
		terms = append(terms, domainTerm(senders, domain))
	}
	if col >= 0 {
		if col > 0 {
			terms = append(terms, ageTerm(">=", bounds[col-1]))
		}
		if col < len(bounds) {
			terms = append(terms, ageTerm("<", bounds[col]))
		}
	}
	return strings.Join(terms, " ")
}

func domainTerm(senders bool, domain string) string {
	if senders {
		if domain == "MAILER-DAEMON" {
			return "sender=<>"
		}
		return "sender_domain=" + quoteValue(domain)
	}
	return "domain=" + quoteValue(domain)
}

// quoteValue quotes a selector value that holds white space, so that
// the selector splits it as one term.
func quoteValue(v string) string {
	if strings.ContainsAny(v, " \t\n\"") {
		return `"` + strings.ReplaceAll(v, `"`, "") + `"`
	}
	return v
}

func heatMapView(h HeatMap) heatView {
	v := heatView{Queue: h.Queue, Senders: h.Senders}
	cols := len(h.Bounds) + 1
	for i := range cols {
		switch {
		case i < len(h.Bounds):
			v.Heads = append(v.Heads, minutesLabel(h.Bounds[i]))
		case len(h.Bounds) > 0:
			v.Heads = append(v.Heads, minutesLabel(h.Bounds[len(h.Bounds)-1])+"+")
		default:
			v.Heads = append(v.Heads, "all")
		}
	}
	n := fit(len(h.Rows), maxHeatRows, maxHeatChars, func(i int) int { return len(h.Rows[i].Domain) })
	rows := h.Rows[:n]
	v.More = len(h.Rows) - n
	var max int64
	for _, r := range rows {
		for _, n := range r.Counts {
			max = maxInt(max, n)
		}
	}
	row := func(domain, key string, total int64, counts []int64) heatRowView {
		rv := heatRowView{Domain: domain, Key: "h." + h.Queue + "." + key, Total: total}
		sel := cellSelector(h.Queue, h.Senders, domain, h.Bounds, -1)
		rv.URL = messagesURL(sel)
		for c := range cols {
			var n int64
			if c < len(counts) {
				n = counts[c]
			}
			cv := cellView{N: n, Key: rv.Key + "." + strconv.Itoa(c)}
			if domain != "" {
				cv.Level = heatLevel(n, max)
			}
			csel := cellSelector(h.Queue, h.Senders, domain, h.Bounds, c)
			cv.URL = messagesURL(csel)
			cv.Title = csel
			rv.Cells = append(rv.Cells, cv)
		}
		return rv
	}
	v.Total = row("", "t", sum(h.Total), h.Total)
	v.Total.Domain = "TOTAL"
	for i, r := range rows {
		v.Rows = append(v.Rows, row(r.Domain, strconv.Itoa(i), r.Total, r.Counts))
	}
	v.Empty = len(h.Rows) == 0
	return v
}

// fit is how many of n rows a page shows: at most max, and no more than
// chars characters of their names (size(i)), since each name is repeated
// in several links; names are short in practice, but they are chosen by
// whoever sends mail.
func fit(n, max, chars int, size func(i int) int) int {
	used := 0
	for i := range min(n, max) {
		used += size(i)
		if used > chars && i > 0 {
			return i
		}
	}
	return min(n, max)
}

func sum(xs []int64) int64 {
	var t int64
	for _, x := range xs {
		t += x
	}
	return t
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// minutesLabel is a column heading: 5m, 2h40m, 1d…
func minutesLabel(m float64) string {
	return shortDuration(time.Duration(m * float64(time.Minute)))
}

const barW, barH = 4, 36

func rateViews(s RateSeries) []rateView {
	var out []rateView
	for k, kind := range s.Kinds {
		v := rateView{Kind: kind, Total: s.Totals[k]}
		for _, n := range s.Counts[k] {
			v.Max = maxInt(v.Max, n)
		}
		for i, n := range s.Counts[k] {
			h := 0
			if v.Max > 0 && n > 0 {
				h = max(1, int(math.Round(float64(n)*barH/float64(v.Max))))
			}
			ago := len(s.Counts[k]) - 1 - i
			v.Bars = append(v.Bars, barView{X: i * barW, Y: barH - h, H: h, N: n,
				Key: "r." + kind + "." + strconv.Itoa(i), Title: fmt.Sprintf("%d %s, %d min ago", n, kind, ago)})
		}
		out = append(out, v)
	}
	return out
}

// --- messages ------------------------------------------------------------

type messagesData struct {
	Select  string
	Error   string
	Rows    []rowView
	NextURL string
	Limit   int
	After   string
	Actions []string
}

type rowView struct {
	MessageRow
	URL   string
	Rcpts []string
	More  int
}

func rowViews(rows []MessageRow) []rowView {
	out := make([]rowView, 0, len(rows))
	for _, m := range rows {
		v := rowView{MessageRow: m, URL: "/messages/" + url.PathEscape(m.ID), Rcpts: m.Recipients}
		if len(v.Rcpts) > maxRowRcpts {
			v.More = len(v.Rcpts) - maxRowRcpts
			v.Rcpts = v.Rcpts[:maxRowRcpts]
		}
		out = append(out, v)
	}
	return out
}

func (d *Dashboard) messages(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	md := messagesData{Select: strings.TrimSpace(q.Get("select")), After: q.Get("after"), Limit: defaultPageSize, Actions: actions}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		md.Limit = min(n, maxPageSize)
	}
	status := http.StatusOK
	pg, err := d.src.Messages(r.Context(), md.Select, md.Limit, md.After)
	var se *SelectorError
	switch {
	case errors.As(err, &se):
		md.Error, status = se.Error(), http.StatusBadRequest
	case err != nil:
		md.Error, status = "The queue could not be read: "+err.Error(), http.StatusInternalServerError
	default:
		md.Rows = rowViews(pg.Messages)
		if pg.Next != "" {
			v := url.Values{"select": {md.Select}, "after": {pg.Next}}
			if md.Limit != defaultPageSize {
				v.Set("limit", strconv.Itoa(md.Limit))
			}
			md.NextURL = "/messages?" + v.Encode()
		}
	}
	d.render(w, status, "messages", d.newPage(s, "Messages", "messages", md))
}

func messagesURL(sel string) string {
	return "/messages?" + url.Values{"select": {sel}}.Encode()
}

// --- message -------------------------------------------------------------

type messageData struct {
	*MessageDetail
	Rcpts     []RecipientDetail
	MoreRcpts int
	MoreHdrs  int
	Select    string
	Actions   []string
}

func (d *Dashboard) message(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	m, err := d.src.Message(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		d.fail(w, r, s, http.StatusNotFound, "Message "+id+" is not in the queue (delivered, deleted, or never there).")
		return
	}
	if err != nil {
		d.fail(w, r, s, http.StatusInternalServerError, "Message "+id+" could not be read: "+err.Error())
		return
	}
	md := messageData{MessageDetail: m, Rcpts: m.Recipients, Select: "id=" + m.ID, Actions: actions}
	if len(md.Rcpts) > maxDetailRcpts {
		md.MoreRcpts = len(md.Rcpts) - maxDetailRcpts
		md.Rcpts = md.Rcpts[:maxDetailRcpts]
	}
	if len(m.Headers) > maxHeaders {
		md.MoreHdrs = len(m.Headers) - maxHeaders
	}
	d.render(w, http.StatusOK, "message", d.newPage(s, "Message "+m.ID, "messages", md))
}

// --- act -----------------------------------------------------------------

type actData struct {
	Result  ActResult
	Sample  []rowView
	Error   string
	Confirm bool // the result of a confirmed action
	Back    string
}

// actJSON is the answer to the script's fetch.
type actJSON struct {
	Action   string     `json:"action"`
	Select   string     `json:"select"`
	DryRun   bool       `json:"dry_run"`
	Matched  int        `json:"matched"`
	Changed  int        `json:"changed"`
	Skipped  int        `json:"skipped"`
	Reasons  []string   `json:"reasons,omitempty"`
	Sample   []actEntry `json:"sample,omitempty"`
	Error    string     `json:"error,omitempty"`
	Selector bool       `json:"selector_error,omitempty"`
}

type actEntry struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Queue  string `json:"queue"`
	Sender string `json:"sender"`
}

// maxSample is how many matched messages a preview shows.
const maxSample = 10

func (d *Dashboard) act(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	req := ActRequest{Action: f.Get("action"), Selector: strings.TrimSpace(f.Get("select")), DryRun: f.Get("confirm") != "yes", Who: d.opt.Who}
	back := messagesURL(req.Selector)
	bad := func(status int, msg string, selector bool) {
		if wantsJSON(r) {
			writeJSON(w, status, actJSON{Action: req.Action, Select: req.Selector, DryRun: req.DryRun, Error: msg, Selector: selector})
			return
		}
		d.render(w, status, "act", d.newPage(s, "Act", "messages", actData{Result: ActResult{Action: req.Action, Selector: req.Selector, DryRun: req.DryRun}, Error: msg, Back: back}))
	}
	if !validAction(req.Action) {
		bad(http.StatusBadRequest, "Unknown action "+strconv.Quote(req.Action)+"; one of "+strings.Join(actions, ", ")+".", false)
		return
	}
	if req.Selector == "" {
		bad(http.StatusBadRequest, "Type a selector first: the dashboard does not act on the whole queue at once.", true)
		return
	}
	res, err := d.src.Act(r.Context(), req)
	if !req.DryRun {
		rec := AuditRecord{Time: d.opt.Now(), Who: d.opt.Who, Interface: "dashboard", Remote: r.RemoteAddr,
			Action: req.Action, Selector: req.Selector, Matched: res.Matched, Changed: res.Changed, Skipped: res.Skipped}
		if err != nil {
			rec.Err = err.Error()
		}
		d.audit(rec)
	}
	var se *SelectorError
	if errors.As(err, &se) {
		bad(http.StatusBadRequest, se.Error(), true)
		return
	}
	if err != nil {
		bad(http.StatusInternalServerError, req.Action+" failed: "+err.Error(), false)
		return
	}
	res.Action, res.Selector, res.DryRun = req.Action, req.Selector, req.DryRun
	if len(res.Sample) > maxSample {
		res.Sample = res.Sample[:maxSample]
	}
	if wantsJSON(r) {
		j := actJSON{Action: res.Action, Select: res.Selector, DryRun: res.DryRun, Matched: res.Matched,
			Changed: res.Changed, Skipped: res.Skipped, Reasons: res.Reasons}
		for _, m := range res.Sample {
			j.Sample = append(j.Sample, actEntry{ID: m.ID, URL: "/messages/" + url.PathEscape(m.ID), Queue: m.Queue, Sender: m.Sender})
		}
		writeJSON(w, http.StatusOK, j)
		return
	}
	d.render(w, http.StatusOK, "act", d.newPage(s, "Act", "messages", actData{Result: res, Sample: rowViews(res.Sample), Confirm: !req.DryRun, Back: back}))
}

func validAction(a string) bool {
	for _, x := range actions {
		if x == a {
			return true
		}
	}
	return false
}

func (d *Dashboard) audit(rec AuditRecord) {
	if d.opt.Audit != nil {
		d.opt.Audit(rec)
	}
}

// --- destinations ----------------------------------------------------------

type destData struct {
	Rows      []destView
	More      int
	Caps      Capabilities
	Error     string
	Probe     *probeView
	Durations []string
}

type destView struct {
	Destination
	URL     string
	Classes []classView
	Reasons []string
}

type probeView struct {
	Target string
	Report *smtp.ProbeReport
	Error  string
}

// The durations offered for a suspension; any Go duration or Nd works.
var durations = []string{"15m", "1h", "2h", "6h", "1d"}

func (d *Dashboard) destinations(w http.ResponseWriter, r *http.Request, s *session) {
	d.renderDestinations(w, r, s, http.StatusOK, "", nil)
}

func (d *Dashboard) renderDestinations(w http.ResponseWriter, r *http.Request, s *session, status int, notice string, probe *probeView) {
	dd := destData{Caps: d.src.Capabilities(), Probe: probe, Durations: durations}
	list, err := d.src.Destinations(r.Context(), d.opt.Now())
	if err != nil {
		dd.Error = "The destinations could not be read: " + err.Error()
	}
	n := fit(len(list), maxDestinations, maxDestChars, func(i int) int { return len(list[i].Domain) })
	dd.More = len(list) - n
	list = list[:n]
	for _, x := range list {
		v := destView{Destination: x, URL: messagesURL("queue=deferred " + domainTerm(false, x.Domain)), Reasons: x.Reasons}
		if len(v.Reasons) > 3 {
			v.Reasons = v.Reasons[:3]
		}
		for _, c := range x.Classes {
			v.Classes = append(v.Classes, classView{ClassCount: c, Name: c.Class,
				URL: messagesURL("queue=deferred " + domainTerm(false, x.Domain) + " class=" + quoteValue(c.Class))})
		}
		dd.Rows = append(dd.Rows, v)
	}
	p := d.newPage(s, "Destinations", "destinations", dd)
	p.Notice = notice
	d.render(w, status, "destinations", p)
}

// probeTimeout bounds one probe from the dashboard.
const probeTimeout = 2 * time.Minute

func (d *Dashboard) probe(w http.ResponseWriter, r *http.Request, s *session) {
	target := strings.TrimSpace(r.PostForm.Get("target"))
	if !d.src.Capabilities().Probe {
		d.renderDestinations(w, r, s, http.StatusNotImplemented, "The destination probe is not available in this daemon.", nil)
		return
	}
	if target == "" {
		d.renderDestinations(w, r, s, http.StatusBadRequest, "Give a domain, host:port or [address]:port to probe.", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
	defer cancel()
	rep, err := d.src.Probe(ctx, target)
	pv := &probeView{Target: target}
	if err != nil {
		pv.Error = err.Error()
	} else {
		pv.Report = rep
	}
	d.renderDestinations(w, r, s, http.StatusOK, "", pv)
}

// parseDuration reads a suspension's length: a Go duration (90m, 2h)
// or whole days (1d).
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			return time.Duration(v) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a duration (like 30m, 2h or 1d)", s)
	}
	return v, nil
}

func (d *Dashboard) suspend(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	target := strings.TrimSpace(f.Get("target"))
	dur, err := parseDuration(f.Get("duration"))
	switch {
	case !d.src.Capabilities().Suspend:
		err = ErrUnavailable
	case target == "":
		err = errors.New("give a destination to suspend")
	case err == nil:
		err = d.src.Suspend(r.Context(), target, dur, strings.TrimSpace(f.Get("reason")), d.opt.Who)
		d.auditChange("suspend", target, err, r)
	}
	d.changeDone(w, r, s, err, "Suspended delivery to "+target+" for "+shortDuration(dur)+".")
}

func (d *Dashboard) resume(w http.ResponseWriter, r *http.Request, s *session) {
	target := strings.TrimSpace(r.PostForm.Get("target"))
	var err error
	switch {
	case !d.src.Capabilities().Suspend:
		err = ErrUnavailable
	case target == "":
		err = errors.New("give a destination to resume")
	default:
		err = d.src.Resume(r.Context(), target, d.opt.Who)
		d.auditChange("resume", target, err, r)
	}
	d.changeDone(w, r, s, err, "Resumed delivery to "+target+".")
}

func (d *Dashboard) auditChange(action, target string, err error, r *http.Request) {
	rec := AuditRecord{Time: d.opt.Now(), Who: d.opt.Who, Interface: "dashboard", Remote: r.RemoteAddr, Action: action, Selector: target}
	if err != nil {
		rec.Err = err.Error()
	}
	d.audit(rec)
}

func (d *Dashboard) changeDone(w http.ResponseWriter, r *http.Request, s *session, err error, ok string) {
	switch {
	case errors.Is(err, ErrUnavailable):
		d.renderDestinations(w, r, s, http.StatusNotImplemented, "Suspensions are not available in this daemon.", nil)
	case err != nil:
		d.renderDestinations(w, r, s, http.StatusBadRequest, "Failed: "+err.Error(), nil)
	default:
		d.renderDestinations(w, r, s, http.StatusOK, ok, nil)
	}
}
