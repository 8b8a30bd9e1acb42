package pickup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"sluice/internal/spool"
)

// DropEnvelope is what sendmail knows about a message before its content.
type DropEnvelope struct {
	Arrival    time.Time
	FullName   string // sendmail -F, or the user's name
	Sender     string // "" is the null sender
	Recipients []DropRecipient
	EnvID      string // sendmail -V
	Ret        int    // sendmail -R: cleanup.RetFull or cleanup.RetHdrs, 0 for none
}

// DropRecipient is one recipient given on the command line (or in -bs).
type DropRecipient struct {
	Address string
	Notify  int    // sendmail -N flags, 0 for none
	ORCPT   string // DSN original recipient, "rfc822;addr"
}

// Drop is a maildrop file being written, in the format Postfix's postdrop
// writes (reference §2.2, the maildrop sample):
//
//	T  A rewrite_context=local  [A envelope_id=]  [A ret_flags=]  F  S
//	{ [A notify_flags=N] [A dsn_orig_rcpt=] R }...
//	M  { N | L... N }...  X  { R }... (recipients extracted by sendmail -t)  E
//
// There is no size record; the file is created mode 0600, which every
// reader skips, and made ready with mode 0744 only after it is complete
// and synced. Postfix's pickup reads these files too.
type Drop struct {
	DropRecords
	ID   string
	Path string
	sp   *spool.Spool
	f    *os.File
	done bool
}

// ModeMaildrop is a finished maildrop file's mode, as postdrop leaves it.
const ModeMaildrop fs.FileMode = 0o744

// NewDrop creates an embryonic maildrop file named by its queue ID.
func NewDrop(sp *spool.Spool, now time.Time) (*Drop, error) {
	dir := filepath.Join(sp.Root, spool.Maildrop)
	if _, err := os.Stat(dir); err != nil {
		// No daemon has made the spool yet: make what sendmail needs.
		if err := os.MkdirAll(sp.Root, 0o755); err != nil {
			return nil, fmt.Errorf("pickup: queue directory: %w", err)
		}
		if err := os.Mkdir(dir, 0o730); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pickup: maildrop directory: %w", err)
		}
	}
	// As postdrop: a temporary name first, then the ID from the inode.
	f, id, err := sp.CreateNamed(spool.Maildrop, now, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pickup: %w", err)
	}
	return &Drop{DropRecords: NewDropRecords(bufio.NewWriterSize(f, 32<<10)), ID: id, Path: filepath.Join(dir, id), sp: sp, f: f}, nil
}

// DropRecords writes a maildrop file's records, as postdrop lays them
// out, to a buffered writer: the one encoding of a maildrop file, used by
// Drop (the file itself) and by sendmail's path through the setgid
// helper (a pipe to it).
type DropRecords struct {
	w    *bufio.Writer
	buf  []byte
	size int64
}

// NewDropRecords returns a DropRecords that writes to w.
func NewDropRecords(w *bufio.Writer) DropRecords { return DropRecords{w: w} }

func (d *DropRecords) put(typ byte, data []byte) {
	d.buf = spool.AppendRecord(d.buf[:0], typ, data)
	d.w.Write(d.buf)
}

func (d *DropRecords) puts(typ byte, data string) {
	d.buf = spool.AppendRecordString(d.buf[:0], typ, data)
	d.w.Write(d.buf)
}

// WriteEnvelope writes the envelope records and the content marker.
func (d *DropRecords) WriteEnvelope(e *DropEnvelope) {
	d.puts(spool.RecTime, fmt.Sprintf("%d %d", e.Arrival.Unix(), e.Arrival.Nanosecond()/1000))
	d.puts(spool.RecAttr, "rewrite_context=local")
	if e.EnvID != "" {
		d.puts(spool.RecAttr, "envelope_id="+e.EnvID)
	}
	if e.Ret != 0 {
		d.puts(spool.RecAttr, "ret_flags="+strconv.Itoa(e.Ret))
	}
	d.puts(spool.RecFullName, e.FullName)
	d.puts(spool.RecSender, e.Sender)
	for _, r := range e.Recipients {
		if r.Notify != 0 {
			d.puts(spool.RecAttr, "notify_flags="+strconv.Itoa(r.Notify))
		}
		if r.ORCPT != "" {
			d.puts(spool.RecAttr, "dsn_orig_rcpt="+r.ORCPT)
		}
		d.puts(spool.RecRcpt, r.Address)
	}
	d.puts(spool.RecMesg, "")
}

// WriteLine writes one content line without its terminator, split into
// L records at 2048 bytes as Postfix stores long lines.
func (d *DropRecords) WriteLine(line []byte) {
	d.size += int64(len(line)) + 1
	for len(line) > spool.LineLengthLimit {
		d.put(spool.RecCont, line[:spool.LineLengthLimit])
		line = line[spool.LineLengthLimit:]
	}
	d.put(spool.RecNorm, line)
}

// Size returns the bytes of message text written so far, one newline per
// line included.
func (d *DropRecords) Size() int64 { return d.size }

// End writes the records after the content: the extracted recipients,
// if any, after X, then the end record. The caller flushes.
func (d *DropRecords) End(extracted []string) {
	d.puts(spool.RecXtra, "")
	for _, r := range extracted {
		d.puts(spool.RecRcpt, r)
	}
	d.puts(spool.RecEnd, "")
}

// Flush writes out what is buffered.
func (d *DropRecords) Flush() error { return d.w.Flush() }

// Commit ends the file (extracted recipients, if any, follow X), syncs
// it, makes it ready and syncs the maildrop directory. The message is
// safe once Commit returns nil.
func (d *Drop) Commit(extracted []string) error {
	if d.done {
		return errors.New("pickup: maildrop file already committed or aborted")
	}
	d.End(extracted)
	if err := d.Flush(); err != nil {
		return d.fail(err)
	}
	if !d.sp.NoSync {
		if err := d.f.Sync(); err != nil {
			return d.fail(err)
		}
	}
	// Ready only once its content is durable: a reader that sees mode
	// 0744 after a crash finds the whole file.
	if err := d.f.Chmod(ModeMaildrop); err != nil {
		return d.fail(err)
	}
	if !d.sp.NoSync {
		if err := d.f.Sync(); err != nil {
			return d.fail(err)
		}
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return d.fail(err)
	}
	if err := syncDir(d.sp, filepath.Dir(d.Path)); err != nil {
		return d.fail(err)
	}
	d.done = true
	return nil
}

func (d *Drop) fail(err error) error {
	d.Abort()
	return fmt.Errorf("pickup: write maildrop file %s: %w", d.ID, err)
}

// Abort removes an uncommitted maildrop file.
func (d *Drop) Abort() {
	if d.done {
		return
	}
	d.done = true
	if d.f != nil {
		d.f.Close()
	}
	os.Remove(d.Path)
}

func syncDir(sp *spool.Spool, dir string) error {
	if sp.NoSync {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
