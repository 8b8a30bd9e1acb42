package cleanup

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"sluice/internal/spool"
)

// isHeaderStart reports whether l begins a header: a name of printable
// ASCII other than ':' followed by ':' (RFC 5322 §2.2; white space before
// the colon is tolerated as Postfix's is_header does).
func isHeaderStart(l []byte) bool {
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		if c == ':' {
			break
		}
		if c <= ' ' || c >= 0x7f {
			// Allow "Name :" (space before the colon) but nothing else.
			j := i
			for j < len(l) && (l[j] == ' ' || l[j] == '\t') {
				j++
			}
			if i > 0 && j < len(l) && l[j] == ':' {
				return true
			}
			return false
		}
	}
	return i > 0 && i < len(l)
}

func indexColon(h []byte) int {
	if i := bytes.IndexByte(h, ':'); i >= 0 {
		return i
	}
	return len(h)
}

func indexByte(b []byte, c byte) int { return bytes.IndexByte(b, c) }

// unfold joins a folded header value into one line (RFC 5322 §2.2.3).
func unfold(v string) string {
	if !strings.Contains(v, "\n") {
		return v
	}
	return strings.ReplaceAll(v, "\n", "")
}

// ParseAddressList returns the addresses of a To:/Cc:/Bcc: header value,
// as sendmail -t takes them. Group names and display names are dropped.
// A value that is not valid RFC 5322 is split on commas, taking what is
// in angle brackets or else the bare word, so odd headers from scripts
// still reach their recipients.
func ParseAddressList(value string) []string {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil
	}
	if list, err := mail.ParseAddressList(value); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, part := range strings.Split(value, ",") {
		part = strings.TrimSpace(part)
		if i := strings.LastIndexByte(part, '<'); i >= 0 {
			if j := strings.IndexByte(part[i:], '>'); j > 0 {
				part = part[i+1 : i+j]
			}
		} else if f := strings.Fields(part); len(f) > 0 {
			part = f[0]
		}
		part = strings.TrimSpace(part)
		if part != "" && !strings.HasSuffix(part, ":;") {
			out = append(out, part)
		}
	}
	return out
}

// dateLayout is the Date: and Received: timestamp as Postfix writes it
// (RFC 5322 §3.3, with the zone name as a comment):
// "Sun, 29 Nov 2026 15:08:30 +0000 (UTC)", the day padded with a space.
const dateLayout = "Mon, _2 Jan 2006 15:04:05 -0700 (MST)"

// missingHeaders returns the Message-Id:, Date: and From: headers that the
// message lacks, in the order Postfix appends them.
func (c *Cleanup) missingHeaders(id string, m *Message, seen map[string]bool, now, arrival time.Time) []string {
	if m.KeepHeaders {
		return nil
	}
	var out []string
	if !seen["message-id"] {
		out = append(out, "Message-Id: "+c.messageID(id, now))
	}
	if !seen["date"] {
		out = append(out, "Date: "+arrival.Format(dateLayout))
	}
	if !seen["from"] {
		out = append(out, "From: "+c.fromHeader(m))
	}
	return out
}

// messageID makes the Message-Id Postfix's cleanup makes (reference §1.5):
// <YYYYMMDDhhmmss.ID@myhostname> with the UTC time of the queue file's
// creation for short IDs, <ID@myhostname> for long IDs, which never
// repeat.
func (c *Cleanup) messageID(id string, now time.Time) string {
	if spool.IsLongID(id) {
		return "<" + id + "@" + c.cfg.MyHostname + ">"
	}
	return "<" + now.UTC().Format("20060102150405") + "." + id + "@" + c.cfg.MyHostname + ">"
}

// fromHeader renders the From: value: "Full Name <sender>" when a full
// name is known, the bare sender otherwise, MAILER-DAEMON for the null
// sender (Postfix's hdr_from_format=standard).
func (c *Cleanup) fromHeader(m *Message) string {
	sender := c.qualify(m.Sender)
	if sender == "" {
		return "MAILER-DAEMON"
	}
	if m.FullName == "" {
		return sender
	}
	return quotePhrase(m.FullName) + " <" + sender + ">"
}

