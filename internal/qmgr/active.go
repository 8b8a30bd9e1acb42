package qmgr

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	evt "sluice/internal/event"
	"sluice/internal/spool"
)

// message is a queue file in active/ and what the manager knows of it.
type message struct {
	id       string
	path     string
	env      *spool.Envelope
	arrival  time.Time // T record: the delay in log lines counts from here
	activeAt time.Time
	// kept is the file as cleanup wrote it, for the delivery to read
	// the text from and mark recipients done in (NotifyNew); nil to
	// reach the file by name.
	kept      *spool.Kept
	forced    bool             // g+x: forced expiry
	past      bool             // may have logs from earlier attempts (see take)
	pending   int              // recipients pending when it was taken
	expireLog []spool.LogEntry // defer log of a force-expired message, read before it was deleted
	// suspendUntil: some recipients were deferred because of a
	// suspension that ends then (suspend.go); zero when none were.
	suspendUntil time.Time

	jobs     int  // deliveries queued or running
	sent     int  // recipients marked done this round
	deferred int  // recipients deferred this round
	bounced  int  // recipients bounced this round
	aborted  bool // a delivery was cut short by shutdown: leave the file in active/

	acquired  bool            // an action holds it: do not finish, wait for release
	finishing bool            // its finisher runs
	waiters   []chan struct{} // Acquire calls waiting for its deliveries to end
}

// take moves a batch of files into active/ and schedules them. from
// names the queue of each entry. Renames come first and the directories
// are synced once for the whole batch.
func (m *Manager) take(entries []spool.Entry) {
	type moved struct {
		e       spool.Entry
		forced  bool
		unthrot bool
		past    bool
		oldLog  []spool.LogEntry
		env     *spool.Envelope
		kept    *spool.Kept
	}
	var got []moved
	dirs := map[string]bool{}
	now := m.clk.Now()
	for _, e := range entries {
		if len(m.active) >= m.cfg.ActiveLimit {
			m.blocked = true
			break
		}
		if _, busy := m.active[e.ID]; busy || m.held[e.ID] > 0 {
			continue
		}
		keep, env := m.holdBack(e, now)
		if keep {
			continue
		}
		src := filepath.Join(m.sp.Root, e.Rel)
		fi, err := os.Lstat(src)
		if err != nil || !spool.IsReady(fi.Mode()) {
			continue // gone (postsuper, a flush) or still being written
		}
		kept := m.newImages[e.ID]
		if kept != nil {
			delete(m.newImages, e.ID)
			if e.Queue != spool.Incoming || fi.Size() != int64(len(kept.Image)) {
				// Not the file cleanup wrote.
				m.dropKept(kept)
				kept = nil
			}
		}
		dst := m.sp.Path(spool.Active, e.ID)
		if err := spool.Rename(src, dst); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				m.log.Warn("qmgr", "%s: move to active: %v", e.ID, err)
			}
			m.dropKept(kept)
			continue
		}
		dirs[filepath.Dir(src)] = true
		mv := moved{e: e, env: env, kept: kept, forced: spool.IsForcedExpire(fi.Mode()), unthrot: fi.Mode().Perm()&spool.ModeUnthrottle != 0}
		// A message may have logs from earlier attempts unless it comes
		// fresh from cleanup: in incoming/, not flushed back there from
		// deferred/ (flushing sets the unthrottle bit), not recovered
		// from active/ at start. Fresh messages skip the log unlinks.
		mv.past = e.Queue != spool.Incoming || mv.unthrot || mv.forced || m.recovered[e.ID]
		delete(m.recovered, e.ID)
		if mv.forced {
			// A force-expired message is returned with the reasons of
			// its last attempt, so read them before the log goes.
			mv.oldLog, _ = m.sp.ReadLog(spool.Defer, e.ID)
		}
		if mv.past {
			if err := m.sp.RemoveLog(spool.Defer, e.ID); err != nil {
				m.log.Warn("qmgr", "%s: %v", e.ID, err)
			}
		}
		if mv.unthrot {
			if err := clearModeBits(dst, spool.ModeUnthrottle); err != nil {
				m.log.Warn("qmgr", "%s: %v", e.ID, err)
			}
		}
		got = append(got, mv)
	}
	if len(got) == 0 {
		return
	}
	if !m.sp.NoSync {
		dirs[filepath.Join(m.sp.Root, spool.Active)] = true
		m.syncLater(dirs)
	}
	for _, mv := range got {
		m.activate(mv.e.ID, mv.e.Queue, mv.forced, mv.unthrot, mv.past, mv.oldLog, mv.env, mv.kept)
	}
}

