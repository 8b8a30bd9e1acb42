package manage

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"sluice/internal/spool"
)

// A Selector picks messages. It is a list of terms; a message is selected
// when every key's terms match. Terms with the same key combine by their
// operator: the = and ~ terms of a key are alternatives (any one may
// match), and its comparisons (!= > < >= <=) must all hold, so
//
//	rcpt=*@example.com rcpt=bob@example.org 'age>1d' 'age<2d'
//
// selects mail between one and two days old to example.com or to
// bob@example.org. The empty selector selects everything.
//
// Terms are KEY OP VALUE with OP one of = (equal, glob with * and ?),
// ~ (regular expression, case-insensitive), != (not equal), > < >= <=
// (numbers, sizes and ages). Domains compare without regard to case;
// the local part of an address compares exactly, as the man page's
// mailq | awk pipeline does (rcpt_ci and sender_ci ignore its case too).
// A bare queue ID is short for id=ID; any other bare word is an error.
//
//	id        queue ID                         id=54AB4BA048
//	queue     maildrop incoming active deferred hold corrupt
//	sender    envelope sender ("" or <> is the null sender)
//	rcpt      a pending recipient's address
//	domain    a pending recipient's domain (glob: *.example.com)
//	sender_domain  the sender's domain
//	reason    the deferral reason: = substring, ~ regexp
//	class     the normalized reason class (see Classes)
//	age       time since arrival, e.g. age>2h age<30m (units s m h d w)
//	size      message size, e.g. size>1M (k, M, G: powers of 1024)
//	attempts  delivery attempts so far
//	rcpts     how many recipients are still pending: rcpt=a@b rcpts=1
//	          picks the mail whose only remaining recipient is a@b
//
// One selector type drives every surface: the CLI, the control socket, the
// HTTP API and the dashboard.
type Selector struct {
	Terms []Term
	keys  []string // distinct keys in first-seen order
}

// Term is one parsed selector term.
type Term struct {
	Key, Op, Value string
	Text           string // the term as written, for messages

	re      *regexp.Regexp
	num     float64
	dur     time.Duration
	pattern string // lower-cased glob
}

// Keys the selector understands, with what they compare.
var keyKinds = map[string]string{
	"id": "text", "queue": "text", "sender": "addr", "rcpt": "addr",
	"domain": "addr", "sender_domain": "addr", "reason": "text", "class": "text",
	"age": "duration", "size": "size", "attempts": "number", "rcpts": "number",
	"rcpt_ci": "addr", "sender_ci": "addr",
}

// Aliases accepted for keys.
var keyAliases = map[string]string{
	"from": "sender", "to": "rcpt", "recipient": "rcpt", "queue_id": "id",
	"sender-domain": "sender_domain", "rcpt_domain": "domain", "rcpt-domain": "domain",
}

// ParseSelector parses selector terms (each argument one term, or several
// separated by white space). A bad term is an error that names it.
func ParseSelector(args ...string) (*Selector, error) {
	s := &Selector{}
	for _, a := range args {
		for _, f := range splitTerms(a) {
			t, err := parseTerm(f)
			if err != nil {
				return nil, err
			}
			s.add(t)
		}
	}
	return s, nil
}

