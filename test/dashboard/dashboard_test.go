package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"sluice/internal/testutil/fakesmtp"
)

// step runs browser actions with a bound, failing the test on an error.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		loc, html := where(ctx, "main")
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, html)
	}
}

// value runs one browser action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, a)
	if err != nil {
		loc, _ := where(ctx, "")
		t.Fatalf("%s: %v (at %s)", what, err, loc)
	}
	return v
}

// where says where a tab is, and the HTML of sel there, for a failure's
// message; it gives up after a few seconds.
func where(ctx context.Context, sel string) (loc, html string) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	loc, _ = chromedp.Run(c, chromedp.Location())
	if sel != "" {
		html, _ = chromedp.Run(c, chromedp.OuterHTML(chromedp.CSS(sel), chromedp.AtLeast(0)))
	}
	return loc, html
}

// newTab opens a second tab in the browser of ctx (same cookies). Its
// first action runs without a timeout: the tab lives as long as the
// context of that first run.
func newTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("open a tab: %v", err)
	}
	return tab
}

// shot saves a screenshot of the whole page as name.png.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(outputDir(t), name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pollJS waits until the JavaScript expression is true.
func pollJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(c, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		loc, html := where(ctx, "body")
		t.Fatalf("%s: %s never held: %v (at %s)\n%s", what, expr, err, loc, html)
	}
}

// heatRows reads a heat map as the browser shows it: each row's cells'
// text, the domain first.
func heatRows(t *testing.T, ctx context.Context, queue string) map[string][]string {
	t.Helper()
	rows := value(t, ctx, "read the heat map", chromedp.Evaluate[[][]string](fmt.Sprintf(
		`[...document.querySelectorAll('table.heatmap[data-queue=%q] tbody tr')].map(tr => [...tr.children].map(c => c.textContent.trim()))`, queue)))
	out := map[string][]string{}
	for _, r := range rows {
		out[r[0]] = r[1:]
	}
	return out
}

