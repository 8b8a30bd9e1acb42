package config

import "strings"

// Param is one configuration parameter: its name, default and meaning.
// Postfix's name and default where Postfix has the parameter.
type Param struct {
	Name    string
	Default string
	Unit    byte // default unit of a bare number for time parameters
	Doc     string
}

// Params is every parameter sluice knows, documented beside its default.
// `sluice postconf -d` prints them.
var Params = []Param{
	{Name: "queue_directory", Default: "/var/spool/sluice", Doc: "the spool: a Postfix-format queue directory (Postfix's default, /var/spool/postfix, applies when the configuration directory holds a master.cf)"},
	{Name: "hash_queue_names", Default: "deferred, defer", Doc: "queues whose files are spread over hash subdirectories"},
	{Name: "hash_queue_depth", Default: "1", Doc: "levels of hash subdirectories"},
	{Name: "enable_long_queue_ids", Default: "no", Doc: "name new queue files with long, non-repeating IDs; also picks mailq's column layout"},
	{Name: "duplicate_filter_limit", Default: "1000", Doc: "recipients remembered per message when listing, to suppress duplicates"},
	{Name: "mail_owner", Default: "postfix", Doc: "the owner of the queue and the user sluice serve runs as after it starts as root (created as a system user when missing)"},
	{Name: "setgid_group", Default: "postdrop", Doc: "the group of maildrop/ and public/ and of the setgid helper sluice-postdrop, through which local users submit mail and reach the daemon (created when missing)"},
	{Name: "alternate_config_directories", Default: "", Doc: "configuration directories besides the default that unprivileged users may name (-c, -C, MAIL_CONFIG) to the setgid helper; read from the default configuration only"},
	{Name: "myhostname", Default: "localhost", Doc: "this host's fully qualified name"},
	{Name: "mydomain", Default: "localdomain", Doc: "this host's domain"},
	{Name: "myorigin", Default: "$myhostname", Doc: "domain appended to unqualified sender addresses"},
	{Name: "mynetworks", Default: "127.0.0.0/8 [::1]/128", Doc: "clients allowed to relay"},
	{Name: "relayhost", Default: "", Doc: "send all mail through this host ([host]:port skips the MX lookup)"},
	{Name: "inet_interfaces", Default: "all", Doc: "interfaces to listen on"},
	{Name: "smtpd_listen", Default: "127.0.0.1:2525", Doc: "SMTP listen addresses (a list)"},
	{Name: "message_size_limit", Default: "10240000", Doc: "largest message accepted, in bytes"},
	{Name: "maximal_queue_lifetime", Default: "5d", Unit: 'd', Doc: "how long mail is retried before it bounces"},
	{Name: "bounce_queue_lifetime", Default: "5d", Unit: 'd', Doc: "the same for mail from the null sender"},
	{Name: "minimal_backoff_time", Default: "300s", Doc: "shortest time between attempts"},
	{Name: "maximal_backoff_time", Default: "4000s", Doc: "longest time between attempts"},
	{Name: "queue_run_delay", Default: "300s", Doc: "how often the deferred queue is scanned"},
	{Name: "delay_warning_time", Default: "0h", Unit: 'h', Doc: "send a delay warning after this long; 0 means never"},
	{Name: "default_destination_concurrency_limit", Default: "20", Doc: "parallel deliveries per destination"},
	{Name: "default_destination_recipient_limit", Default: "50", Doc: "recipients per delivery"},
	{Name: "smtp_connect_timeout", Default: "30s", Doc: "timeout for a TCP connection to a peer"},
	{Name: "smtp_tls_security_level", Default: "", Doc: "none, may or encrypt"},
	{Name: "authorized_mailq_users", Default: "static:anyone", Doc: "who may list the queue"},
	{Name: "authorized_flush_users", Default: "static:anyone", Doc: "who may flush the queue"},
	{Name: "fast_flush_domains", Default: "$relay_domains", Doc: "destinations postqueue -s may flush"},
	{Name: "relay_domains", Default: "", Doc: "destinations this host relays to"},
	{Name: "daemon_directory", Default: "/usr/lib/postfix/sbin", Doc: "where Postfix's daemons live (used with a Postfix spool)"},
	{Name: "command_directory", Default: "/usr/sbin", Doc: "where Postfix's commands live (used with a Postfix spool)"},
	{Name: "maillog_file", Default: "/var/log/sluice/mail.log", Doc: "the mail log file, written by sluice serve (which also copies it to standard error); empty: standard error only"},
	// Queue manager and bounces (sluice serve).
	{Name: "initial_destination_concurrency", Default: "5", Doc: "deliveries at once to a destination at first; grows with successes to default_destination_concurrency_limit"},
	{Name: "default_process_limit", Default: "100", Doc: "deliveries at once, all destinations together; also SMTP sessions at once (more clients get 421 4.3.2)"},
	{Name: "qmgr_message_active_limit", Default: "20000", Doc: "messages in the active queue at once"},
	{Name: "bounce_size_limit", Default: "50000", Doc: "larger originals are returned in a bounce as headers only"},
	{Name: "compatibility_level", Default: "3.6", Doc: "Postfix backwards-compatibility level; some defaults (smtputf8_enable) change at level 1 and above. 3.6, as in the main.cf of a fresh Postfix 3.7 install; a Postfix configuration directory whose main.cf does not set it gets Postfix's compiled-in 0"},
	{Name: "smtputf8_enable", Default: "${{$compatibility_level} <level {1} ? {no} : {yes}}", Doc: "SMTPUTF8 support; listings keep UTF-8 text when it is on (yes unless compatibility_level is 0)"},
	{Name: "empty_address_recipient", Default: "MAILER-DAEMON", Doc: "shown (and delivered to) in place of the null sender <>"},
	// Intake: smtpd, cleanup, pickup, sendmail, mail log.
	{Name: "mydestination", Default: "$myhostname, localhost.$mydomain, localhost", Doc: "domains this host is the final destination for; smtpd accepts mail for them from any client"},
	{Name: "smtpd_tls_cert_file", Default: "", Doc: "PEM certificate (chain) for STARTTLS; STARTTLS is offered when this and smtpd_tls_key_file are set"},
	{Name: "smtpd_tls_key_file", Default: "$smtpd_tls_cert_file", Doc: "PEM private key for smtpd_tls_cert_file"},
	{Name: "smtpd_recipient_limit", Default: "1000", Doc: "recipients accepted per message over SMTP"},
	{Name: "smtpd_timeout", Default: "300s", Doc: "how long smtpd waits for a client's next command or data"},
	// smtpd: replies, error accounting and connection limits, as Postfix's.
	{Name: "smtpd_banner", Default: "$myhostname ESMTP $mail_name", Doc: "the text after 220 in the SMTP greeting"},
	{Name: "smtpd_helo_required", Default: "no", Doc: "refuse MAIL before HELO/EHLO (503 5.5.1 Error: send HELO/EHLO first)"},
	{Name: "smtpd_discard_ehlo_keywords", Default: "", Doc: "EHLO keywords not to announce (e.g. chunking, pipelining, dsn, smtputf8, starttls); a discarded CHUNKING, STARTTLS, DSN or SMTPUTF8 is also refused when used"},
	{Name: "smtpd_forbid_unauth_pipelining", Default: "no", Doc: "disconnect a client that pipelines without PIPELINING or sends before the greeting (554 5.5.0); improper pipelining is logged either way"},
	{Name: "smtpd_soft_error_limit", Default: "10", Doc: "errors in a session after which every reply waits smtpd_error_sleep_time"},
	{Name: "smtpd_hard_error_limit", Default: "20", Doc: "errors in a session after which the client is disconnected (421 4.7.0 Error: too many errors)"},
	{Name: "smtpd_error_sleep_time", Default: "1s", Doc: "the wait before each reply once smtpd_soft_error_limit is reached"},
	{Name: "smtpd_junk_command_limit", Default: "100", Doc: "HELO, EHLO, NOOP, VRFY, ETRN and RSET commands a session may send before each further one counts as an error"},
	{Name: "smtpd_client_connection_count_limit", Default: "50", Doc: "SMTP sessions at once from one client address; 0: no limit"},
	{Name: "smtpd_client_connection_rate_limit", Default: "0", Doc: "new SMTP sessions from one client address per anvil_rate_time_unit; 0: no limit"},
	{Name: "anvil_rate_time_unit", Default: "60s", Doc: "the time unit of smtpd_client_connection_rate_limit"},
	{Name: "smtpd_client_event_limit_exceptions", Default: "$mynetworks", Doc: "clients exempt from the per-client connection limits"},
	{Name: "sluice_smtpd_data_time_limit", Default: "3600s", Doc: "the longest one DATA or BDAT transfer may take, however steadily the client sends (sluice only; each read also has smtpd_timeout)"},
	{Name: "local_header_rewrite_clients", Default: "permit_inet_interfaces", Doc: "SMTP clients whose mail gets missing Message-Id:, Date: and From: headers added: permit_inet_interfaces (from our own address or loopback), permit_mynetworks, static:all, or empty for none"},
	{Name: "syslog_name", Default: "postfix", Doc: "the name before /service in mail log lines; postfix by default so log tools such as pflogsumm read sluice's log unchanged"},
	{Name: "mail_name", Default: "sluice", Doc: "the mail system's name in Received: headers (Postfix's default is Postfix)"},
	{Name: "sluice_commit_method", Default: "syncfs", Doc: "how a received message is made durable before smtpd answers 250 (sluice only): syncfs writes each queue file without a sync of its own and makes a whole batch of concurrently received messages, files and directory entries, durable with one syncfs(2) of the spool's file system; fsync syncs each file on its own and shares directory syncs. Both acknowledge only what is on disk; syncfs costs one sync per batch instead of one per message, but also flushes other programs' dirty data on the same file system, so on a spool shared with write-heavy programs fsync can be faster"},
	{Name: "sluice_shutdown_grace", Default: "10s", Unit: 's', Doc: "how long sluice serve, on SIGTERM, waits for deliveries and SMTP sessions in flight before it cuts them and exits (sluice only; Postfix's master lets its processes end at their earliest convenience). A cut delivery's message stays in active/ and goes back to incoming/ at the next start, so it is sent again; a cut session's message was never acknowledged"},
	// The HTTP API and metrics (sluice only; package httpapi).
	{Name: "sluice_http_listen", Default: "127.0.0.1:8025", Doc: "where sluice serve answers the HTTP API (/api/v1/) and Prometheus metrics (/metrics); empty turns it off. An address that cannot be bound is logged as a warning and mail flows on without it"},
	{Name: "sluice_http_tls_cert_file", Default: "", Doc: "PEM certificate (chain) for the HTTP listener; empty serves plain HTTP"},
	{Name: "sluice_http_tls_key_file", Default: "$sluice_http_tls_cert_file", Doc: "PEM private key for sluice_http_tls_cert_file"},
	{Name: "sluice_http_token_file", Default: "$queue_directory/private/sluice-http-token", Doc: "the bearer token every /api/ request needs; created (mode 0600, a random token) by the mail owner at the first start when missing"},
	{Name: "sluice_http_open_metrics", Default: "no", Doc: "serve /metrics without the token to every client (it is always open to loopback clients)"},
	// Local delivery (local(8)).
	{Name: "alias_maps", Default: "hash:/etc/aliases", Doc: "alias tables for local delivery; sluice reads the aliases(5) source text of hash:, btree:, lmdb:, cdb:, dbm: and texthash: tables directly (no .db needed)"},
	{Name: "alias_database", Default: "hash:/etc/aliases", Doc: "the alias files that newaliases checks"},
	{Name: "local_recipient_maps", Default: "proxy:unix:passwd.byname $alias_maps", Doc: "who exists in mydestination domains: smtpd rejects other recipients (550 5.1.1); empty accepts everybody"},
	{Name: "recipient_delimiter", Default: "", Doc: "characters that separate a user name from an address extension (user+ext); Debian sets +"},
	{Name: "mail_spool_directory", Default: "/var/mail", Doc: "where mbox mailboxes are (one file per user)"},
	{Name: "home_mailbox", Default: "", Doc: "mailbox relative to the user's home instead of the spool; a name ending in / is a Maildir (Maildir/)"},
	{Name: "forward_path", Default: "$home/.forward${recipient_delimiter}${extension}, $home/.forward", Doc: "where a user's .forward is looked for; $home, $user, $shell, $recipient, $extension, $domain, $local and $recipient_delimiter are the recipient's"},
	{Name: "allow_mail_to_commands", Default: "alias, forward", Doc: "where |command destinations are allowed: alias, forward, include"},
	{Name: "allow_mail_to_files", Default: "alias, forward", Doc: "where /file destinations are allowed: alias, forward, include"},
	{Name: "default_privs", Default: "nobody", Doc: "the user that commands and files from root-owned alias tables and :include: files run as"},
	{Name: "mailbox_delivery_lock", Default: "fcntl, dotlock", Doc: "how an mbox is locked: dotlock (user.lock), fcntl, flock"},
	{Name: "deliver_lock_attempts", Default: "20", Doc: "tries to lock a mailbox before the delivery is deferred"},
	{Name: "deliver_lock_delay", Default: "1s", Doc: "time between tries to lock a mailbox"},
	{Name: "stale_lock_time", Default: "500s", Doc: "a dotlock file older than this is removed as stale"},
	{Name: "prepend_delivered_header", Default: "command, file, forward", Doc: "deliveries that get a Delivered-To: header (file covers mailboxes)"},
	{Name: "mailbox_size_limit", Default: "51200000", Doc: "largest mbox file, in bytes; 0 for no limit"},
	{Name: "command_time_limit", Default: "1000s", Doc: "time limit for delivery to a command"},
	{Name: "propagate_unmatched_extensions", Default: "canonical, virtual", Doc: "lookups whose unmatched address extension is carried on to the result (alias, forward, include are local's)"},
	// Address resolution before the relay decision (internal/rewrite)
	// and loop protection.
	{Name: "allow_percent_hack", Default: "yes", Doc: "resolve user%domain as user@domain once the address's own domain is local, as trivial-rewrite does"},
	{Name: "swap_bangpath", Default: "yes", Doc: "resolve a UUCP bang path domain!user as user@domain"},
	{Name: "resolve_dequoted_address", Default: "yes", Doc: "look inside a quoted local part: \"user@elsewhere\"@myhostname resolves as user@elsewhere"},
	{Name: "resolve_null_domain", Default: "no", Doc: "resolve user@ (an empty domain) as a local address instead of refusing it as bad syntax"},
	{Name: "resolve_numeric_domain", Default: "no", Doc: "resolve user@1.2.3.4 as the address literal user@[1.2.3.4] instead of refusing it as bad syntax"},
	{Name: "allow_untrusted_routing", Default: "no", Doc: "let clients outside mynetworks send sender-routed addresses (user%host@, host!user@, user@host@) to local and relay_domains destinations"},
	{Name: "proxy_interfaces", Default: "", Doc: "addresses this host receives mail on through a proxy or NAT: their address literals are local, and an MX host at one of them is this host"},
	{Name: "hopcount_limit", Default: "50", Doc: "refuse a message with this many Received: headers (this host's own included): 554 5.4.0 Error: too many hops"},
	// Submission and SMTP AUTH through Dovecot (internal/smtpd auth.go,
	// submission.go; internal/sasl).
	{Name: "sluice_submission_listen", Default: "", Doc: "listen addresses of the submission service (Postfix's master.cf submission line, port 587): smtpd with smtpd_tls_security_level=encrypt, smtpd_sasl_auth_enable=yes and smtpd_client_restrictions=$sluice_submission_client_restrictions; empty: off"},
	{Name: "sluice_submission_client_restrictions", Default: "permit_sasl_authenticated, reject", Doc: "smtpd_client_restrictions of the submission service (master.cf's -o smtpd_client_restrictions=...)"},
	{Name: "sluice_smtps_listen", Default: "", Doc: "listen addresses of the smtps service (master.cf's smtps line, port 465): smtpd with smtpd_tls_wrappermode=yes (TLS from connect), smtpd_sasl_auth_enable=yes and smtpd_client_restrictions=$sluice_smtps_client_restrictions; empty: off"},
	{Name: "sluice_smtps_client_restrictions", Default: "permit_sasl_authenticated, reject", Doc: "smtpd_client_restrictions of the smtps service"},
	{Name: "smtpd_tls_security_level", Default: "", Doc: "none (no STARTTLS), may (STARTTLS offered; also what empty means when a certificate is set) or encrypt (commands other than HELO, EHLO, STARTTLS, RSET, NOOP, QUIT refused before TLS: 530 5.7.0 Must issue a STARTTLS command first)"},
	{Name: "smtpd_tls_wrappermode", Default: "no", Doc: "start TLS at connect, before the greeting (smtps, port 465)"},
	{Name: "smtpd_tls_auth_only", Default: "no", Doc: "offer and accept AUTH only under TLS"},
	{Name: "smtpd_sasl_auth_enable", Default: "no", Doc: "offer SMTP AUTH (RFC 4954), checked by Dovecot through smtpd_sasl_path"},
	{Name: "smtpd_sasl_type", Default: "dovecot", Doc: "the SASL implementation: dovecot (sluice speaks Dovecot's auth protocol; there is no Cyrus support)"},
	{Name: "smtpd_sasl_path", Default: "private/auth", Doc: "Dovecot's auth socket: a path (relative to queue_directory), unix:PATH or inet:host:port"},
	{Name: "smtpd_sasl_security_options", Default: "noanonymous", Doc: "mechanisms not to offer without TLS: noanonymous, noplaintext"},
	{Name: "smtpd_sasl_tls_security_options", Default: "$smtpd_sasl_security_options", Doc: "mechanisms not to offer under TLS"},
	{Name: "smtpd_client_auth_rate_limit", Default: "0", Doc: "AUTH commands from one client address per anvil_rate_time_unit (450 4.7.1 past it); 0: no limit"},
	{Name: "smtpd_sender_login_maps", Default: "", Doc: "tables of sender address → SASL logins that own it, for reject_sender_login_mismatch (the source text of hash:/texthash: tables is read)"},
	{Name: "smtpd_client_restrictions", Default: "", Doc: "restrictions on the client, checked at RCPT: permit, reject, defer, permit_mynetworks, permit_sasl_authenticated, ..."},
	{Name: "smtpd_sender_restrictions", Default: "", Doc: "restrictions on the sender, checked at RCPT (e.g. reject_sender_login_mismatch)"},
	{Name: "smtpd_relay_restrictions", Default: "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination", Doc: "the relay decision, checked at RCPT (Postfix's default ends in defer_unauth_destination, a 454; sluice refuses with 554)"},
	{Name: "smtpd_recipient_restrictions", Default: "", Doc: "restrictions on the recipient, checked at RCPT after smtpd_relay_restrictions"},
	{Name: "config_directory", Default: "/etc/sluice", Doc: "where main.cf is read from: -c DIR, else MAIL_CONFIG, else this default (Postfix's is /etc/postfix)"},
	// Milters (internal/milter): Postfix's names, defaults and meanings.
	{Name: "smtpd_milters", Default: "", Doc: "milters for mail from SMTP clients: unix:/path or inet:host:port, or { address, default_action=..., command_timeout=..., content_timeout=..., connect_timeout=... }"},
	{Name: "non_smtpd_milters", Default: "", Doc: "milters for mail submitted with sendmail (through pickup)"},
	{Name: "milter_default_action", Default: "tempfail", Doc: "what to do when a milter is down or fails: tempfail, accept, reject or quarantine"},
	{Name: "milter_protocol", Default: "6", Doc: "the milter protocol version offered (2 to 6)"},
	{Name: "milter_connect_timeout", Default: "30s", Unit: 's', Doc: "time limit to connect to a milter and negotiate"},
	{Name: "milter_command_timeout", Default: "30s", Unit: 's', Doc: "time limit for a milter's answer to an SMTP command event"},
	{Name: "milter_content_timeout", Default: "300s", Unit: 's', Doc: "time limit for a milter's answer to message content (headers, body, end of message)"},
	{Name: "milter_connect_macros", Default: "j {daemon_name} {daemon_addr} v _", Doc: "macros sent with the connect event"},
	{Name: "milter_helo_macros", Default: "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}", Doc: "macros sent with HELO/EHLO"},
	{Name: "milter_mail_macros", Default: "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}", Doc: "macros sent with MAIL FROM"},
	{Name: "milter_rcpt_macros", Default: "i {rcpt_addr} {rcpt_host} {rcpt_mailer}", Doc: "macros sent with RCPT TO"},
	{Name: "milter_data_macros", Default: "i", Doc: "macros sent with DATA"},
	{Name: "milter_end_of_header_macros", Default: "i", Doc: "macros sent at the end of the headers"},
	{Name: "milter_end_of_data_macros", Default: "i", Doc: "macros sent at the end of the message"},
	{Name: "milter_macro_daemon_name", Default: "$myhostname", Doc: "the {daemon_name} macro"},
	{Name: "milter_macro_v", Default: "$mail_name $mail_version", Doc: "the v macro"},
}

