package showq

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A Lister keeps what it rendered of each queue directory, as a segment:
// a sealed memory file (memfd) holding that directory's part of the
// listing in one format. While the directory has not changed (the same
// reading of it, see dirMemo), the model has changed none of its messages
// (model.DirGens) and no scan pass has begun (model.ListingEpoch), the
// next listing in that format takes the segment as it is instead of
// rendering the directory again. So a listing of a queue that did not
// change costs a look at the directories' status, and one after a few
// changes renders only the directories they were in.
//
// A message read from its file (not in the model, damaged, its digest
// not known yet, or one the model cannot show as its files do) is a hole
// in the segment: it is read again at each listing and its rendering put
// in its place, as every such message is read at each listing. A
// directory with many (an eighth of its messages) is not kept, nor
// maildrop/, which the model does not hold.
//
// A segment is a file, not a byte slice, so that the control socket can
// pass it to the tool as it is (SCM_RIGHTS), and the tool copy it to its
// standard output with sendfile(2): the listing is not copied through
// the socket, nor through the daemon's heap. Its pages are shared
// memory; the segments' bytes are bounded by the Lister's cache limit
// (SetCacheLimit), which the daemon derives from its heap (see
// server.listingCacheLimit). A segment is sealed (F_SEAL_WRITE and the
// rest) before anyone sees it: nobody, the daemon included, can change
// it afterwards.

// SegmentWriter is a writer that takes part of a file as it is: the
// control socket passes the file on.
type SegmentWriter interface {
	WriteSegment(f *os.File, off, n int64) error
}

// segment is one directory's rendering in one format.
type segment struct {
	f            *os.File
	size         int64
	count, bytes int64 // messages and their sizes, for the trailer
	// holes are the messages read from their files, in order: each is
	// read again, and its rendering put at its offset.
	holes []hole

	// What it was made from; see segmentCache.get.
	dir    *dirList
	first  int32 // the first entry's item in dir
	n      int   // entries
	gen    uint64
	epoch  uint64 // dir.epoch
	mepoch uint8  // the model's ListingEpoch
	used   uint64 // the listing that last took it (for eviction)

	// Listings writing it now; a dropped segment's file is closed
	// when the last of them is done (segmentCache.release).
	refs    int
	dropped bool
}

// hole is where a message read from its file goes in a segment.
type hole struct {
	at int64
	e  qentry
}

// segKey names a segment: the format and the run of entries.
type segKey struct {
	format string
	rel    string
	first  int32
}

// segmentCache holds the segments, up to a limit on their bytes.
type segmentCache struct {
	mu    sync.Mutex
	segs  map[segKey]*segment
	bytes int64
	seq   uint64 // listings so far
	limit func() int64
	hits  atomic.Int64
}

// defaultCacheLimit is a Lister's bound on its segments' bytes until
// SetCacheLimit says otherwise.
const defaultCacheLimit = 64 << 20

// SetCacheLimit sets the bound on the bytes of the kept renderings (the
// segments): limit is asked each time a segment would be kept, and 0 or
// less keeps none (those kept are dropped as they are met).
func (l *Lister) SetCacheLimit(limit func() int64) {
	l.cache.mu.Lock()
	defer l.cache.mu.Unlock()
	l.cache.limit = limit
}

// CacheStats returns how many directories' renderings were taken as
// kept, over the Lister's life, and the bytes kept now.
func (l *Lister) CacheStats() (hits, bytes int64) {
	l.cache.mu.Lock()
	defer l.cache.mu.Unlock()
	return l.cache.hits.Load(), l.cache.bytes
}

func (c *segmentCache) limitNow() int64 {
	if c.limit == nil {
		return defaultCacheLimit
	}
	return c.limit()
}

// room reports whether renderings may be kept now.
func (c *segmentCache) room() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.limitNow() > 0
}

// begin starts a listing: its sequence number.
func (c *segmentCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return c.seq
}

// get returns the segment of k when it was made from what the listing
// now has, and marks it used by listing seq; a segment that no longer
// holds is dropped.
func (c *segmentCache) get(k segKey, r *run, gen uint64, mepoch uint8, seq uint64) *segment {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.segs[k]
	if s == nil {
		return nil
	}
	if s.dir != r.dir || s.first != r.lo || s.n != r.n || s.gen != gen ||
		s.epoch != r.dir.epoch.Load() || s.mepoch != mepoch || c.limitNow() <= 0 {
		c.drop(k, s)
		return nil
	}
	s.used = seq
	s.refs++
	c.hits.Add(1)
	return s
}

// release ends a listing's use of s (taken by get).
func (c *segmentCache) release(s *segment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refs--
	if s.dropped && s.refs == 0 {
		s.f.Close()
	}
}

// put keeps s under k when the limit allows, dropping segments not used
// by listing seq, oldest first, to make room; it closes s when it is not
// kept.
func (c *segmentCache) put(k segKey, s *segment, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.segs[k]; old != nil {
		c.drop(k, old)
	}
	limit := c.limitNow()
	for c.bytes+s.size > limit {
		var oldest *segment
		var ok segKey
		for k2, s2 := range c.segs {
			if s2.used != seq && (oldest == nil || s2.used < oldest.used) {
				oldest, ok = s2, k2
			}
		}
		if oldest == nil {
			s.f.Close()
			return
		}
		c.drop(ok, oldest)
	}
	if c.segs == nil {
		c.segs = map[segKey]*segment{}
	}
	s.used = seq
	c.segs[k] = s
	c.bytes += s.size
}

// drop forgets a segment. Its file is closed now, or when the listings
// writing it are done; a tool that received it has its own descriptor.
func (c *segmentCache) drop(k segKey, s *segment) {
	delete(c.segs, k)
	c.bytes -= s.size
	s.dropped = true
	if s.refs == 0 {
		s.f.Close()
	}
}

// segmentFile is a memory file being filled with a rendering.
type segmentFile struct {
	f   *os.File
	n   int64
	err error
}

// newSegmentFile creates the memory file; nil when the system gives none
// (the listing is then not kept).
func newSegmentFile() *segmentFile {
	fd, err := unix.MemfdCreate("sluice-listing", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil
	}
	return &segmentFile{f: os.NewFile(uintptr(fd), "sluice-listing")}
}

func (s *segmentFile) write(p []byte) {
	if s.err != nil {
		return
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	s.err = err
}

// seal ends the filling: the file can no longer change, nor be written
// to, by anyone.
func (s *segmentFile) seal() error {
	if s.err != nil {
		return s.err
	}
	const all = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(s.f.Fd(), unix.F_ADD_SEALS, all); err != nil {
		return fmt.Errorf("seal listing segment: %w", err)
	}
	return nil
}

func (s *segmentFile) discard() { s.f.Close() }

// close discards s, if any: a listing that failed.
func (s *segmentFile) close() {
	if s != nil {
		s.discard()
	}
}

// writeSegment writes bytes [off, end) of s's file to w: as a segment
// when w takes them so, else copied.
func writeSegment(w io.Writer, s *segment, off, end int64) error {
	n := end - off
	if n <= 0 {
		return nil
	}
	if sw, ok := w.(SegmentWriter); ok {
		return sw.WriteSegment(s.f, off, n)
	}
	_, err := io.Copy(w, io.NewSectionReader(s.f, off, n))
	return err
}
