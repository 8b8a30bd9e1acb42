package event

import (
	"sort"
	"strings"
)

// Kind is what a failed attempt ran into, as the delivery agent knows it
// when the attempt ends; together with the peer's reply it decides the
// reason class.
type Kind uint8

// The kinds of failure.
const (
	KindUnknown     Kind = iota
	KindReply            // the peer replied: Code, Enhanced and Text are set
	KindRefused          // the TCP connection was refused
	KindTimeout          // connecting or a conversation timed out
	KindLost             // the connection broke during the conversation
	KindDNS              // the MX or address lookup failed
	KindTLS              // STARTTLS was required and missing, or failed
	KindUnreachable      // no route to the peer's network or host
	KindSuspended        // the destination is throttled: no attempt made
	KindExpired          // the lifetime is over, or an operator expired it
	KindLocal            // a local delivery or a local configuration error
)

// Failure is the structured outcome of a failed attempt.
type Failure struct {
	Kind     Kind
	Code     int    // the SMTP reply code (KindReply)
	Enhanced string // the enhanced status code (RFC 3463), from the reply or the agent
	Text     string // the peer's reply text (KindReply), or the agent's wording
}

// Reason classes group deferral reasons that mean the same thing for an
// operator, however each peer words them. The names are the ones
// "sluice queue summary --by reason" has always shown.
const (
	ClassSuspended   = "delivery-suspended"
	ClassRefused     = "connection-refused"
	ClassTimeout     = "timeout"
	ClassDNS         = "dns-failure"
	ClassTLS         = "tls-failure"
	ClassMailboxFull = "mailbox-full"
	ClassMailbox     = "mailbox-unavailable"
	ClassGreylist    = "greylisting"
	ClassRate        = "rate-limited"
	ClassUnreachable = "network-unreachable"
	ClassSpam        = "spam-rejected"
	ClassContent     = "content-rejected"
	ClassExpired     = "expired"
	ClassOther       = "other"
)

var classDescriptions = map[string]string{
	ClassSuspended:   "destination throttled after a failure; no attempt was made",
	ClassRefused:     "the peer refused the TCP connection",
	ClassTimeout:     "connecting or talking to the peer timed out or the connection dropped",
	ClassDNS:         "the destination's MX or address lookup failed",
	ClassTLS:         "STARTTLS was required or failed",
	ClassGreylist:    "the peer asks to try again later (greylisting or policy)",
	ClassRate:        "the peer limits how much we send",
	ClassMailboxFull: "the recipient's mailbox is over quota",
	ClassMailbox:     "the recipient's mailbox is busy or unknown",
	ClassUnreachable: "no route to the peer",
	ClassSpam:        "the peer blocks our mail as spam or for reputation",
	ClassContent:     "the peer refuses the content or size",
	ClassExpired:     "expired by an operator or by lifetime",
	ClassOther:       "none of the above",
}

