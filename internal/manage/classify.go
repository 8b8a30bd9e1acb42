package manage

import (
	"regexp"
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
	{"mailbox-full", []string{"mailbox full", "over quota", "quota exceeded", "insufficient storage", "mailbox is full"}},
	{"mailbox-unavailable", []string{"mailbox unavailable", "user unknown", "no such user", "mailbox busy"}},
	{"greylisting", []string{"greylist", "graylist", "try again later", "please retry", "temporarily deferred", "retry later"}},
	{"rate-limited", []string{"rate limit", "ratelimit", "too many", "sending rate", "throttl", "slow down"}},
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
	// No words matched: go by the enhanced status code (RFC 3463), from
	// the log's status or from the reply text.
	code := status
	if m := enhancedCode.FindString(r); m != "" {
		code = m
	}
	switch {
	case strings.HasPrefix(code, "4.2.2"), strings.HasPrefix(code, "5.2.2"):
		return "mailbox-full"
	case strings.HasPrefix(code, "4.2."), strings.HasPrefix(code, "5.1."), strings.HasPrefix(code, "5.2."):
		return "mailbox-unavailable"
	case strings.HasPrefix(code, "4.7.28"):
		return "rate-limited"
	case strings.HasPrefix(code, "4.4.1"), strings.HasPrefix(code, "4.4.2"):
		return "timeout"
	case strings.HasPrefix(code, "4.4.3"), strings.HasPrefix(code, "5.4.4"):
		return "dns-failure"
	}
	return "other"
}

var enhancedCode = regexp.MustCompile(`\b[245]\.[0-9]{1,3}\.[0-9]{1,3}\b`)
