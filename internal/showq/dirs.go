package showq

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sluice/internal/spool"
)

// dirMemo keeps what each queue directory listed, so that a listing
// reads again only the directories that changed since. Reading a
// directory of a hundred thousand names costs tens of milliseconds;
// looking at its status costs microseconds. Beside each name it keeps
// the digest of what that message's files gave when last read (see
// Lister); a new reading of a directory takes them over for the names
// still there.
//
// A directory's modification time changes with every name added,
// removed or renamed in it, but the kernel stamps it from a coarse clock:
// two changes within one tick leave the same time. So a reading is kept
// only when the directory's status, taken before the names were read,
// was at least settle old: any later change then stamps a newer time. A
// directory that changes all the time is read every time.
type dirMemo struct {
	mu    sync.Mutex
	dirs  map[string]*dirList // by path relative to the spool root
	epoch uint64              // see forget
}

// settle is how old a directory's modification must be before its
// reading is kept (well above any kernel timestamp granularity).
const settle = time.Second

// dirList is one reading of a directory: its names in directory order,
// all in one string.
type dirList struct {
	queue, rel string
	stamp      dirStamp
	settled    bool // the reading may be used again while stamp holds
	names      string
	// Item i is a name: names from item i-1's end to its own (the low
	// 30 bits of ends[i]), of the kind in the top two bits; digests[i]
	// is that of the message's listing when its files were last read,
	// 0 when none is known. 12 bytes a name: a million take 12 MB.
	ends    []uint32
	digests []atomic.Uint64
	epoch   atomic.Uint64 // the memo's epoch its digests belong to
}

const (
	kindShift = 30
	endMask   = 1<<kindShift - 1
)

func (d *dirList) len() int                      { return len(d.ends) }
func (d *dirList) kind(i int32) uint8            { return uint8(d.ends[i] >> kindShift) }
func (d *dirList) end(i int) uint32              { return d.ends[i] & endMask }
func (d *dirList) digest(i int32) *atomic.Uint64 { return &d.digests[i] }

const (
	itemSkip    uint8 = iota // not a queue ID
	itemFile                 // a queue ID where its ID puts it
	itemMisfile              // a queue ID elsewhere (showq does not list it)
	itemSubdir               // a hash subdirectory, walked
)

func (d *dirList) name(i int) string {
	start := uint32(0)
	if i > 0 {
		start = d.end(i - 1)
	}
	return d.names[start:d.end(i)]
}

// dirStamp is what a directory's status says of its contents.
type dirStamp struct {
	dev, ino, nlink uint64
	size            int64
	mtime, ctime    syscall.Timespec
}