// quotePhrase returns name as an RFC 5322 display name, quoted when it
// holds characters that a bare phrase cannot.
func quotePhrase(name string) string {
	if !strings.ContainsAny(name, "()<>[]:;@\\,.\"") {
		return name
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range name {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// receivedHeader returns the lines of the Received: header cleanup puts
// first, in Postfix's layout:
//
//	local:  Received: by HOST (NAME, from userid UID)
//	        <TAB>id ID; DATE
//	SMTP:   Received: from HELO (CLIENT [ADDR])
//	        <TAB>by HOST (NAME) with PROTO id ID
//	        <TAB>for <RCPT>; DATE           (one recipient)
//	   or   <TAB>by HOST (NAME) with PROTO id ID;
//	        <TAB>DATE                       (several)
func (c *Cleanup) receivedHeader(id string, m *Message, rcpt string, t time.Time) []string {
	date := t.Format(dateLayout)
	ri := m.Received
	if ri.Protocol == "" {
		return []string{
			fmt.Sprintf("Received: by %s (%s, from userid %d)", c.cfg.MyHostname, c.cfg.MailName, ri.UID),
			fmt.Sprintf("\tid %s; %s", id, date),
		}
	}
	helo := ri.Helo
	if helo == "" {
		helo = orUnknown(ri.ClientName)
	}
	addr := ri.ClientAddr
	if strings.Contains(addr, ":") {
		addr = "IPv6:" + addr
	}
	first := fmt.Sprintf("Received: from %s (%s [%s])", helo, orUnknown(ri.ClientName), addr)
	by := fmt.Sprintf("\tby %s (%s) with %s id %s", c.cfg.MyHostname, c.cfg.MailName, ri.Protocol, id)
	if rcpt != "" {
		return []string{first, by, fmt.Sprintf("\tfor <%s>; %s", rcpt, date)}
	}
	return []string{first, by + ";", "\t" + date}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// originAttrs returns the named attributes cleanup writes before the
// sender: rewrite_context=local always; for SMTP mail also what Postfix's
// smtpd records about the client (log_* for logging, the rest for policy),
// in Postfix's order; then the caller's.
func (c *Cleanup) originAttrs(id string, m *Message) []spool.Attr {
	ri := m.Received
	if ri.Protocol == "" {
		return append([]spool.Attr{{Name: "rewrite_context", Value: "local"}}, m.Attrs...)
	}
	name, rev := orUnknown(ri.ClientName), orUnknown(ri.ReverseName)
	addrType := "2" // AF_INET
	if strings.Contains(ri.ClientAddr, ":") {
		addrType = "10" // AF_INET6 on Linux
	}
	attrs := []spool.Attr{
		{Name: "log_ident", Value: id},
		{Name: "rewrite_context", Value: "local"},
	}
	// Postfix's smtpd sends these right after rewrite_context.
	for _, a := range []spool.Attr{{Name: "sasl_method", Value: ri.SASLMethod}, {Name: "sasl_username", Value: ri.SASLUsername}, {Name: "sasl_sender", Value: ri.SASLSender}} {
		if a.Value != "" {
			attrs = append(attrs, a)
		}
	}
	attrs = append(attrs, []spool.Attr{
		{Name: "log_client_name", Value: name},
		{Name: "log_client_address", Value: ri.ClientAddr},
		{Name: "log_client_port", Value: ri.ClientPort},
		{Name: "log_message_origin", Value: name + "[" + ri.ClientAddr + "]"},
		{Name: "log_helo_name", Value: ri.Helo},
		{Name: "log_protocol_name", Value: baseProtocol(ri.Protocol)},
		{Name: "client_name", Value: name},
		{Name: "reverse_client_name", Value: rev},
		{Name: "client_address", Value: ri.ClientAddr},
		{Name: "client_port", Value: ri.ClientPort},
		{Name: "server_address", Value: ri.ServerAddr},
		{Name: "server_port", Value: ri.ServerPort},
		{Name: "helo_name", Value: ri.Helo},
		{Name: "protocol_name", Value: baseProtocol(ri.Protocol)},
		{Name: "client_address_type", Value: addrType},
	}...)
	return append(attrs, m.Attrs...)
}

// baseProtocol is what Postfix records as protocol_name: SMTP or ESMTP,
// without the TLS, AUTH and UTF8 variants the Received: header shows.
func baseProtocol(p string) string {
	if p == "SMTP" {
		return "SMTP"
	}
	return "ESMTP"
}