// TestDashboard is the operator's round trip: real deferred mail, seen
// and acted on in a browser.
func TestDashboard(t *testing.T) {
	d := startDaemon(t)
	// greylist.test's server answers RCPT with 450 for these two.
	for _, rc := range []string{"a@greylist.test", "b@greylist.test"} {
		d.sink.RcptReply(rc, fakesmtp.Reply{Text: "450 4.7.1 <" + rc + ">: Recipient address rejected: greylisted, try again later"})
	}
	// Three messages to a host that refuses connections, 30 minutes
	// before the rest.
	for i := range 3 {
		d.send(fmt.Sprintf("alice%d@src.test", i), []string{fmt.Sprintf("user%d@down.test", i)}, "early", "early mail")
	}
	d.waitFor("3 deferred", func() bool { return len(d.queued("deferred")) == 3 && d.idle() })
	d.clk.Advance(30 * time.Minute)
	d.send("bob@src.test", []string{"a@greylist.test"}, "grey 1", "greylisted")
	d.send("bob@src.test", []string{"b@greylist.test"}, "grey 2", "greylisted")
	// An attacker's sender, subject and body: text, never markup.
	const evilSender = `"<script>"@x.example`
	// The queue keeps addresses unquoted, as Postfix's internal form.
	const evilStored = `<script>@x.example`
	d.send(evilSender, []string{"victim@down.test"}, `<img src=x onerror="window.__pwned=1">`, `<script>window.__pwned=1</script><b>bold?</b>`)
	d.send("carol@src.test", []string{"ok@dest.test"}, "fine", "delivered")
	d.waitFor("6 deferred, 1 delivered", func() bool {
		return len(d.queued("deferred")) == 6 && len(d.sink.Delivered()) == 1 && d.idle()
	})

	ctx := browser(t)

	// --- log in --------------------------------------------------------------
	step(t, ctx, "open the dashboard", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := value(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/login?next=%2F") {
		t.Fatalf("without a session the dashboard sends to %s", loc)
	}
	shot(t, ctx, "01-login")
	step(t, ctx, "a wrong token", chromedp.SendKeys(chromedp.ID("token"), "wrong"), chromedp.Submit(chromedp.ID("token")), chromedp.WaitVisible(chromedp.CSS("p.error")))
	step(t, ctx, "log in", chromedp.SendKeys(chromedp.ID("token"), d.token), chromedp.Submit(chromedp.ID("token")), chromedp.WaitVisible(chromedp.ID("ov")))
	cookies := value(t, ctx, "document.cookie", chromedp.Evaluate[string](`document.cookie`))
	if cookies != "" {
		t.Errorf("the session cookie is readable by scripts: %q", cookies)
	}

	// --- the overview ----------------------------------------------------------
	counts := value(t, ctx, "queue counts", chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('#ov [data-k^="q."]')].map(e => [e.dataset.k, e.textContent]))`))
	for k, want := range map[string]string{"q.deferred.m": "6", "q.deferred.r": "6", "q.deferred.o": "30m", "q.hold.m": "0", "q.active.m": "0"} {
		if counts[k] != want {
			t.Errorf("overview %s = %q, want %q (all: %v)", k, counts[k], want, counts)
		}
	}
	heat := heatRows(t, ctx, "deferred")
	// Columns: domain, total, then <5m, 5m-10m, 10m-20m, 20m-40m, ...
	wantHeat := map[string][]string{
		"TOTAL":         {"6", "3", "0", "0", "3"},
		"down.test":     {"4", "1", "0", "0", "3"},
		"greylist.test": {"2", "2", "0", "0", "0"},
	}
	for dom, want := range wantHeat {
		if got := heat[dom]; len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			t.Errorf("heat map row %s = %v, want it to start %v", dom, got, want)
		}
	}
	if len(heat) != 3 {
		t.Errorf("heat map rows %v, want TOTAL, down.test and greylist.test", heat)
	}
	classes := value(t, ctx, "classes", chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll('section.classes tbody tr')].map(tr => [...tr.children].map(c => c.textContent.trim()))`))
	gotClass := map[string][]string{}
	for _, c := range classes {
		gotClass[c[0]] = c[1:]
	}
	// The first refused connection marks down.test dead: the other
	// messages for it are deferred without a try, as Postfix does
	// ("delivery temporarily suspended").
	if c := gotClass["connection-refused"]; len(c) != 3 || c[0] == "0" || !strings.Contains(c[2], "Connection refused") {
		t.Errorf("class connection-refused: %v (all: %v)", c, classes)
	}
	var sumClasses int
	for _, c := range classes {
		var n int
		fmt.Sscan(c[1], &n)
		sumClasses += n
	}
	if sumClasses != 6 {
		t.Errorf("the classes count %d recipients, want 6: %v", sumClasses, classes)
	}
	if c := gotClass["greylisting"]; len(c) != 3 || c[0] != "2" || !strings.Contains(c[2], "greylisted") {
		t.Errorf("class greylisting: %v", c)
	}
	rates := value(t, ctx, "rates", chromedp.Evaluate[map[string]string](
		`Object.fromEntries([...document.querySelectorAll('[data-k^="r."]')].map(e => [e.dataset.k, e.textContent]))`))
	if rates["r.sent"] != "1" || rates["r.deferred"] != "6" || rates["r.bounced"] != "0" {
		t.Errorf("delivery rates %v, want sent 1, deferred 6, bounced 0", rates)
	}
	shot(t, ctx, "02-overview")
	step(t, ctx, "senders", chromedp.Click(chromedp.CSS(`a[href="/?senders=1"]`)), chromedp.WaitVisible(chromedp.CSS(`p.toggle a[href="/"]`)))
	sheat := heatRows(t, ctx, "deferred")
	if got := sheat["src.test"]; len(got) == 0 || got[0] != "5" {
		t.Errorf("senders heat map src.test = %v, want 5 messages (all: %v)", got, sheat)
	}
	if got := sheat["x.example"]; len(got) == 0 || got[0] != "1" {
		t.Errorf("senders heat map x.example = %v", got)
	}
	shot(t, ctx, "03-overview-senders")
	// Dark mode, for the README.
	step(t, ctx, "dark mode", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	}), chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("ov")))
	shot(t, ctx, "04-overview-dark")
	step(t, ctx, "light mode", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
		return err
	}))

	// --- from a reason class to its messages ----------------------------------------
	step(t, ctx, "click greylisting", chromedp.Click(chromedp.CSS(`section.classes a[href="/messages?select=class%3Dgreylisting"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.messages")))
	grey := value(t, ctx, "greylisted IDs", chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.messages tbody tr")].map(tr => tr.children[5].textContent)`))
	slices.Sort(grey)
	if !slices.Equal(grey, []string{"a@greylist.test", "b@greylist.test"}) {
		t.Errorf("the greylisting class lists recipients %q", grey)
	}
	step(t, ctx, "back to the overview", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("ov")))

	// --- from a heat-map cell to its messages ---------------------------------------
	cell := value(t, ctx, "find the cell", chromedp.Evaluate[string](
		`[...document.querySelectorAll('table.heatmap[data-queue="deferred"] tbody tr')].find(tr => tr.children[0].textContent.trim() === "down.test").children[5].querySelector("a").dataset.k`))
	step(t, ctx, "click down.test 20m-40m", chromedp.Click(chromedp.CSS(`a[data-k="`+cell+`"]`)), chromedp.WaitVisible(chromedp.CSS("table.messages")))
	sel := value(t, ctx, "selector box", chromedp.Value(chromedp.ID("select")))
	if sel != "queue=deferred domain=down.test age>=20m age<40m" {
		t.Errorf("the cell opened the selector %q", sel)
	}
	ids := value(t, ctx, "listed IDs", chromedp.Evaluate[[]string](`[...document.querySelectorAll("table.messages a.id")].map(a => a.textContent)`))
	if len(ids) != 3 {
		t.Errorf("the cell lists %v, want the 3 early messages", ids)
	}
	shot(t, ctx, "05-messages")

	// A selector error shows beside the box.
	step(t, ctx, "a bad selector", chromedp.Navigate(d.base+"/messages?select="+url.QueryEscape("hold")), chromedp.WaitVisible(chromedp.ID("select-err")))
	if msg := value(t, ctx, "selector error", chromedp.Text(chromedp.ID("select-err"))); !strings.Contains(msg, "queue=hold") {
		t.Errorf("selector error %q does not suggest queue=hold", msg)
	}

	// --- one message and its attempts ---------------------------------------------------
	step(t, ctx, "open a message", chromedp.Navigate(d.base+"/messages/"+ids[0]), chromedp.WaitVisible(chromedp.CSS("section.message")))
	attempts := value(t, ctx, "attempts", chromedp.Text(chromedp.CSS("td.attempts")))
	history := value(t, ctx, "history", chromedp.Text(chromedp.CSS("table.attempts tbody")))
	if attempts != "1" || !strings.Contains(history, "deferred") || !strings.Contains(history, "Connection refused") || !strings.Contains(history, "mx.down.test") {
		t.Errorf("message %s: attempts %q, history %q", ids[0], attempts, history)
	}
	if body := value(t, ctx, "body", chromedp.Text(chromedp.CSS("pre.body"))); !strings.Contains(body, "early mail") {
		t.Errorf("body preview %q", body)
	}
	shot(t, ctx, "06-message")

	// --- the script-injection address: shown as text, runs nothing ----------------------------
	step(t, ctx, "list x.example", chromedp.Navigate(d.base+"/messages?select="+url.QueryEscape("sender_domain=x.example")), chromedp.WaitVisible(chromedp.CSS("table.messages")))
	if s := value(t, ctx, "sender cell", chromedp.Text(chromedp.CSS("table.messages td.addr"))); s != evilStored {
		t.Errorf("the sender shows as %q, want %q", s, evilStored)
	}
	evilID := value(t, ctx, "evil id", chromedp.Text(chromedp.CSS("table.messages a.id")))
	step(t, ctx, "open the evil message", chromedp.Navigate(d.base+"/messages/"+evilID), chromedp.WaitVisible(chromedp.CSS("pre.body")))
	if body := value(t, ctx, "evil body", chromedp.Text(chromedp.CSS("pre.body"))); !strings.Contains(body, "<script>window.__pwned=1</script><b>bold?</b>") {
		t.Errorf("the body preview is not the text: %q", body)
	}
	if n := value(t, ctx, "scripts", chromedp.Evaluate[int](`document.querySelectorAll("main script, main img, main b").length`)); n != 0 {
		t.Errorf("the message page has %d elements made from the message's text", n)
	}
	if p := value(t, ctx, "pwned", chromedp.Evaluate[bool](`window.__pwned === 1`)); p {
		t.Error("the message's script ran")
	}

	// --- a hold by selector, previewed, confirmed, seen live ---------------------------
	// The overview stays open in a second tab, never reloaded.
	tab := newTab(t, ctx)
	step(t, tab, "overview tab", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("ov")))
	pollJS(t, tab, "the live stream connects", `!document.getElementById("live").hidden`)
	value(t, tab, "mark the page", chromedp.Evaluate[bool](`window.__mark = 42; true`))
	step(t, ctx, "list greylist.test", chromedp.Navigate(d.base+"/messages?select="+url.QueryEscape("domain=greylist.test")), chromedp.WaitVisible(chromedp.CSS("form.act")))
	step(t, ctx, "preview a hold", chromedp.SetValue(chromedp.CSS(`form.act select[name="action"]`), "hold"),
		chromedp.Click(chromedp.CSS("form.act button")), chromedp.WaitVisible(chromedp.CSS(".act-out .counts")))
	preview := value(t, ctx, "preview", chromedp.Text(chromedp.CSS(".act-out .counts")))
	if !strings.Contains(preview, "Would hold 2 of 2 matched") {
		t.Errorf("preview %q", preview)
	}
	if n := len(d.queued("hold")); n != 0 {
		t.Fatalf("the preview held %d messages", n)
	}
	shot(t, ctx, "07-act-preview")
	step(t, ctx, "confirm", chromedp.Click(chromedp.CSS(".act-out button.danger")), chromedp.WaitVisible(chromedp.CSS(".act-out .done")))
	if res := value(t, ctx, "result", chromedp.Text(chromedp.CSS(".act-out .counts"))); !strings.Contains(res, "hold: changed 2 of 2 matched") {
		t.Errorf("result %q", res)
	}
	if n := len(d.queued("hold")); n != 2 {
		t.Errorf("%d messages in hold/ after the hold, want 2", n)
	}
	pollJS(t, tab, "the overview follows without a reload",
		`document.querySelector('#ov td[data-k="q.hold.m"]').textContent === "2" && document.querySelector('#ov td[data-k="q.deferred.m"]').textContent === "4" && window.__mark === 42`)
	// The greylist.test row is gone from the heat map (the page redrew its
	// overview in place), and the header follows too.
	pollJS(t, tab, "the overview redraws its rows", `![...document.querySelectorAll('table.heatmap[data-queue="deferred"] th')].some(th => th.textContent.trim() === "greylist.test") && window.__mark === 42`)
	pollJS(t, tab, "the overview's header follows", `document.querySelector('header [data-k="q.hold.m"]').textContent === "2" && document.querySelector('header [data-k="q.deferred.m"]').textContent === "4"`)
	pollJS(t, ctx, "the header follows", `document.querySelector('header [data-k="q.hold.m"]').textContent === "2"`)
	shot(t, ctx, "08-act-done")
	shot(t, tab, "09-overview-after-hold")
	if log := d.logbuf.String(); strings.Count(log, ": placed on hold") != 2 {
		t.Errorf("the mail log lacks the postsuper lines:\n%s", log)
	}
	audit, _ := os.ReadFile(filepath.Join(d.dir, "spool", "private", "sluice-audit.log"))
	if a := string(audit); !strings.Contains(a, `"user":"dashboard"`) || !strings.Contains(a, `"interface":"dashboard"`) ||
		!strings.Contains(a, `"action":"hold","selector":"domain=greylist.test","matched":2,"changed":2,"skipped":0`) || !strings.Contains(a, `"detail":"from 127.0.0.1:`) {
		t.Errorf("the audit log lacks the hold:\n%s", a)
	}

	// --- destinations, the probe, suspensions -------------------------------------------------
	step(t, ctx, "destinations", chromedp.Navigate(d.base+"/destinations"), chromedp.WaitVisible(chromedp.CSS("table.dest")))
	dest := value(t, ctx, "destination rows", chromedp.Evaluate[[][]string](
		`[...document.querySelectorAll('table.dest tbody tr')].map(tr => [...tr.children].map(c => c.textContent.trim()))`))
	// greylist.test's mail is on hold now: only down.test is left,
	// with 4 recipients over the two classes of its deferrals.
	if len(dest) != 1 || dest[0][0] != "down.test" || dest[0][1] != "4" || dest[0][2] != "4" || dest[0][3] != "30m" ||
		!strings.Contains(dest[0][4], "connection-refused ") || !strings.Contains(dest[0][5], "Connection refused") {
		t.Errorf("destinations %q", dest)
	} else {
		var sum, n int
		var class string
		for f := strings.Fields(dest[0][4]); len(f) >= 2; f = f[2:] {
			class = f[0]
			fmt.Sscan(f[1], &n)
			sum += n
		}
		if sum != 4 || class == "" {
			t.Errorf("destination classes %q add up to %d recipients, want 4", dest[0][4], sum)
		}
	}
	checkSuspend(t, ctx, d)
	shot(t, ctx, "10-destinations")
	step(t, ctx, "probe down.test", chromedp.Click(chromedp.CSS(`tr[data-domain="down.test"] form[action="/destinations/probe"] button`)),
		chromedp.WaitVisible(chromedp.ID("probe-report")))
	if rep := value(t, ctx, "probe report", chromedp.Text(chromedp.ID("probe-report"))); !strings.Contains(rep, "No host accepted") || !strings.Contains(rep, "127.0.0.2") {
		t.Errorf("probe report %q", rep)
	}
	shot(t, ctx, "11-probe")

	// --- CSRF: another site's form, with the browser's session, changes nothing ----------------
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>evil</title><form method="post" action="%s/act">
<input name="action" value="delete"><input name="select" value="queue=deferred"><input name="confirm" value="yes"></form>
<script>document.forms[0].submit()</script>`, d.base)
	}))
	defer evil.Close()
	before := len(d.queued("deferred"))
	step(t, ctx, "visit the evil page", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.CSS("p.error")))
	if msg := value(t, ctx, "refusal", chromedp.Text(chromedp.CSS("p.error"))); !strings.Contains(msg, "Refused") {
		t.Errorf("the forged form got %q", msg)
	}
	if after := len(d.queued("deferred")); after != before || before != 4 {
		t.Errorf("deferred: %d before the forged form, %d after", before, after)
	}
	// A same-site page that knows the form but not the token fares no
	// better: a fetch without the CSRF token.
	step(t, ctx, "back", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("ov")))
	status := value(t, ctx, "fetch without a token", chromedp.Evaluate[int](`fetch("/act", {method: "POST", body: new URLSearchParams({action: "delete", select: "queue=deferred", confirm: "yes"})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden || len(d.queued("deferred")) != 4 {
		t.Errorf("a POST without the CSRF token: %d, deferred %d", status, len(d.queued("deferred")))
	}

	// --- without JavaScript: the pages read, and an action is a form ---------------------------------
	step(t, ctx, "no JavaScript", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	}))
	step(t, ctx, "overview without JavaScript", chromedp.Navigate(d.base+"/"), chromedp.WaitVisible(chromedp.ID("ov")))
	if n := value(t, ctx, "deferred without JavaScript", chromedp.Text(chromedp.CSS(`#ov td[data-k="q.deferred.m"]`))); n != "4" {
		t.Errorf("deferred without JavaScript: %q", n)
	}
	step(t, ctx, "list hold", chromedp.Navigate(d.base+"/messages?select="+url.QueryEscape("queue=hold")), chromedp.WaitVisible(chromedp.CSS("form.act")),
		chromedp.SetValue(chromedp.CSS(`form.act select[name="action"]`), "release"),
		chromedp.Click(chromedp.CSS("form.act button")), chromedp.WaitVisible(chromedp.CSS("section.actresult.preview form.confirm")))
	if p := value(t, ctx, "no-JS preview", chromedp.Text(chromedp.CSS("p.counts"))); !strings.Contains(p, "Would release 2 of 2 matched") || len(d.queued("hold")) != 2 {
		t.Errorf("no-JS preview %q, hold %d", p, len(d.queued("hold")))
	}
	shot(t, ctx, "12-act-preview-nojs")
	step(t, ctx, "no-JS confirm", chromedp.Click(chromedp.CSS("form.confirm button")), chromedp.WaitVisible(chromedp.CSS("section.actresult.done")))
	if p := value(t, ctx, "no-JS result", chromedp.Text(chromedp.CSS("section.actresult"))); !strings.Contains(p, "Done: release") || !strings.Contains(p, "Changed 2 of 2 matched") {
		t.Errorf("no-JS result %q", p)
	}
	if h, df := len(d.queued("hold")), len(d.queued("deferred")); h != 0 || df != 6 {
		t.Errorf("after the release: hold %d, deferred %d; want 0 and 6", h, df)
	}
	step(t, ctx, "JavaScript again", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: false})
		return err
	}))

	// --- logging out ends the session ----------------------------------------------------------------
	step(t, ctx, "log out", chromedp.Click(chromedp.CSS("form.logout button")), chromedp.WaitVisible(chromedp.ID("token")))
	step(t, ctx, "after logout", chromedp.Navigate(d.base+"/destinations"), chromedp.WaitVisible(chromedp.ID("token")))
}

