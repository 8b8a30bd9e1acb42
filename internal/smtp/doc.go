// Package smtp is sluice's delivery client: it takes one message and a
// list of its recipients for one next hop, and returns one result per
// recipient, in the recipients' order. It knows nothing of queues; the
// queue manager turns results into done marks, defer logs and bounces.
//
// # Where mail goes
//
// The next hop is the recipient domain, or the relayhost when one is set.
// "[host]:port" (or "[1.2.3.4]") skips the MX lookup; "host:port" and
// "host" look up MX records for host. Without MX records the host's own
// addresses are used (RFC 5321 §5.1, implicit MX). MX hosts are tried by
// preference and each host's addresses in turn, at most five addresses and
// two established sessions per delivery, as Postfix's smtp_mx_address_limit
// and smtp_mx_session_limit.
//
// # Outcomes, as Postfix words them
//
//   - 2xx at the end of DATA: sent, the reason is the server's reply.
//   - 4xx, and every failure to reach or talk to a server: deferred. A
//     recipient that got a soft failure at one server is tried at the next
//     address; the last server's answer is the one reported.
//   - 5xx: bounced, at once, without trying other servers.
//
// Reasons read like Postfix's:
//
//	connect to mx.example[192.0.2.1]:25: Connection refused          (4.4.1)
//	host mx.example[192.0.2.1] said: 450 4.2.0 busy (in reply to RCPT TO command)
//	host mx.example[192.0.2.1] refused to talk to me: 554 go away     (4.x.x)
//	lost connection with mx.example[192.0.2.1] while sending MAIL FROM  (4.4.2)
//	conversation with mx.example[192.0.2.1] timed out while ...         (4.4.2)
//	Host or domain name not found. Name service error for name=x type=A: Host not found  (5.4.4)
//	Host or domain name not found. Name service error for name=x type=MX: Host not found, try again  (4.4.3)
//
// The DSN code is the reply's enhanced status code when it has one (with
// its class digit forced to the reply's), else 2.0.0, 4.0.0 or 5.0.0. A
// 5xx greeting counts as 4xx, as with Postfix's smtp_skip_5xx_greeting.
// MAIL FROM's reply applies to every recipient, each RCPT TO's reply to
// its recipient, the DATA and end-of-data replies to every recipient that
// RCPT TO accepted. When no recipient is accepted, DATA is never sent.
//
// # The conversation
//
// EHLO (HELO when EHLO is refused with anything but 421). With TLS level
// "may", STARTTLS when the server offers it, then EHLO again; a failed
// handshake is retried once over a new plaintext connection to the same
// address, and a refused STARTTLS continues in plaintext. With "encrypt",
// no STARTTLS offer, a refusal or a failed handshake defers (4.7.4, 4.7.5)
// and the next address is tried. Certificates are not verified at these
// levels, unless TLSConfig says otherwise.
//
// MAIL FROM carries SIZE, BODY=8BITMIME, SMTPUTF8, RET and ENVID only when
// the server advertises the extension. A message that needs SMTPUTF8 bounces
// (5.6.7) at a server that does not offer it; a message larger than the
// server's SIZE bounces (5.3.4). With PIPELINING, MAIL FROM and every RCPT
// TO go out together; DATA waits for their replies. The text is sent with
// CRLF line ends, dot-stuffed, and lines longer than 998 characters are
// folded with CRLF SPACE (smtp_line_length_limit).
//
// # Connection reuse
//
// After a delivery that left the conversation in a known state, the
// connection is kept for the same next hop for MaxIdle (and at most five
// minutes since it was opened). The next delivery to that next hop probes
// it with RSET (pipelined with MAIL FROM and RCPT TO when the server allows
// it); when the probe fails the connection is dropped and a new one is
// opened, without counting as a failure. Result.ConnUse reports how often
// the connection has been used. A delivery over a reused connection does
// not go on to other MX hosts: its soft failures are final. Unlike
// Postfix's, TLS connections are reused too: sluice runs in one process, so
// nothing has to move a TLS session between processes.
//
// Every wait is bounded by the context and by ConnectTimeout or
// CommandTimeout; no server behaviour makes the client panic.
package smtp
