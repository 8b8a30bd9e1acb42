package rewrite

import "strconv"

// Verdict is the relay decision for one recipient (see "The relay
// decision" in the package comment).
type Verdict struct {
	// OK says the recipient is accepted; Code, DSN and Text are empty
	// then.
	OK   bool
	Code int    // 501 or 554
	DSN  string // enhanced status code: 5.1.3 or 5.7.1
	// Text is the reply text after the codes:
	// "Bad recipient address syntax" or "<addr>: Relay access denied".
	Text   string
	Result Result // what the address resolved to
}

// Reply is the whole SMTP reply line without CRLF, "554 5.7.1 <addr>:
// Relay access denied"; "" when the recipient is accepted.
func (v Verdict) Reply() string {
	if v.OK {
		return ""
	}
	return strconv.Itoa(v.Code) + " " + v.DSN + " " + v.Text
}

// Reply texts, as Postfix's smtpd words them.
const (
	TextBadSyntax   = "Bad recipient address syntax"
	TextRelayDenied = "Relay access denied"
	CodeBadSyntax   = 501
	DSNBadSyntax    = "5.1.3"
	CodeRelayDenied = 554 // relay_domains_reject_code
	DSNRelayDenied  = "5.7.1"
)

// Check decides whether a client may send mail to rcpt:
// permit_mynetworks, then reject_unauth_destination. rcpt is the
// recipient in internal form (ParsePath's result); the refusal quotes it
// as it is. trusted says the client is in mynetworks (or otherwise
// allowed to relay).
//
// A syntax refusal (501) is not logged by Postfix as a "reject:" line; a
// relay refusal (554) is: "NOQUEUE: reject: RCPT from CLIENT: REPLY;
// from=<…> to=<rcpt> proto=… helo=<…>".
func (r *Resolver) Check(rcpt string, trusted bool) Verdict {
	res := r.Resolve(rcpt)
	v := Verdict{Result: res}
	switch {
	case res.Invalid:
		v.Code, v.DSN, v.Text = CodeBadSyntax, DSNBadSyntax, TextBadSyntax
	case trusted:
		v.OK = true
	case res.Routed && !r.cfg.AllowUntrustedRouting:
		// allow_untrusted_routing = no: sender-specified routing is
		// refused even towards local and relay domains.
		v.Code, v.DSN, v.Text = CodeRelayDenied, DSNRelayDenied, "<"+rcpt+">: "+TextRelayDenied
	case res.Class == Local || res.Class == Relay:
		v.OK = true
	default:
		v.Code, v.DSN, v.Text = CodeRelayDenied, DSNRelayDenied, "<"+rcpt+">: "+TextRelayDenied
	}
	return v
}