// splitTerms splits on white space outside double quotes.
func splitTerms(s string) []string {
	var out []string
	var cur strings.Builder
	inQ, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQ = !inQ
			have = true
		case !inQ && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

func (s *Selector) add(t Term) {
	s.Terms = append(s.Terms, t)
	for _, k := range s.keys {
		if k == t.Key {
			return
		}
	}
	s.keys = append(s.keys, t.Key)
}

var ops = []string{">=", "<=", "!=", "=", "~", ">", "<"}

func parseTerm(text string) (Term, error) {
	i := strings.IndexAny(text, "=~<>!")
	if i < 0 {
		switch strings.ToLower(text) {
		case spool.Maildrop, spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt:
			return Term{}, fmt.Errorf("selector: bad term %q: not a queue ID; did you mean queue=%s?", text, strings.ToLower(text))
		}
		if _, ok := keyKinds[strings.ToLower(text)]; ok {
			return Term{}, fmt.Errorf("selector: bad term %q: a key needs an operator and a value, e.g. %s=VALUE", text, strings.ToLower(text))
		}
		// Only a word that decodes as a queue ID is one: a typo or a
		// queue name must not silently select nothing (or the wrong
		// thing) in an action.
		if _, err := spool.ParseID(text); err == nil {
			return Term{Key: "id", Op: "=", Value: text, Text: text, pattern: text}, nil
		}
		return Term{}, fmt.Errorf("selector: bad term %q: not a queue ID; want KEY=VALUE (keys: %s), e.g. queue=hold", text, keyList())
	}
	key := strings.ToLower(text[:i])
	if a, ok := keyAliases[key]; ok {
		key = a
	}
	var op string
	for _, o := range ops {
		if strings.HasPrefix(text[i:], o) {
			op = o
			break
		}
	}
	if op == "" {
		return Term{}, fmt.Errorf("selector: bad term %q: unknown operator", text)
	}
	kind, ok := keyKinds[key]
	if !ok {
		return Term{}, fmt.Errorf("selector: bad term %q: unknown key %q (keys: %s)", text, text[:i], keyList())
	}
	t := Term{Key: key, Op: op, Value: text[i+len(op):], Text: text}
	bad := func(why string) (Term, error) {
		return Term{}, fmt.Errorf("selector: bad term %q: %s", text, why)
	}
	switch kind {
	case "text", "addr":
		switch op {
		case "=", "!=":
			t.pattern = foldValue(key, t.Value)
			if (t.Key == "sender" || t.Key == "sender_ci") && (t.pattern == "<>" || t.pattern == "mailer-daemon") {
				t.pattern = ""
			}
			if _, err := path.Match(t.pattern, ""); err != nil {
				return bad("bad pattern")
			}
		case "~":
			re, err := regexp.Compile("(?i)" + t.Value)
			if err != nil {
				return bad(fmt.Sprintf("bad regular expression: %v", err))
			}
			t.re = re
		default:
			return bad(fmt.Sprintf("%s takes =, != or ~", key))
		}
		if key == "queue" && op != "~" && !strings.ContainsAny(t.pattern, "*?[") {
			switch t.pattern {
			case spool.Maildrop, spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt:
			default:
				return bad("no such queue (maildrop, incoming, active, deferred, hold, corrupt)")
			}
		}
		if key == "class" && op != "~" && !strings.ContainsAny(t.pattern, "*?[") && !isClass(t.pattern) {
			return bad(fmt.Sprintf("no such reason class (classes: %s)", strings.Join(ClassNames(), ", ")))
		}
		if key == "id" && op == "=" && !strings.ContainsAny(t.Value, "*?[") && !spool.ValidID(t.Value) {
			return bad("invalid queue ID")
		}
	case "duration":
		if op == "~" {
			return bad("age takes = != > < >= <=")
		}
		d, err := parseAge(t.Value)
		if err != nil {
			return bad(err.Error())
		}
		t.dur = d
	case "size", "number":
		if op == "~" {
			return bad(key + " takes = != > < >= <=")
		}
		var n float64
		var err error
		if kind == "size" {
			n, err = parseSize(t.Value)
		} else {
			var v int64
			v, err = strconv.ParseInt(t.Value, 10, 64)
			n = float64(v)
		}
		if err != nil || n < 0 {
			return bad("not a number")
		}
		t.num = n
	}
	return t, nil
}

func keyList() string {
	return "id queue sender rcpt domain sender_domain reason class age size attempts rcpts rcpt_ci sender_ci"
}

// foldValue returns v in the form a key compares: queue IDs as they are
// (long IDs mix cases), sender and rcpt with the domain lower-cased and
// the local part exact (as the man page's awk pipeline compares), every
// other text without regard to case.
func foldValue(key, v string) string {
	switch key {
	case "id":
		return v
	case "sender", "rcpt":
		if i := strings.LastIndexByte(v, '@'); i >= 0 {
			return v[:i+1] + strings.ToLower(v[i+1:])
		}
		if strings.EqualFold(v, "mailer-daemon") {
			return strings.ToLower(v)
		}
		return v
	}
	return strings.ToLower(v)
}

func parseAge(v string) (time.Duration, error) {
	if v == "" {
		return 0, fmt.Errorf("empty age")
	}
	unit := time.Second
	num := v
	switch v[len(v)-1] {
	case 's':
		num = v[:len(v)-1]
	case 'm':
		unit, num = time.Minute, v[:len(v)-1]
	case 'h':
		unit, num = time.Hour, v[:len(v)-1]
	case 'd':
		unit, num = 24*time.Hour, v[:len(v)-1]
	case 'w':
		unit, num = 7*24*time.Hour, v[:len(v)-1]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad age %q (want e.g. 90s, 30m, 2h, 5d)", v)
	}
	return time.Duration(f * float64(unit)), nil
}

func parseSize(v string) (float64, error) {
	if v == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	num := v
	switch v[len(v)-1] {
	case 'k', 'K':
		mult, num = 1024, v[:len(v)-1]
	case 'm', 'M':
		mult, num = 1024*1024, v[:len(v)-1]
	case 'g', 'G':
		mult, num = 1024*1024*1024, v[:len(v)-1]
	}
	f, err := strconv.ParseFloat(num, 64)
	return f * mult, err
}

// UsesKey reports whether a term of the selector compares key.
func (s *Selector) UsesKey(key string) bool {
	if s == nil {
		return false
	}
	for _, t := range s.Terms {
		if t.Key == key {
			return true
		}
	}
	return false
}

// Empty reports whether the selector selects everything.
func (s *Selector) Empty() bool { return s == nil || len(s.Terms) == 0 }

// String renders the selector as terms, in the form ParseSelector reads
// back: a term with white space in it is quoted.
func (s *Selector) String() string {
	if s == nil {
		return ""
	}
	var parts []string
	for _, t := range s.Terms {
		if strings.ContainsAny(t.Text, " \t\n") {
			parts = append(parts, `"`+t.Text+`"`)
			continue
		}
		parts = append(parts, t.Text)
	}
	return strings.Join(parts, " ")
}

// IDs returns the queue IDs named by plain id= terms when the selector
// consists of nothing else, so callers can look those files up directly
// instead of scanning.
func (s *Selector) IDs() ([]string, bool) {
	if s.Empty() {
		return nil, false
	}
	var ids []string
	for _, t := range s.Terms {
		if t.Key != "id" || t.Op != "=" || strings.ContainsAny(t.Value, "*?[") {
			return nil, false
		}
		ids = append(ids, t.Value)
	}
	return ids, true
}

// Queues returns the queues the selector can match, or nil for all.
func (s *Selector) Queues() []string {
	if s.Empty() {
		return nil
	}
	var qs []string
	for _, t := range s.Terms {
		if t.Key != "queue" {
			continue
		}
		if t.Op != "=" || strings.ContainsAny(t.pattern, "*?[") {
			return nil
		}
		qs = append(qs, t.pattern)
	}
	return qs
}

// Match reports whether m is selected at time now.
func (s *Selector) Match(m *Message, now time.Time) bool {
	if s.Empty() {
		return true
	}
	for _, k := range s.keys {
		alts, any := false, false
		for i := range s.Terms {
			t := &s.Terms[i]
			if t.Key != k {
				continue
			}
			if t.Op == "=" || t.Op == "~" {
				alts = true
				if !any && t.match(m, now) {
					any = true
				}
				continue
			}
			if !t.match(m, now) {
				return false // comparisons on one key all hold: a range
			}
		}
		if alts && !any {
			return false
		}
	}
	return true
}

func (t *Term) match(m *Message, now time.Time) bool {
	switch t.Key {
	case "id":
		return t.text(m.ID)
	case "queue":
		return t.text(m.Queue)
	case "sender", "sender_ci":
		return t.text(m.Sender)
	case "sender_domain":
		return t.text(domainOf(m.Sender))
	case "rcpt", "rcpt_ci", "domain", "reason", "class":
		// Negative terms select a message when no pending recipient
		// matches the positive form; positive ones when any does.
		neg := t.Op == "!="
		pos := *t
		if neg {
			pos.Op = "="
		}
		hit := false
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Done {
				continue
			}
			var v string
			switch t.Key {
			case "rcpt", "rcpt_ci":
				v = r.Address
			case "domain":
				v = domainOf(r.Address)
			case "reason":
				v = r.Reason
			case "class":
				v = r.ReasonClass()
			}
			if pos.text(v) {
				hit = true
				break
			}
		}
		return hit != neg
	case "age":
		return t.cmp(float64(now.Sub(m.Arrival)), float64(t.dur))
	case "size":
		return t.cmp(float64(m.Size), t.num)
	case "attempts":
		return t.cmp(float64(m.Attempts), t.num)
	case "rcpts":
		n := 0
		for _, r := range m.Recipients {
			if !r.Done {
				n++
			}
		}
		return t.cmp(float64(n), t.num)
	}
	return false
}

// text compares a string value.
func (t *Term) text(v string) bool {
	switch t.Op {
	case "~":
		return t.re.MatchString(v)
	case "=", "!=":
		var ok bool
		lv := foldValue(t.Key, v)
		if t.Key == "reason" {
			ok = strings.Contains(lv, t.pattern)
		} else if strings.ContainsAny(t.pattern, "*?[") {
			ok, _ = path.Match(t.pattern, lv)
		} else {
			ok = lv == t.pattern
		}
		return ok == (t.Op == "=")
	}
	return false
}

func (t *Term) cmp(a, b float64) bool {
	switch t.Op {
	case "=":
		return a == b
	case "!=":
		return a != b
	case ">":
		return a > b
	case "<":
		return a < b
	case ">=":
		return a >= b
	case "<=":
		return a <= b
	}
	return false
}

// domainOf returns the part after the last @, lower-cased.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
