// Package privsep is how sluice runs with least privilege, as Postfix
// does: root only for what needs root, everything that reads the network,
// a message or a queue file as mail_owner, and local users reaching the
// mail system only through a tiny setgid helper and public/ sockets.
//
// # sluice serve started as root
//
// The root process (the master, Master) does, in this order:
//
//  1. Accounts: mail_owner (default postfix) and setgid_group (default
//     postdrop) are looked up and, when missing, created as Debian's
//     postfix package creates them: a system group named like the user,
//     a system user in it with no login shell (/usr/sbin/nologin), no
//     password and the queue directory as its home, and a system group
//     setgid_group (groupadd/useradd, or addgroup/adduser). Each creation
//     is logged.
//  2. The spool (spool.CreateOwned): made or fixed with Postfix's owners
//     and modes — the queue directory root:root 0755; active, bounce,
//     corrupt, defer, deferred, flush, hold, incoming, saved, trace,
//     private mail_owner 0700; maildrop mail_owner:setgid_group 1730;
//     public mail_owner:setgid_group 2710; pid root 0755 — and every file
//     below the queues that an older root daemon left owned by root is
//     given to mail_owner (modes untouched: they are message state).
//  3. pid/master.pid: locked (flock) and written with the master's pid,
//     so a second daemon is refused and tools see a live daemon; the
//     file stays root's, in root's pid/.
//  4. What needs root: the SMTP listening sockets (smtpd_listen,
//     sluice_submission_listen and sluice_smtps_listen, ports below 1024
//     included) and the mail log file (maillog_file; its
//     directory is made root 0755, the file is owned by mail_owner so
//     that Postfix's postsuper, which writes it as mail_owner, can
//     append to it too).
//  5. The child: the master re-executes its own binary (/proc/self/exe)
//     as `sluice serve` with the same arguments, as mail_owner (uid,
//     primary gid, and that gid as its only group: os/exec with
//     SysProcAttr.Credential), working directory the queue directory,
//     and Pdeathsig (SIGKILL) so that it dies with the master: a master
//     killed with -9 takes the mail system with it, as one process would. The listening sockets
//     and the log file are its ExtraFiles (fd 3, 4, ...);
//     SLUICE_PRIVSEP_FDS tells it which fd is which ("listen=ADDR" or
//     "log", space separated, in fd order). The child (Inherited) takes
//     them and runs the whole mail system — smtpd, pickup, cleanup,
//     qmgr, delivery, bounces, the control socket, public/showq — on
//     them, opening nothing privileged itself.
//  6. Then the master only waits (and starts local deliveries, below):
//     it forwards SIGTERM, SIGINT and SIGHUP
//     to the child (before forwarding SIGHUP it makes sure the log file
//     exists and is mail_owner's, so the child's reload can reopen it
//     after a rotation) and exits with the child's exit status (128+N
//     when the child died of signal N). It reads no message, no queue
//     file and no network input.
//
// A reload (SIGHUP) is the child's: it keeps the inherited sockets. An
// address added to smtpd_listen by a reload is opened by the child, which
// works only for ports it may bind as mail_owner; a privileged port needs
// a restart.
//
// Local delivery (aliases, .forward files, mailboxes, files, commands)
// needs each recipient's identity, which mail_owner cannot take. As
// Postfix's local(8) runs as root and takes the recipient's privileges
// per delivery, sluice runs its local delivery agent as root in a
// process of its own, `sluice local-deliver`, one per delivery, started
// by the master on the child's request over a channel made at start
// (deliver.go): a SOCK_SEQPACKET socket pair whose other end the child
// inherits ("deliver"). The child (DeliveryClient) sends the queue ID,
// sender and recipients, with the queue file it opened read-only and a
// results pipe as SCM_RIGHTS; the master (DeliveryServer) takes requests
// from the child's pid only, checks them and the descriptors, and runs
// local-deliver from its own binary as root with the master's own
// configuration directory, environment and a time limit. It reads
// neither the message nor the results: local-deliver (package cli, with
// package local's Agent) writes them to the child, which logs them. The
// master itself still reads no message and no network input. Since each
// local-deliver reads main.cf when it starts, a change to the local
// delivery parameters applies to the next delivery, reload or not (as
// with Postfix's short-lived local processes).
//
// # sluice serve started by another user
//
// It runs entirely as that user, on a spool that user owns (a development
// setup): no accounts, no chown, no child. The same holds when mail_owner
// is root.
//
// # Local users: the setgid helper
//
// `sluice install` puts a copy of the binary at sbin/sluice-postdrop,
// owned by root:setgid_group, mode 2755 (Postfix's postdrop mode in
// postfix-files). A sluice process whose effective gid differs from its
// real gid runs nothing but SetgidMain, whatever name or arguments it was
// started with, so the copy cannot be made to run another tool with the
// group. SetgidMain first re-executes /proc/self/exe with an empty
// environment unless the environment is already empty, so the Go runtime
// of the process that does the work never saw GODEBUG, GOTRACEBACK,
// GOMAXPROCS or GOGC from the caller; MAIL_CONFIG is carried over as an
// argument and checked like -c. It sets umask 022, refuses to run
// set-user-ID, and accepts a configuration directory other than the
// default only when the default main.cf lists it in
// alternate_config_directories (Postfix's rule and messages). It has two
// jobs:
//
//   - drop: read a maildrop record stream on standard input, check it
//     (only the records and named attributes sendmail writes, in
//     sendmail's order, ended by E and nothing after), write it to a new
//     maildrop file named by its inode (owned by the caller, which is how
//     pickup learns the submitting uid, as with Postfix's postdrop),
//     sync it, make it ready (0744), wake pickup through public/pickup,
//     and print the queue ID.
//   - connect NAME: connect to public/NAME (only sluice-control and
//     pickup) and hand the connected socket to the caller over fd 3 with
//     SCM_RIGHTS. The daemon sees the caller's uid on it (SO_PEERCRED
//     gives the effective uid, which setgid does not change), so it
//     applies authorized_mailq_users, authorized_flush_users and the
//     root/mail_owner rule for changes to the right user.
//
// sendmail writes maildrop itself when it can (root, mail_owner, the
// owner of a development spool) and runs the helper's drop when the
// kernel refuses; the tools dial the control socket themselves and go
// through connect when public/ is closed to them.
//
// # Who may do what
//
// Listing (mailq, postqueue -p/-j, qshape, sluice queue list|count|
// summary|show) is for the users authorized_mailq_users names, flushing
// (postqueue -f/-i/-s, sendmail -q) for authorized_flush_users; root and
// mail_owner always may. The lists take user names, "!name" to exclude,
// and static:anyone (any static: table matches everyone, as Postfix's
// lookup does). Refusals are Postfix's: `postqueue: fatal: User
// NAME(UID) is not allowed to view the mail queue` (or "to flush the
// mail queue"), exit 69. Changes (delete, hold, release, requeue,
// expire) are for root and mail_owner only; postsuper says `use of this
// command is reserved for the superuser` (exit 1). The daemon checks the
// same rules on its socket with the peer's uid; the tools check first
// only to word the refusal as Postfix does.
package privsep