// activate reads a file that is now in active/ and queues its deliveries.
// env is the envelope when take has read it already (renaming the file
// changes nothing in it), else nil; kept what cleanup kept of the file,
// else nil. The message owns kept and its image's share of imageBytes.
func (m *Manager) activate(id, from string, forced, unthrottle, past bool, oldLog []spool.LogEntry, env *spool.Envelope, kept *spool.Kept) {
	path := m.sp.Path(spool.Active, id)
	var err error
	switch {
	case env != nil:
	case kept != nil:
		env, err = spool.ReadEnvelope(spool.NewBytesReader(kept.Image), spool.ReadOptions{SkipContent: true})
	default:
		env, _, err = spool.ReadFile(path, spool.ReadOptions{SkipContent: true})
	}
	if err == nil {
		err = checkEnvelope(env)
	}
	if err != nil {
		m.dropKept(kept)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if errors.Is(err, spool.ErrCorrupt) {
			m.saveCorrupt(id, from, err)
			return
		}
		// An I/O error: leave the file in active/; it goes back to
		// incoming/ at the next start.
		m.log.Warn("qmgr", "%s: read queue file: %v", id, err)
		return
	}
	now := m.clk.Now()
	msg := &message{id: id, path: path, env: env, kept: kept, arrival: env.Arrival, activeAt: now, forced: forced, past: past, expireLog: oldLog}
	size := env.Size.ContentLen
	if size == 0 {
		size = env.Size.MessageLen
	}
	m.publish(activated(id, from, now, size, env, forced, past))
	m.active[id] = msg
	m.stats.active.Store(int64(len(m.active)))

	pending := env.Pending()
	msg.pending = len(pending)
	if forced || len(pending) == 0 {
		// Nothing to try: a force-expired message is not delivered
		// again; a message whose recipients are all done only needs
		// its bounce log flushed and the file removed.
		if forced {
			msg.deferred = len(pending)
		}
		m.startFinish(msg)
		return
	}
	pending, held := m.splitSuspended(msg, pending, now)
	for why, rs := range held {
		j := &job{msg: msg, dest: m.destination(m.nexthop(rs[0].Address)), rcpts: rs, suspended: why, suspendedDSN: suspendedDSN}
		msg.jobs++
		m.start(j)
	}
	sortRecipients(pending, m.nexthop)
	for start := 0; start < len(pending); {
		hop := m.nexthop(pending[start].Address)
		end := start + 1
		for end < len(pending) && end-start < m.cfg.RecipientLimit && m.nexthop(pending[end].Address) == hop {
			end++
		}
		d := m.destination(hop)
		if unthrottle {
			d.revive()
		}
		d.enqueue(&job{msg: msg, dest: d, rcpts: pending[start:end]})
		msg.jobs++
		if len(d.queue) == 1 {
			m.waiting = append(m.waiting, d)
		}
		start = end
	}
}

// checkEnvelope rejects files that lack what every queue file written
// by cleanup has.
func checkEnvelope(env *spool.Envelope) error {
	switch {
	case !env.HasSize:
		return errors.Join(spool.ErrCorrupt, errors.New("no size record"))
	case !env.HasSender:
		return errors.Join(spool.ErrCorrupt, errors.New("no sender record"))
	case !env.HasArrival:
		return errors.Join(spool.ErrCorrupt, errors.New("no arrival time record"))
	case env.ContentOffset < 0:
		return errors.Join(spool.ErrCorrupt, errors.New("no message content"))
	}
	return nil
}

