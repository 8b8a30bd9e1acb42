package showq

import (
	"io/fs"
	"time"
)

// Message is one queued message as a queue listing sees it. The strings
// are in display form, exactly as Postfix's showq reports them: the
// sender and queue-file recipients with their local part quoted (RFC 822)
// and non-printable bytes replaced by '?', defer-log recipients and
// reasons made printable. Renderers print them as they are.
type Message struct {
	Queue        string // maildrop, active, incoming, deferred or hold
	ID           string // queue ID, the file name
	Arrival      int64  // Unix seconds: the first T record, else the file's mtime
	Size         int64  // content size: C record field 1, else the file size
	ForcedExpire bool   // the g+x mode bit: postsuper -e/-f asked for expiry
	Sender       string // empty_address_recipient (MAILER-DAEMON) for the null sender
	Recipients   []Recipient
	// MTime is the file's modification time. In deferred/ it is the
	// earliest time of the next delivery attempt.
	MTime time.Time
	Mode  fs.FileMode // permission bits of the queue file
}

// Recipient is one recipient still to be delivered, or one entry of the
// message's defer log. Recipients from the defer log come first, in log
// order; then the queue file's undelivered recipients that the log did
// not name.
type Recipient struct {
	Address string
	// Reason is the delay reason from the defer log; empty for a
	// recipient that has none (not tried yet, or tried before a restart).
	Reason string
	Status string // DSN status from the defer log, e.g. 4.4.1
	Action string // DSN action from the defer log, e.g. delayed
	Logged bool   // the recipient came from the defer log
}
