// Package qmgr is sluice's queue manager: it decides what is delivered
// when, with Postfix's semantics and timings (reference §1.4 and §8), on a
// spool that is a Postfix queue.
//
// # State machine
//
// A message is a queue file; its queue is the directory it is in.
//
//	incoming ──► active ──┬─ every recipient done ─────────────► removed
//	deferred ──►          ├─ some recipients deferred ─► deferred (mtime = next attempt)
//	(mtime ≤ now+1s)      ├─ expired (lifetime over, or g+x) ─► DSN to sender, removed
//	                      ├─ bounce log present ─► DSN to sender, log removed
//	                      └─ unreadable ─► corrupt
//	hold: never scheduled, never expires.
//
// On start every file in active/ goes back to incoming/. A message is
// taken from incoming/ when cleanup notifies us (Notify, Wake) and from
// deferred/ by the scan every queue_run_delay, when its mtime has come
// (FlushAll takes every deferred message at once; FlushID one). Taking a
// message is a rename into active/; the message's old defer log is
// deleted then, so the log always tells of the latest attempt. The
// directories are synced afterwards, in batches at most twice a second
// and off the scheduler's path: a crash before the sync leaves the file
// in incoming/ or active/, and both are retried, so delivery need not
// wait for it, and arriving mail's fsyncs need not queue behind it.
//
// In active/ the recipients that are still R records are sorted as
// Postfix sorts them (next hop, domain, address), grouped by next hop
// (relayhost, or the recipient's domain) and cut into deliveries of at
// most default_destination_recipient_limit recipients. Each next hop is a
// destination with at most default_destination_concurrency_limit
// deliveries at once; it starts at initial_destination_concurrency and
// grows by 1/concurrency per successful delivery.
//
// # Failure classes
//
// Results are per recipient. Sent: the R record's type byte becomes D
// in place (written before anything else is said about the recipient,
// so a recipient that is D is never delivered again, whatever happens
// next). Deferred (4xx, connection, DNS, or any failure we cannot
// classify): an entry in defer/ID with the recipient's offset, status,
// action=delayed and reason. Bounced (5xx): an entry in bounce/ID, then
// the D mark. A delivery in which no server was reached (every recipient
// deferred and no relay) marks its destination dead for
// minimal_backoff_time; meanwhile its other deliveries are deferred
// without a connection, with "delivery temporarily suspended: <reason>".
// FlushAll and a message's g+r (unthrottle) bit bring it back at once.
//
// # After the last delivery of a message
//
// A bounce log is turned into one RFC 3464 DSN from <> to the sender
// (never to the null sender) and removed. If no recipient is pending,
// the file is removed ("ID: removed"). If some are pending and the
// message has expired — its g+x bit is set, or now ≥ create_time +
// maximal_queue_lifetime (bounce_queue_lifetime for mail from <>) — it
// is returned to the sender with the defer log's reasons ("status=
// expired, returned to sender") and removed. Otherwise a delay warning is
// sent if the W record has come due (and W becomes -1), the file's mtime
// is set to the next attempt, now + clamp(now − create_time,
// minimal_backoff_time, maximal_backoff_time), and it is renamed into
// deferred/. So retries come after about 5, 10, 20, 40 minutes, then
// every maximal_backoff_time, rounded up to the next queue_run_delay scan.
//
// # Crash safety
//
// Every step is a rename or an in-place one-byte write, so a crash at
// any point leaves the file in incoming/, active/ or deferred/, from which
// it is retried; active/ is emptied into incoming/ on start. A recipient
// already D is skipped. A delivery cut short by a crash may be repeated
// (a peer said 250 but the D was not yet written): at least once, never
// lost. The D marks and removals are not fsynced each (Postfix does not
// either); a file is synced before it goes to deferred/.
//
// # Time
//
// All mail time comes from a clock.Clock, and one timer serves a heap of
// events (the deferred scan, dead destinations coming back), so tests run
// days of retries on a fake clock. (Only the pacing of directory syncs
// uses real time; it changes no outcome.)
//
// # Coordination
//
// Actions from outside (postsuper and sluice queue through the control
// socket) Acquire a message first: that waits for its deliveries in
// flight, drops its queued ones and keeps the scheduler off it until
// release, after which the file is looked at again.
package qmgr