// saveCorrupt moves an unreadable file from active/ to corrupt/. from
// is the queue it was taken from, for the event.
func (m *Manager) saveCorrupt(id, from string, why error) {
	m.log.Warn("qmgr", "%s: %v", id, why)
	m.log.Warn("qmgr", "saving corrupt file \"%s\" from queue \"%s\" to queue \"%s\"", id, spool.Active, spool.Corrupt)
	if err := m.sp.Move(id, spool.Active, spool.Corrupt); err != nil {
		m.log.Warn("qmgr", "%s: %v", id, err)
		return
	}
	m.publish(&evt.Corrupt{ID: id, From: from, Time: m.clk.Now(), Why: why.Error()})
}

// activated is the event of a message taken into active/.
func activated(id, from string, now time.Time, size int64, env *spool.Envelope, forced, logCleared bool) *evt.Activated {
	ev := &evt.Activated{
		ID: id, From: from, Time: now, Arrival: env.Arrival, Size: size, Nrcpt: env.Size.RcptCount,
		Sender: env.Sender, Forced: forced, LogCleared: logCleared,
		Recipients: make([]evt.Recipient, len(env.Recipients)),
	}
	for i, r := range env.Recipients {
		ev.Recipients[i] = evt.Recipient{Address: r.Address, Orig: r.Orig, Offset: r.Offset, Done: r.Done}
	}
	return ev
}

// LocalNexthop is the destination of local deliveries; no domain or
// relayhost can be named so.
const LocalNexthop = "local:"

// nexthop is where a recipient's mail goes: LocalNexthop, the relayhost,
// or the domain of the address (lower-cased).
func (m *Manager) nexthop(addr string) string {
	if m.cfg.Local != nil && m.cfg.Local(addr) {
		return LocalNexthop
	}
	if m.cfg.RelayHost != "" {
		return m.cfg.RelayHost
	}
	return strings.ToLower(domainOf(addr))
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return addr
}

// sortRecipients orders recipients as Postfix's qmgr does (reference
// §4.4): by next hop, then domain (case-insensitively; addresses without
// '@' last), then the whole address.
func sortRecipients(r []spool.Recipient, hop func(string) string) {
	sort.SliceStable(r, func(i, j int) bool {
		a, b := r[i].Address, r[j].Address
		if ha, hb := hop(a), hop(b); ha != hb {
			return ha < hb
		}
		ia, ib := strings.LastIndexByte(a, '@'), strings.LastIndexByte(b, '@')
		if (ia < 0) != (ib < 0) {
			return ib < 0
		}
		if ia >= 0 {
			if c := compareFold(a[ia+1:], b[ib+1:]); c != 0 {
				return c < 0
			}
		}
		return a < b
	})
}

// compareFold compares ASCII case-insensitively, as strcasecmp.
func compareFold(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := lower(a[i]), lower(b[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// messageGone forgets a message that has left active/.
func (m *Manager) messageGone(msg *message) {
	m.wg.Done()
	m.dropKept(msg.kept)
	msg.kept = nil
	for _, w := range msg.waiters {
		close(w)
	}
	msg.waiters = nil
	delete(m.active, msg.id)
	m.stats.active.Store(int64(len(m.active)))
	if !msg.suspendUntil.IsZero() {
		// Partly suspended: if it went to deferred/, take it when the
		// suspension ends rather than at the next scan after that.
		m.park(msg.id, spool.Deferred, msg.suspendUntil, false)
	}
	if m.blocked && len(m.active) < m.cfg.ActiveLimit {
		m.blocked = false
		m.scanIncoming()
		m.scanDeferred(false)
	}
}

func setModeBits(path string, bits fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Chmod(path, fi.Mode().Perm()|bits)
}

func clearModeBits(path string, bits fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.Chmod(path, fi.Mode().Perm()&^bits)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// imageBytes is the file as cleanup wrote it, nil when not kept.
func (msg *message) imageBytes() []byte {
	if msg.kept == nil {
		return nil
	}
	return msg.kept.Image
}