// postfixOverrides are defaults that differ when the configuration
// directory is Postfix's own.
var postfixOverrides = map[string]string{
	"queue_directory": "/var/spool/postfix",
	"smtpd_listen":    "",
	"maillog_file":    "",
	// Postfix's compiled-in level; its installed main.cf sets 3.6.
	"compatibility_level": "0",
}

var paramIndex = func() map[string]*Param {
	m := make(map[string]*Param, len(Params))
	for i := range Params {
		m[Params[i].Name] = &Params[i]
	}
	return m
}()

// smtputf8DefaultExpr is Postfix's default for smtputf8_enable: yes,
// except at compatibility_level 0.
const smtputf8DefaultExpr = "${{$compatibility_level} <level {1} ? {no} : {yes}}"

// SMTPUTF8Enable returns smtputf8_enable, evaluating Postfix's default
// expression (which Get does not expand) against compatibility_level.
func (c *Config) SMTPUTF8Enable() bool {
	if v, _ := c.Raw("smtputf8_enable"); strings.TrimSpace(v) != smtputf8DefaultExpr {
		return c.Bool("smtputf8_enable")
	}
	major, _, _ := strings.Cut(strings.TrimSpace(c.Get("compatibility_level")), ".")
	return strings.TrimLeft(major, "0") != ""
}
