// Package qshape is Postfix's qshape: how many messages (or recipients)
// the queue holds for each domain, by age. Its output is byte for byte
// that of Postfix 3.7's qshape script on the same queue at the same time,
// with one exception: rows the script leaves in random order are sorted
// by name (see Order). It reads the queue files in parallel and only
// their envelopes, so it is many times faster than the script.
//
// # What is counted (reference §5.2)
//
// Every file under the named queue directories, at any depth, whose name
// is six or more letters and digits, that is a regular file (links are
// not followed) and whose mode has owner rwx and no group or other write
// or execute bit: a force-expired file (g+x) is left out, one with g+r is
// counted. A file counts when its records, read as the script reads them,
// give an arrival time, a sender and at least one recipient still to
// deliver:
//
//   - the first record is C (then T must follow; the arrival is T's first
//     field) or S / F-then-S (an old maildrop file: the arrival is the
//     file's modification time);
//   - pointer records (p) with a positive offset are followed; R records
//     count, D (done) records do not, R records after X (recipients
//     extracted from headers) count too; the last S is the sender;
//   - at M the content is skipped by the C record's first field (or
//     walked over N, L and p records without one) and X must follow;
//   - at E the message is taken, if it has a time, a sender and a
//     recipient;
//   - a length that needs more than three varint bytes (over 2^21-1), a
//     short read, or a record type '0' ends the walk.
//
// A file whose first record is none of C, S and F (a postdrop file, an
// empty file) still counts as a message, as in the script, with no
// recipients, no sender and an arrival of 0: with -s it adds a
// MAILER-DAEMON row in the oldest bucket. Files that cannot be parsed are
// reported through Options.Warnf; files that vanish, are not ready, or
// have no recipient left are skipped silently.
//
// # Rows (reference §5.3)
//
// Each recipient (with -s, the sender) is lower-cased (ASCII only); an
// empty address is MAILER-DAEMON; everything through the last '@' is
// dropped, ".." becomes ".", and one leading and one trailing dot go.
// With -p the name also counts toward its parents: sub.example.com
// toward .example.com, a.b.c.d toward .b.c.d and .c.d, never toward a
// one-label parent such as .com. A parent row is shown only when at least
// MinSub distinct names reduce to it directly; any other row whose name
// begins with a dot is hidden too, as in the script.
//
// # Columns (reference §5.4, §5.5)
//
// Column T is the row's total. The age of a message is now minus its
// arrival, in units of Tick minutes (m): bucket 1 holds m < 1, then
// bucket 2+int(log2 m) (or int(m+1) with -l), capped at the last bucket.
// Headings are the buckets' upper bounds (Tick, 2·Tick, 4·Tick, ...),
// the last one the previous bound with "+". Each column is as wide as
// its heading or its TOTAL, plus one, at least 3. The name column takes
// the rest of Width (80, or -w when above 80), at least 18 characters;
// longer names show their tail behind "+", parent names behind ".+".
// Numeric options are Perl numbers, so "-t 2.5", "-b 3.5" and "-w 100.5"
// behave as in the script, including the floating-point headings.
//
// # Order
//
// The TOTAL row is an ordinary row. Rows are sorted by total, largest
// first, then by name length, shortest first. Rows equal in both come out
// of the script in Perl's hash order, which changes from run to run;
// sluice sorts them by the bytes of the name, ascending.
//
// # Differences from the script
//
// A pointer cycle makes the script loop forever; we give up on the file
// after 10000 jumps. Bucket counts above 2^20 are refused. -N with a value
// between 0 and 1 makes the script die at its first message ("Illegal
// modulus zero"); Run returns an error there too. The command's help,
// stderr warnings and exit statuses are described in internal/cli.
package qshape
