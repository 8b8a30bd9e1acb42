// Package spool is sluice's queue on disk, which is a Postfix 3.7 queue:
// the same directories, queue IDs, queue-file records and defer logs, so
// Postfix's tools read our files and our tools read a Postfix spool.
//
// # Directories
//
// Under the queue directory: maildrop (local submissions, no size
// record), incoming (complete, not yet scheduled), active (being
// delivered), deferred (waiting for a retry), hold (never scheduled,
// never expires), corrupt (unreadable files set aside), and the
// per-message logs defer, bounce and trace. Queues named in
// hash_queue_names (default deferred and defer) spread files over
// hash_queue_depth levels of one-character subdirectories taken from the
// ID (short IDs) or from the %05X of the ID's microseconds (long IDs).
//
// # Queue IDs
//
// Short: %05X microseconds + %X inode. Long: base52 seconds (6+ digits),
// base52 microseconds (4 digits), 'z', base51 inode. Both are taken when
// the new file is named, so a live file's ID is unique.
//
// # Queue files
//
// A queue file is a sequence of records: a type byte, the data length as
// a little-endian base-128 varint, and the data. The segments are
//
//	envelope:  C T A(create_time) [A...] [F] S [W] {[A dsn_orig_rcpt] [O] R|D}... M
//	content:   {N | L... N}...      one record per line, newline implied
//	extracted: X [R|O|A...]
//	end:       E
//
// C is six %15d fields (content length, content offset, recipient count,
// qmgr flags, content length with edits, SMTPUTF8 flags), written first
// as a placeholder and patched when the file is complete. Readers follow
// p (pointer) records, skip w (padding) and stop at E.
//
// # State in the file and its mode
//
// A file is being written while its mode is 0600 and every reader skips
// it; mode 0700 marks it complete. The writer's order is: content
// written, size record patched, mode 0700, fsync the file, fsync the
// directory; only then is the message acknowledged. g+x (0010) asks for
// forced expiry; g+r (0040) asks the queue manager to unthrottle the
// message's destinations. A recipient that is done has its R record's
// type byte overwritten with D in place, so a crash after a partial
// delivery never delivers twice to a finished recipient. In deferred/ the
// file's mtime is the earliest time of its next attempt.
//
// # State machine
//
//	maildrop ─pickup─► incoming ─► active ─┬─ all done ──────────► removed
//	                                       ├─ some 4xx ─► deferred ─► active (when mtime ≤ now)
//	                                       ├─ 5xx / expired ─► bounce log ─► DSN, removed
//	                                       └─ unreadable ─► corrupt
//	any of incoming, active, deferred ◄─► hold  (postsuper -h / -H)
//
// Every move is a rename inside the spool followed by a sync of the
// directories involved; nothing is copied. On start the queue manager
// moves active/ back to incoming/. The daemon "removes" a small message
// delivered in its first round by moving its file to recycle/, where the
// next new message is written into it (recycle.go): sluice's own
// directory, which no tool lists.
//
// # Logs
//
// defer/ID (and bounce/ID, trace/ID) are text: one entry per recipient
// attempt, each opened by a blank line, holding name=value lines
// (recipient, offset, status, action, reason, ...). mailq shows the reason
// of the newest attempt because the queue manager deletes defer/ID each
// time the message enters the active queue.
package spool
