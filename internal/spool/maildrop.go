package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"time"
)

// ModeMaildrop is the mode of a finished maildrop file: postdrop creates
// it 0644 and makes it ready with fchmod(0700|0444) (reference §1.2).
const ModeMaildrop fs.FileMode = 0o744

// A maildrop file is what Postfix's postdrop writes for sendmail: no size
// record, so it begins with T; then named attributes, the full name, the
// sender and bare R records (postdrop accepts only the envelope records
// M F S R V A i n), the content, X and E (reference §2.2). pickup hands it
// to cleanup, which writes a new, complete queue file under a new ID.

// NewMaildropFile creates an embryonic queue file in maildrop/, named by
// its queue ID as postdrop names it. Write it with WriteMaildropEnvelope
// and WriteLine, then CommitMaildrop.
func (s *Spool) NewMaildropFile(now time.Time) (*File, error) {
	return s.newFile(osOps{}, Maildrop, now)
}

// WriteMaildropEnvelope writes a maildrop file's envelope in postdrop's
// order: T, the attributes (postdrop writes rewrite_context=local), F, S,
// then one R per recipient, then the content marker. Original and DSN
// recipient data, the create time, the warning time and the size-record
// fields of e are not part of this format and are ignored.
func (q *File) WriteMaildropEnvelope(e *NewEnvelope) error {
	if q.Queue != Maildrop || q.off != 0 {
		return errors.New("spool: maildrop envelope on a file that is not a new maildrop file")
	}
	q.put(RecTime, fmt.Sprintf("%d %d", e.Arrival.Unix(), e.Arrival.Nanosecond()/1000))
	for _, a := range e.Attrs {
		q.put(RecAttr, a.Name+"="+a.Value)
	}
	if e.FullName != "" {
		q.put(RecFullName, e.FullName)
	}
	q.put(RecSender, e.Sender)
	if e.DSNEnvID != "" {
		q.put(RecDSNEnvID, e.DSNEnvID)
	}
	for _, r := range e.Recipients {
		if r.Notify != 0 {
			q.put(RecDSNNotify, strconv.Itoa(r.Notify))
		}
		q.put(RecRcpt, r.Address)
	}
	q.put(RecMesg, "")
	q.size.DataOffset = q.off
	q.inBody = true
	return nil
}

// CommitMaildrop ends the content with X and E, makes the file ready
// (mode 0744, as postdrop leaves it) and syncs the file and the maildrop
// directory. There is no size record to patch.
func (q *File) CommitMaildrop() error {
	if q.done {
		return errors.New("spool: queue file already committed or aborted")
	}
	if q.Queue != Maildrop {
		return fmt.Errorf("spool: CommitMaildrop on a file in %s", q.Queue)
	}
	q.put(RecXtra, "")
	q.put(RecEnd, "")
	if err := q.w.Flush(); err != nil {
		return q.fail(err)
	}
	if err := q.f.Chmod(ModeMaildrop); err != nil {
		return q.fail(err)
	}
	if !q.sp.NoSync {
		if err := q.f.Sync(); err != nil {
			return q.fail(err)
		}
	}
	err := q.f.Close()
	q.f = nil
	if err != nil {
		return q.fail(err)
	}
	if err := q.sp.syncDir(filepath.Dir(q.Path)); err != nil {
		return q.fail(err)
	}
	q.done = true
	return nil
}