func stampOf(st *syscall.Stat_t) dirStamp {
	return dirStamp{dev: uint64(st.Dev), ino: st.Ino, nlink: uint64(st.Nlink), size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// qentry is one candidate queue file of a listing: item i of dir.
type qentry struct {
	dir *dirList
	i   int32
}

func (e qentry) id() string { return e.dir.name(int(e.i)) }

// entry is e as the file reader takes it.
func (e qentry) entry() spool.Entry {
	id := e.id()
	return spool.Entry{Queue: e.dir.queue, ID: id, Rel: e.dir.rel + "/" + id}
}

// span is a stretch of a listing's entries in one directory reading:
// the file items among items lo to hi-1 of dir, n of them; item lo is
// the first.
type span struct {
	dir    *dirList
	lo, hi int32
	n      int
}

// each calls f with the span's entries in order.
func (s span) each(f func(qentry)) {
	for i := s.lo; i < s.hi; i++ {
		if k := s.dir.kind(i); k == itemFile || k == itemMisfile {
			f(qentry{dir: s.dir, i: i})
		}
	}
}

// list appends the entries of queue to out in raw directory order, as
// spans, walking hash subdirectories where they are met, as spool.List
// does. A listing holds its entries as spans of the readings kept here,
// not one by one: a million entries would take 16 MB.
func (m *dirMemo) list(sp *spool.Spool, queue string, out []span) ([]span, error) {
	return m.walk(sp, queue, queue, 0, out)
}

func (m *dirMemo) walk(sp *spool.Spool, queue, rel string, depth int, out []span) ([]span, error) {
	d, err := m.dir(sp, queue, rel)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || (depth > 0 && errors.Is(err, syscall.ENOTDIR)) {
			return out, nil
		}
		return out, fmt.Errorf("spool: scan %s: %w", rel, err)
	}
	open := false // out's last span is this directory's, and may grow
	for i := range d.len() {
		switch d.kind(int32(i)) {
		case itemSubdir:
			if depth >= 16 {
				continue
			}
			n := len(out)
			if out, err = m.walk(sp, queue, rel+"/"+d.name(i), depth+1, out); err != nil {
				return out, err
			}
			if len(out) > n {
				open = false
			}
		case itemFile, itemMisfile:
			if open {
				last := &out[len(out)-1]
				last.hi, last.n = int32(i+1), last.n+1
			} else {
				out = append(out, span{dir: d, lo: int32(i), hi: int32(i + 1), n: 1})
				open = true
			}
		}
	}
	return out, nil
}

// dir returns the reading of rel: the kept one when the directory has
// not changed, else a fresh one.
func (m *dirMemo) dir(sp *spool.Spool, queue, rel string) (*dirList, error) {
	path := sp.Root + "/" + rel
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return nil, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return nil, syscall.ENOTDIR
	}
	stamp := stampOf(&st)
	m.mu.Lock()
	old := m.dirs[rel]
	epoch := m.epoch
	m.mu.Unlock()
	if old != nil && old.settled && old.stamp == stamp && old.queue == queue {
		if old.epoch.Load() != epoch {
			old.forget(epoch)
		}
		return old, nil
	}
	d, err := readDir(sp, queue, rel)
	if err != nil {
		return nil, err
	}
	d.stamp = stamp
	d.epoch.Store(epoch)
	d.settled = time.Since(time.Unix(st.Mtim.Unix())) >= settle && time.Since(time.Unix(st.Ctim.Unix())) >= settle
	if old != nil && old.queue == queue && old.epoch.Load() == epoch {
		d.takeDigests(old)
	}
	m.mu.Lock()
	if m.dirs == nil {
		m.dirs = map[string]*dirList{}
	}
	m.dirs[rel] = d
	m.mu.Unlock()
	return d, nil
}

// forget drops every digest: a new epoch has begun (Lister.Write).
func (m *dirMemo) forget() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.epoch++
}

// forget drops d's digests, which belong to an epoch before epoch. Two
// listings may do it at once: both store zeros.
func (d *dirList) forget(epoch uint64) {
	for i := range d.digests {
		d.digests[i].Store(0)
	}
	d.epoch.Store(epoch)
}

// takeDigests takes over the digests old has for the names d still has.
func (d *dirList) takeDigests(old *dirList) {
	known := make(map[string]uint64, old.len())
	for i := range old.digests {
		if v := old.digests[i].Load(); v != 0 {
			known[old.name(i)] = v
		}
	}
	if len(known) == 0 {
		return
	}
	for i := range d.digests {
		if v, ok := known[d.name(i)]; ok {
			d.digests[i].Store(v)
		}
	}
}

// readDir reads the names of rel. A one-character name is looked at: a
// directory is a hash subdirectory, as Postfix's scanners have it.
func readDir(sp *spool.Spool, queue, rel string) (*dirList, error) {
	f, err := os.Open(sp.Root + "/" + rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := &dirList{queue: queue, rel: rel}
	var b []byte
	type item struct {
		end  uint32
		kind uint8
	}
	var items []item
	hashed := sp.Hashed(queue)
	for {
		names, err := f.Readdirnames(1024)
		for _, n := range names {
			b = append(b, n...)
			if len(b) > endMask {
				return nil, fmt.Errorf("spool: scan %s: more names than a listing holds", rel)
			}
			it := item{end: uint32(len(b))}
			switch {
			case len(n) == 1 && isDir(sp.Root+"/"+rel+"/"+n):
				it.kind = itemSubdir
			case !spool.ValidID(n):
				it.kind = itemSkip
			case hashed && sp.Dir(queue, n) != rel, !hashed && rel != queue:
				// showq opens a file by the path its queue and ID map
				// to, so one in the wrong hash directory, or in a
				// subdirectory of an unhashed queue, is not listed.
				it.kind = itemMisfile
			default:
				it.kind = itemFile
			}
			items = append(items, it)
		}
		if errors.Is(err, io.EOF) || len(names) == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	// Kept at their size: a reading lives as long as the directory
	// stays as it is.
	d.names = string(b)
	d.ends = make([]uint32, len(items))
	d.digests = make([]atomic.Uint64, len(items))
	for i, it := range items {
		d.ends[i] = it.end | uint32(it.kind)<<kindShift
	}
	return d, nil
}

func isDir(path string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(path, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFDIR
}
