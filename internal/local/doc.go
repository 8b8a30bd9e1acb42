// Package local is sluice's local delivery agent, the essentials of
// Postfix's local(8): mail for the domains in mydestination (and for
// addresses without a domain, which cleanup qualifies with myorigin)
// goes through aliases and .forward files into mailboxes, files and
// commands on this host.
//
// # What a recipient becomes
//
// All decisions use the local part folded to lower case. With
// recipient_delimiter set (Debian: "+"), "user+ext" is user "user" with
// extension "ext". For each address, in this order:
//
//  1. alias_maps: the local part, then the user part. The tables are
//     aliases(5) text, read directly (hash:/etc/aliases names the
//     source file /etc/aliases; no .db is built or read) and read again
//     when the file changes. The value lists addresses, /files,
//     |commands and :include:/files, each delivered in turn; addresses
//     are delivered again by this same procedure (nesting ends after
//     100 levels with "alias database loop"), and an address found in
//     its own alias's expansion skips the alias and goes to the user.
//     With an owner-NAME alias, NAME's expansion is sent with
//     owner-NAME@myorigin as its envelope sender.
//  2. The user must exist (Users, the passwd table); else the recipient
//     bounces: 5.1.1 unknown user: "name".
//  3. forward_path: the first of $home/.forward+ext, $home/.forward that
//     exists, owned by the user or root and not empty, is read as the
//     user and its items delivered, as the user. A user named in their
//     own .forward gets the mail in their mailbox.
//  4. The mailbox: $home/home_mailbox when set (ending in "/": Maildir),
//     else the mbox mail_spool_directory/user.
//
// Addresses outside mydestination found on the way are forwarded: all
// of a recipient's such addresses go out as one new queued message
// (Config.Forward; "forwarded as ID"; under privilege separation through
// maildrop/, see Privilege), with a Delivered-To: header.
// Mail that arrives for an address already in one of its Delivered-To:
// headers bounces (5.4.6 mail forwarding loop). Duplicate destinations
// within one recipient's expansion are delivered once.
//
// # Formats
//
// mbox: a "From sender  asctime" line (MAILER-DAEMON for <>), then
// Return-Path: <sender>, X-Original-To: original recipient,
// Delivered-To: the recipient as queued (lower case), the message with
// lines beginning "From " quoted as ">From ", and an empty line. The
// mailbox is locked by mailbox_delivery_lock (Debian: fcntl, dotlock):
// user.lock made exclusively (a lock older than stale_lock_time is
// removed) and a fcntl write lock on the file, each tried
// deliver_lock_attempts times deliver_lock_delay apart, after which the
// delivery is deferred (4.2.0). A new mailbox is mode 0600 and owned by
// the user; an existing one must be a regular file with one link, owned
// by the user (strict_mailbox_ownership), else the delivery defers. The
// message is synced; on any failure the file is truncated to its size
// before the message. Maildir: the same headers without the From_ line
// and quoting, written to tmp/, synced, and linked into new/ under a
// unique name. Files named in aliases and .forward get the mbox format
// (Maildir for a name ending in "/"); commands get the From_ line and
// the headers, no quoting, no empty line.
//
// # Commands and files
//
// allow_mail_to_commands and allow_mail_to_files (both "alias, forward":
// not from :include: files) say where they may come from. They run as
// the user whose .forward named them; for an alias, as the owner of the
// alias file, or default_privs (nobody) when root owns it; for an
// :include: file, as its owner, or default_privs. Never as root. A
// command runs as /bin/sh -c with the message on standard input, in the
// queue directory, with HOME, USER, LOGNAME, SHELL, PATH, SENDER,
// RECIPIENT, ORIGINAL_RECIPIENT, LOCAL, EXTENSION and DOMAIN set, for
// at most command_time_limit. Exit 0 is delivered; sysexits(3) codes
// map as Postfix's table (75 and 71 defer, 67 bounces as 5.1.1 ...);
// output starting with an RFC 3463 code decides over the exit status;
// other exit codes bounce ("Command died with status N"); a signal or
// the time limit defers.
//
// # Privilege
//
// The only privileged step is Agent.asCred (and its twin for commands,
// commandCred): it runs a function with the file-system identity (fsuid,
// fsgid, groups) of a given user on one locked OS thread, and restores
// it afterwards (a thread whose identity cannot be restored is never
// reused). Every open, create, mkdir and link of a delivery happens
// inside it, so files are checked and owned as the recipient's, as
// Postfix's local(8) does with set_eugid; commands get the user's
// credentials from the kernel when they are started. The mbox in a
// spool directory that is not world-writable (Debian's /var/mail,
// root:mail 2775) is locked and created as root and then given to the
// user, as Postfix does.
//
// This package needs root for that step, and the daemon gives it root
// as Postfix does for local(8):
//
//   - sluice serve started as root runs privilege-separated (package
//     privsep): the mail system runs as mail_owner and hands each local
//     delivery to the root master, which starts `sluice local-deliver`
//     (package cli) as root for it; that process builds an Agent from
//     the daemon's main.cf and runs Deliver on the queue file the mail
//     system passed, and asCred takes each recipient's identity as
//     above. Forwarded copies (Config.Forward) are written there to
//     maildrop/ as sendmail writes them, and pickup queues them, so
//     "forwarded as ID" names the maildrop file and pickup logs the new
//     queue ID with uid=0. The results, warnings included, go back to
//     the mail system, which logs them as it logs its own deliveries.
//   - With mail_owner = root (no privilege separation) the daemon is
//     root and delivers in its own process.
//   - When the daemon runs as an ordinary user (development) there is
//     no other identity to take: deliveries as that same user go ahead,
//     all others are deferred with "cannot deliver as user X (uid N):
//     sluice runs as uid M, not as root", so nothing is ever created
//     with the wrong owner.
//
// # Unknown users at RCPT
//
// KnownRecipient is local_recipient_maps (default: the passwd table and
// alias_maps) for smtpd.
//
// # Left out (Postfix local(8) features sluice does not have)
//
// mailbox_command(_maps), mailbox_transport(_maps),
// fallback_transport(_maps), luser_relay, biff, expand_owner_alias,
// reset_owner_alias, require_home_directory, command_execution_directory,
// local_command_shell, export_environment, command and forward expansion
// filters as parameters, enable_original_recipient = no,
// frozen_delivered_to = no, sun_mailtool_compatibility, owner-listname
// receiving the bounces of a list (they go to the message's sender;
// only the envelope sender of the list's forwarded copies changes),
// nis:, ldap:, mysql: and other alias table types, a regexp table in
// mydestination, and the CLIENT_* and SASL_* command variables.
package local
