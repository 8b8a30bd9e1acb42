// Package rewrite resolves an envelope address the way Postfix's
// trivial-rewrite does before smtpd decides whether a client may relay,
// and makes that decision. Every rule below was checked against Postfix
// 3.7.11 (resolve_clnt debug lines and RCPT replies; see
// relay_oracle_test.go, which compares the two on every run).
//
// # Input
//
// Addresses are in Postfix's internal form: what smtpd makes of a RCPT
// TO argument. The source route of "<@a,@b:user@dom>" is dropped and a
// quoted local part loses its quotes, so "<\"user@outside\"@host>" and
// "<user@outside@host>" are one and the same address,
// "user@outside@host". ParsePath turns a path as the client wrote it into
// this form; the relay reply quotes it.
//
// # Rewriting (the "local" context)
//
// An address without @ is completed first: with swap_bangpath a bang path
// "a!b!user" becomes "b!user@a" (at the first "!"), else with
// allow_percent_hack "user%a%b" becomes "user%a@b" (at the last "%"),
// else @myorigin is appended. One trailing dot is dropped from the
// domain ("user@host." is "user@host"; "host.." stays and is invalid).
//
// # Resolving
//
// The domain is whatever follows the last "@". While the domain is one of
// this host's own, it is stripped and the local part is looked at again:
//
//   - A domain is local when it is in mydestination (exactly, case
//     insensitive), or an address literal "[1.2.3.4]" or "[IPv6:…]" of an
//     address this host receives mail on (inet_interfaces,
//     proxy_interfaces). resolve_numeric_domain = yes makes "user@1.2.3.4"
//     the literal "user@[1.2.3.4]"; otherwise a numeric domain is
//     invalid.
//   - A local part that holds an "@" is an address again
//     ("user@outside@host" resolves as "user@outside"), when
//     resolve_dequoted_address = yes or when the local part needed no
//     quotes. Else a bang path is swapped (swap_bangpath: "a!user" is
//     "user@a"), else the last "%" becomes "@" (allow_percent_hack:
//     "user%outside" is "user@outside"). Otherwise the address is final
//     and local: the local part at the last local domain stripped
//     (@myhostname when that domain was empty); an empty local part is
//     MAILER-DAEMON.
//   - An empty domain ("user@outside@") is dropped when
//     resolve_null_domain = yes, or when the local part before it still
//     routes somewhere; "user@" alone is invalid.
//
// The first domain that is not this host's own ends the loop. Its class is
// relay when relay_domains lists it (or a parent domain of it), default
// otherwise. The domain must be a valid host name (letters, digits, "-",
// "_", labels not starting or ending with "-", not all numeric) or a valid
// address literal; otherwise the address is invalid and smtpd answers
// "501 5.1.3 Bad recipient address syntax", whoever the client is.
//
// The result is routed when its final local part still holds "@", "%" or
// "!": the sender asks for routing this host would not do itself.
//
// # The relay decision
//
// Check is smtpd_relay_restrictions = permit_mynetworks,
// reject_unauth_destination with allow_untrusted_routing = no:
//
//  1. an invalid address: 501 5.1.3 Bad recipient address syntax;
//  2. a trusted client (mynetworks): accepted;
//  3. a routed address: 554 5.7.1 <addr>: Relay access denied;
//  4. class local or relay: accepted;
//  5. anything else: 554 5.7.1 <addr>: Relay access denied.
//
// So "user%outside@myhostname", "outside!user@myhostname",
// "\"user@outside\"@myhostname" and "user@outside@myhostname" are all
// refused to untrusted clients, as Postfix refuses them.
//
// # Use from smtpd
//
// Once, at start: own, _ := OwnAddrs(listeners, c.List("proxy_interfaces"),
// net.InterfaceAddrs); r := New(FromConfig(c, own)). Per RCPT TO:
// addr, err := ParsePath(arg) (on error: 501 5.1.3 Bad recipient address
// syntax); v := r.Check(addr, clientInMynetworks); when !v.OK answer
// v.Code, v.DSN, v.Text (v.Reply() is the whole line) and, for 554 only,
// log "NOQUEUE: reject: RCPT from CLIENT: "+v.Reply()+"; from=<…> to=<addr>
// proto=… helo=<…>". Queue the recipient as the client gave it (addr),
// not v.Result.Address: Postfix resolves again when it delivers.
//
// Not done (sluice has no such tables): virtual and canonical maps,
// transport_maps, lookup tables in mydestination or relay_domains, and
// append_dot_mydomain (no from compatibility level 1 on).
package rewrite