// checkSuspend suspends down.test from its row on the destinations
// page: the row then shows the suspension and offers Resume, the daemon
// has it in force, and the audit log has the change under the token's
// name. Resume ends it again.
func checkSuspend(t *testing.T, ctx context.Context, d *daemon) {
	t.Helper()
	row := `tr[data-domain="down.test"] `
	step(t, ctx, "suspend down.test",
		chromedp.SetValue(chromedp.CSS(row+`form[action="/destinations/suspend"] input[name="duration"]`), "2h"),
		chromedp.SetValue(chromedp.CSS(row+`form[action="/destinations/suspend"] input[name="reason"]`), "MX <b>maintenance</b>"),
		chromedp.Click(chromedp.CSS(row+`form[action="/destinations/suspend"] button`)),
		chromedp.WaitVisible(chromedp.CSS(row+`form[action="/destinations/resume"]`)))
	text := value(t, ctx, "the row", chromedp.Text(chromedp.CSS(row)))
	if !strings.Contains(text, "MX <b>maintenance</b>") {
		t.Errorf("the suspended row says %q", text)
	}
	st, err := os.ReadFile(filepath.Join(d.dir, "spool", "private", "sluice-suspensions.json"))
	if err != nil || !strings.Contains(string(st), `"selector": "domain=down.test"`) && !strings.Contains(string(st), `"selector":"domain=down.test"`) {
		t.Errorf("suspensions file: %s %v", st, err)
	}
	audit, _ := os.ReadFile(filepath.Join(d.dir, "spool", "private", "sluice-audit.log"))
	if !strings.Contains(string(audit), `"interface":"dashboard"`) || !strings.Contains(string(audit), `"action":"suspend"`) {
		t.Errorf("audit log:\n%s", audit)
	}
	shot(t, ctx, "10a-destinations-suspended")
	step(t, ctx, "resume down.test",
		chromedp.Click(chromedp.CSS(row+`form[action="/destinations/resume"] button`)),
		chromedp.WaitVisible(chromedp.CSS(row+`form[action="/destinations/suspend"]`)))
}
