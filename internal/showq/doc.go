// Package showq lists a Postfix 3.7 queue the way Postfix's showq service
// and its clients do: the scan behind mailq, postqueue -p and postqueue
// -j, and the two renderings. Given the same spool and parameters the
// output is byte for byte Postfix's (the tests compare with the real
// postqueue).
//
// # What is listed
//
// The queues maildrop, active, incoming, deferred and hold, in that
// order, each in raw directory order (hash subdirectories where they are
// met). A file is listed only when its name is a queue ID, it sits where
// its ID says (a file in the wrong hash directory is not), it is a regular
// file and its owner bits are rwx (0700: complete). Of each file:
//
//   - size: the first field of the C record when that record holds only
//     digits and spaces, else the file size (maildrop files have no C);
//   - arrival: the seconds of the first T record that is not 0, else the
//     file's mtime; both as they stand when the S record is reached;
//   - sender: the S record, the null sender shown as
//     empty_address_recipient; a second S record ends the file;
//   - forced expiry: the g+x mode bit; the queue gives the markers
//     (* active, ! hold, # forced expiry);
//   - recipients: first every entry of the message's defer log, in log
//     order, with its reason; then each R record (never a D record) whose
//     displayed address the log did not name. At most
//     duplicate_filter_limit log addresses are remembered (0: no limit).
//
// A file that ends early or is damaged after its sender is listed with
// what was read, as Postfix lists it; one damaged before its sender is
// not listed. Files that vanish during the scan are skipped silently;
// damage is reported through Options.Warn and never stops the scan.
//
// # How text is shown
//
// Queue-file addresses are C strings (they end at a NUL byte); the local
// part is quoted when it is not an RFC 822 dot-string, then bytes that
// are not printable become '?', keeping UTF-8 sequences when
// smtputf8_enable is on. Defer-log lines are made printable and read as
// "name = value", or as the old "<address>: reason" form; missing fields
// read "(recipient address unavailable)" and "(description
// unavailable)". See quote.go and deferlog.go.
//
// # Renderings
//
// TextWriter prints mailq's columns (short or long queue-ID layout,
// asctime() arrival in the local zone, reason lines right-aligned to
// column 78, "(reason unavailable)", the Kbytes/Requests trailer or "Mail
// queue is empty"). JSONWriter prints one JSON object per message per
// line, in Postfix's key order and escaping, and nothing for an empty
// queue.
//
// # In the daemon
//
// Lister lists for a running daemon with the same bytes: the order and
// the membership from the queue directories (read again only when they
// changed), each message from the daemon's live model of the queue when
// the model gives what the message's files gave when last read (a
// digest of the listing is kept per message), else from its files. See
// Lister for the rules.
//
// Reading is parallel (spool.ForEach) and allocation-light: each worker
// reuses its buffers, queue files are read through one window with the
// content skipped, directories stay open so each file is found by one
// name, and a defer log costs one open attempt.
package showq