// ClassNames returns every class name, sorted.
func ClassNames() []string {
	out := make([]string, 0, len(classDescriptions))
	for c := range classDescriptions {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// ClassDescription explains a class ("" for an unknown name).
func ClassDescription(class string) string { return classDescriptions[class] }

// replyWords sort a peer's reply text into classes; the peer's words are
// the only place where greylisting, quotas or spam blocks are told apart,
// since peers use the same codes for all of them. The first rule that
// matches wins.
var replyWords = []struct {
	class string
	any   []string // lower-case substrings
}{
	{ClassTLS, []string{"starttls", "tls required", "must issue a starttls"}},
	{ClassMailboxFull, []string{"mailbox full", "over quota", "quota exceeded", "insufficient storage", "mailbox is full"}},
	{ClassMailbox, []string{"mailbox unavailable", "user unknown", "no such user", "mailbox busy"}},
	{ClassGreylist, []string{"greylist", "graylist", "try again later", "please retry", "temporarily deferred", "retry later"}},
	{ClassRate, []string{"rate limit", "ratelimit", "too many", "sending rate", "throttl", "slow down"}},
	{ClassSpam, []string{"spam", "blocked", "blacklist", "blocklist", "reputation", "spamhaus"}},
	{ClassContent, []string{"message size", "too large", "content", "virus"}},
}

// Classify decides the reason class of a failed attempt.
func Classify(f Failure) string {
	switch f.Kind {
	case KindRefused:
		return ClassRefused
	case KindTimeout, KindLost:
		return ClassTimeout
	case KindDNS:
		return ClassDNS
	case KindTLS:
		return ClassTLS
	case KindUnreachable:
		return ClassUnreachable
	case KindSuspended:
		return ClassSuspended
	case KindExpired:
		return ClassExpired
	}
	if f.Kind == KindReply || f.Kind == KindLocal {
		t := strings.ToLower(f.Text)
		for _, rule := range replyWords {
			for _, s := range rule.any {
				if strings.Contains(t, s) {
					return rule.class
				}
			}
		}
	}
	// No words matched: go by the enhanced status code (RFC 3463 §3),
	// then by the basic code (RFC 5321 §4.2.2).
	code := f.Enhanced
	if code == "" {
		code = enhancedIn(f.Text)
	}
	switch {
	case strings.HasPrefix(code, "4.2.2"), strings.HasPrefix(code, "5.2.2"):
		return ClassMailboxFull
	case strings.HasPrefix(code, "4.2."), strings.HasPrefix(code, "5.1."), strings.HasPrefix(code, "5.2."):
		return ClassMailbox
	case strings.HasPrefix(code, "4.7.28"):
		return ClassRate
	case strings.HasPrefix(code, "4.4.1"), strings.HasPrefix(code, "4.4.2"):
		return ClassTimeout
	case strings.HasPrefix(code, "4.4.3"), strings.HasPrefix(code, "5.4.4"):
		return ClassDNS
	case strings.HasPrefix(code, "4.7.0") && f.Code == 421:
		return ClassRate
	}
	switch f.Code {
	case 450, 550:
		return ClassMailbox
	case 452, 552:
		return ClassMailboxFull
	}
	return ClassOther
}

// enhancedIn finds an enhanced status code at the start of a reply text
// ("450 4.7.1 Greylisted" or "4.7.1 Greylisted").
func enhancedIn(text string) string {
	f := strings.Fields(text)
	for i := 0; i < len(f) && i < 2; i++ {
		if isEnhanced(f[i]) {
			return f[i]
		}
	}
	return ""
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || (parts[0][0] != '2' && parts[0][0] != '4' && parts[0][0] != '5') {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// ReplyFailure is the Failure of an SMTP reply text as sluice keeps it
// ("450 4.7.1 Greylisted, please try again later"): its code, its
// enhanced code (when it has one) and the text.
func ReplyFailure(text string) Failure {
	f := Failure{Kind: KindReply, Text: text}
	if len(text) >= 3 {
		n := 0
		for i := 0; i < 3; i++ {
			c := text[i]
			if c < '0' || c > '9' {
				n = -1
				break
			}
			n = n*10 + int(c-'0')
		}
		if n > 0 {
			f.Code = n
		}
	}
	f.Enhanced = enhancedIn(text)
	return f
}

// LogFailure rebuilds the Failure of an attempt from what a defer or
// bounce log entry (reference §3) keeps of it: the diagnostic (the
// peer's reply, diag_type=smtp) when there is one, otherwise the DSN
// status and the reason in the fixed wordings sluice's and Postfix's
// delivery agents use for their own failures. The model uses it when it
// is built from the files; live, the agents' Failure is used.
func LogFailure(status, diagType, diagText, reason string) Failure {
	if diagText != "" && strings.EqualFold(diagType, "smtp") {
		f := ReplyFailure(diagText)
		if f.Enhanced == "" {
			f.Enhanced = status
		}
		return f
	}
	f := Failure{Enhanced: status, Text: reason}
	r := strings.ToLower(reason)
	switch {
	case strings.HasPrefix(r, "delivery temporarily suspended"):
		f.Kind = KindSuspended
	case strings.Contains(r, "administratively expired"), strings.HasPrefix(r, "message expired"):
		f.Kind = KindExpired
	case strings.HasPrefix(r, "connect to "):
		// "connect to HOST[ADDR]:PORT: <the C library's words>"
		switch {
		case strings.HasSuffix(r, ": connection refused"):
			f.Kind = KindRefused
		case strings.HasSuffix(r, ": connection timed out"):
			f.Kind = KindTimeout
		case strings.HasSuffix(r, ": no route to host"), strings.HasSuffix(r, ": network is unreachable"), strings.HasSuffix(r, ": host is unreachable"):
			f.Kind = KindUnreachable
		default:
			f.Kind = KindLost
		}
	case strings.HasPrefix(r, "conversation with "), strings.HasPrefix(r, "lost connection with "):
		f.Kind = KindTimeout
	case strings.HasPrefix(r, "host or domain name not found"), strings.Contains(r, "name service error"):
		f.Kind = KindDNS
	case strings.Contains(r, "tls is required"), strings.HasPrefix(r, "cannot start tls"):
		f.Kind = KindTLS
	case strings.HasPrefix(r, "host ") && strings.Contains(r, " said: "):
		// A reply recorded without its diagnostic field.
		i := strings.Index(reason, " said: ")
		text := reason[i+len(" said: "):]
		if j := strings.LastIndex(text, " (in reply to "); j >= 0 {
			text = text[:j]
		}
		g := ReplyFailure(text)
		if g.Enhanced == "" {
			g.Enhanced = status
		}
		return g
	case strings.HasPrefix(r, "host ") && strings.Contains(r, " refused to talk to me: "):
		i := strings.Index(reason, " refused to talk to me: ")
		g := ReplyFailure(reason[i+len(" refused to talk to me: "):])
		if g.Enhanced == "" {
			g.Enhanced = status
		}
		return g
	default:
		f.Kind = KindLocal
	}
	return f
}
