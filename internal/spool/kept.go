package spool

import (
	"io/fs"
	"os"
)

// Kept is what cleanup keeps of a small queue file it committed, for the
// queue manager that delivers it: the file's bytes, so the envelope and
// the text come from memory, and the file itself left open, so a
// recipient is marked done and the file recycled without opening it by
// name again (two opens and closes, a read and a stat less per message).
//
// The open descriptors are bounded (keptMax per Spool): past that, a
// Kept has the bytes only, and the file is reached by name as before.
// Whoever holds a Kept closes it, or hands it on to Recycle.
type Kept struct {
	Image []byte // the whole file as written

	sp *Spool
	f  *os.File    // open read-write; nil when none is kept
	fi fs.FileInfo // as the file was named: its inode names it when reused
}

// keptMax bounds the descriptors of files kept open for the queue
// manager (beside the at most recycleMax in recycle/), well under the
// usual descriptor limit, so that clients are never refused for want of
// one.
const keptMax = 512

// MarkDone is MarkDone on the kept file when it is open, else on path.
func (k *Kept) MarkDone(path string, offset int64, sync bool) error {
	if k == nil || k.f == nil {
		return MarkDone(path, offset, sync)
	}
	return markDone(k.f, path, offset, sync)
}

// Close lets go of the kept file's descriptor, if any; k may be nil.
func (k *Kept) Close() {
	if k == nil || k.f == nil {
		return
	}
	k.f.Close()
	k.f = nil
	k.sp.kept.Add(-1)
}

// Open reports whether the file is kept open (for tests).
func (k *Kept) Open() bool { return k != nil && k.f != nil }
