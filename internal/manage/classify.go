package manage

import (
	"sort"
	"strings"
)

// Reason classes group deferral reasons that mean the same thing for an
// operator, however each peer words them. The first rule that matches
// wins, so the specific rules come before the general ones.
var classRules = []struct {
	class string
	any   []string // lower-case substrings
}{
	{"delivery-suspended", []string{"delivery temporarily suspended"}},
	{"connection-refused", []string{"connection refused"}},
	{"timeout", []string{"timed out", "timeout", "conversation with", "lost connection"}},
	{"dns-failure", []string{"name service error", "host not found", "host or domain name not found", "domain not found", "dns lookup", "dns error"}},
	{"tls-failure", []string{"tls", "starttls", "certificate", "handshake"}},
	{"greylisting", []string{"greylist", "graylist", "try again later", "please retry", "temporarily deferred", "retry later"}},
	{"rate-limited", []string{"rate limit", "ratelimit", "too many", "sending rate", "throttl", "4.7.28", "slow down"}},
	{"mailbox-full", []string{"mailbox full", "over quota", "quota exceeded", "insufficient storage", "mailbox is full", "4.2.2", "5.2.2"}},
	{"mailbox-unavailable", []string{"mailbox unavailable", "user unknown", "no such user", "mailbox busy", "4.2.0", "4.2.1"}},
	{"network-unreachable", []string{"network is unreachable", "no route to host", "host is unreachable"}},
	{"spam-rejected", []string{"spam", "blocked", "blacklist", "blocklist", "reputation", "spamhaus"}},
	{"content-rejected", []string{"message size", "too large", "content", "virus"}},
	{"expired", []string{"administratively expired", "expired"}},
}

// Classes returns every class with a one-line description.
var classDescriptions = map[string]string{
	"delivery-suspended":  "destination throttled after a failure; no attempt was made",
	"connection-refused":  "the peer refused the TCP connection",
	"timeout":             "connecting or talking to the peer timed out or the connection dropped",
	"dns-failure":         "the destination's MX or address lookup failed",
	"tls-failure":         "STARTTLS was required or failed",
	"greylisting":         "the peer asks to try again later (greylisting or policy)",
	"rate-limited":        "the peer limits how much we send",
	"mailbox-full":        "the recipient's mailbox is over quota",
	"mailbox-unavailable": "the recipient's mailbox is busy or unknown",
	"network-unreachable": "no route to the peer",
	"spam-rejected":       "the peer blocks our mail as spam or for reputation",
	"content-rejected":    "the peer refuses the content or size",
	"expired":             "expired by an operator or by lifetime",
	"other":               "none of the above",
}

// ClassNames returns the class names, sorted.
func ClassNames() []string {
	out := make([]string, 0, len(classDescriptions))
	for c := range classDescriptions {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// ClassDescription explains a class.
func ClassDescription(class string) string { return classDescriptions[class] }

func isClass(c string) bool { _, ok := classDescriptions[c]; return ok }

// ClassifyReason maps a deferral reason (and its DSN status, which may be
// empty) to a class.
func ClassifyReason(reason, status string) string {
	r := strings.ToLower(reason)
	// The reply text after "said:" is what the peer said; the host part
	// before it may contain words such as "mx" that mislead the rules.
	if i := strings.Index(r, " said: "); i >= 0 {
		r = r[i+len(" said: "):]
	}
	for _, rule := range classRules {
		for _, s := range rule.any {
			if strings.Contains(r, s) {
				return rule.class
			}
		}
	}
	switch {
	case strings.HasPrefix(status, "4.4."):
		return "timeout"
	case strings.HasPrefix(status, "4.2.2"):
		return "mailbox-full"
	}
	return "other"
}
