// Package model is the live model of the queue that sluice serve keeps
// in memory: every message's envelope summary and each recipient's state,
// and the aggregates that mailq, qshape and "sluice queue summary" need,
// so that they answer without reading a file.
//
// # What it holds
//
// For every queue file in incoming/, active/, deferred/, hold/ and
// corrupt/: its queue, ID, size (the C record's message length), arrival
// (the T record, in seconds), sender, the force-expiry flag (g+x) and,
// in deferred/, the next attempt (the file's mtime). For each recipient:
// its address, whether it is done (a D record), and — for a pending one
// — the last reason, DSN status and reason class from the defer log, the
// number of attempts and the time of the last one (from the history log).
// A file in corrupt/ is held by ID only.
//
// Aggregates are kept as messages change: per queue the messages, pending
// recipients, bytes and the oldest arrival; qshape's domain × age counts
// for recipients and senders (see QShape); recipients and messages by
// reason class.
//
// # How it stays current
//
// Build scans the spool once, in parallel (spool.ForEach), while the
// daemon already accepts and delivers mail; until it ends, Loading is
// true and views should read the files. Afterwards the model changes only
// by events (package event), which cleanup and the queue manager publish
// after each change is on disk: no rescans in steady state. Events that
// arrive during a scan win over what the scan read of the same message.
//
// Reconcile compares the model with a fresh scan and fixes every
// difference: files changed behind the daemon's back (Postfix's
// postsuper, a hand edit, a crash between a change and its event). Each
// difference is logged and counted (Drift). It runs at start after
// Build, on demand (control socket) and every ReconcileEvery.
//
// The model mirrors the files exactly: the property test checks that
// after any sequence of intake, deliveries, actions and restarts the
// model equals a fresh scan of the spool.
package model

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"sluice/internal/event"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// Queues are the queues the model holds, in this order.
var Queues = [...]string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Corrupt}

const nQueues = len(Queues)

func queueIndex(q string) (uint8, bool) {
	for i, n := range Queues {
		if n == q {
			return uint8(i), true
		}
	}
	return 0, false
}

// Config is what a Model needs.
type Config struct {
	Spool *spool.Spool
	Now   func() time.Time // time.Now when nil
	Log   *maillog.Logger  // drift warnings; nil discards
	// Workers reading files in a scan; 0 means one per CPU.
	Workers int
	// Snapshot is the file the model is written to at a clean shutdown
	// (WriteSnapshot) and read from by the next first Build; "" for
	// none (snapshot.go).
	Snapshot string
}

// Model is the live model. Its methods are safe for concurrent use.
type Model struct {
	cfg Config

	// passMu lets one scan pass run at a time (Build, Reconcile).
	passMu sync.Mutex
	epoch  uint8 // the current pass's mark (msg.epoch)

	mu   sync.RWMutex
	msgs index
	syms symbols
	agg  aggregates
	// During a scan, the IDs events touched: the scan's reading of
	// them is older than the event and is not applied.
	scanning int
	touched  map[string]bool
	// bulk: the first Build is running and the aggregates are counted
	// at its end (Build); the messages it reads are allocated from slab.
	bulk bool
	slab slab
	// dirGens counts the changes to the messages of each queue
	// directory (by its path relative to the spool root): see DirGens.
	dirGens map[string]uint64

	bufs sync.Pool // *readBuf for the scan's workers

	loading atomic.Bool
	loaded  chan struct{}
	drift   atomic.Int64
	events  atomic.Int64
	// snapHits is how many messages the first Build took from the
	// snapshot as they were, -1 when it started from none.
	snapHits atomic.Int64
}

// msg is one queue file. Strings that repeat across messages (senders,
// domains, reasons, DSN codes) are symbols.
//
// Times are uint32 seconds (until 2106) and offsets uint32 (queue files
// are far below 4 GB): a message with two recipients takes about 250
// bytes with its map entry and strings, so a million fit in the memory
// the daemon may use.
type msg struct {
	id string
	// rp and nr are the recipients (rs): a pointer and a count take 12
	// bytes where a slice takes 24, 8 MB at a million messages.
	rp      *rcpt
	nr      uint32
	size    uint32 // queue files are far below 4 GB
	sender  sym
	sdom    sym    // the qshape domain of the sender
	arrival uint32 // seconds
	next    uint32 // seconds; deferred/ only
	queue   uint8
	forced  bool
	bare    bool  // in corrupt/ (or unreadable): nothing but the ID is known
	epoch   uint8 // the last scan pass that saw its file
}

// rs is x's recipients.
func (x *msg) rs() []rcpt { return unsafe.Slice(x.rp, x.nr) }

// setRcpts makes r x's recipients.
func (x *msg) setRcpts(r []rcpt) {
	x.rp, x.nr = unsafe.SliceData(r), uint32(len(r))
}

type rcpt struct {
	addr     string
	domain   sym // the qshape domain of addr
	reason   sym
	dsn      sym
	offset   uint32
	last     uint32 // seconds of the last attempt, 0 when none
	attempts uint16
	class    uint8 // index into classNames; 0: no reason yet
	done     bool
}

// New returns an empty model; call Build to fill it.
func New(cfg Config) *Model {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Model{cfg: cfg, msgs: newIndex(), loaded: make(chan struct{}), dirGens: map[string]uint64{}}
	m.bufs.New = func() any { return &readBuf{} }
	m.syms.init()
	m.agg.init()
	m.loading.Store(true)
	m.snapHits.Store(-1)
	return m
}

// Loading reports whether the first Build has not finished.
func (m *Model) Loading() bool { return m.loading.Load() }

// Loaded is closed when the first Build has finished.
func (m *Model) Loaded() <-chan struct{} { return m.loaded }

// SnapshotHits is how many messages the first Build took from a
// snapshot without reading their files; -1 when it started without one.
func (m *Model) SnapshotHits() int64 { return m.snapHits.Load() }

// Drift is how many differences between the model and the files
// reconcile passes have found and fixed.
func (m *Model) Drift() int64 { return m.drift.Load() }

// Events is how many events the model has applied.
func (m *Model) Events() int64 { return m.events.Load() }

// classNames are the reason classes; index 0 is "no reason yet".
var classNames = append([]string{""}, event.ClassNames()...)

func classIndex(c string) uint8 {
	for i, n := range classNames {
		if n == c {
			return uint8(i)
		}
	}
	return classIndex(event.ClassOther)
}

// qshapeDomain is the row name qshape gives an address (see package
// qshape): lower-cased, everything through the last '@' dropped, ".."
// made ".", one leading and one trailing dot removed; an empty address
// is MAILER-DAEMON.
func qshapeDomain(addr string) string {
	if addr == "" {
		return "MAILER-DAEMON"
	}
	d := addr
	if i := strings.LastIndexByte(d, '@'); i >= 0 {
		d = d[i+1:]
	}
	d = asciiLower(d)
	for strings.Contains(d, "..") {
		d = strings.ReplaceAll(d, "..", ".")
	}
	d = strings.TrimPrefix(d, ".")
	d = strings.TrimSuffix(d, ".")
	return d
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// symbols interns strings: a sym is an index into strs; 0 is "". Each
// holder of a sym owns a reference (get, retain) and gives it back
// (release), so the strings of messages that have gone are freed.
// Reasons may be capped (getCapped): a queue whose deferral reasons are
// nearly all different (a reply that names each message) would otherwise
// keep them all; past the cap a reason is left in the defer log
// (onDisk) and read from there when a message is shown.
type sym uint32

// onDisk marks a reason that the model does not keep.
const onDisk sym = 1<<32 - 1

// Reasons kept in memory are bounded by their bytes, not their number:
// a queue whose reasons are short and alike keeps them all, and one whose
// replies name each message (an IP address, a queue ID) keeps as many as
// fit in maxReasonBytes. Each counts its text plus reasonOverhead, what
// its string header, reference count and index entry take. 16 MiB holds
// about 96,000 reasons of 110 bytes. The bound is what a million
// messages leave of the daemon's memory (bench/model-daemon.sh): at
// 24 MiB a million messages whose reasons all differ took the daemon to
// 400 MB and its collector to a cycle every tenth of a second.
const (
	maxReasonBytes = 16 << 20
	reasonOverhead = 64
	maxReasons     = 1 << 22 // and a count, for tests to lower
)

type symbols struct {
	strs        []string
	refs        []int32
	idx         map[string]sym
	free        []sym
	reasons     int // distinct reason texts held
	reasonBytes int // their cost (text plus reasonOverhead each)
	limit       int // at most this many (maxReasons; tests lower it)
	byteLimit   int // costing at most this (maxReasonBytes)
	capped      []bool
}

func (s *symbols) init() {
	s.strs, s.refs, s.capped = []string{""}, []int32{1}, []bool{false}
	s.idx = map[string]sym{"": 0}
	s.limit, s.byteLimit = maxReasons, maxReasonBytes
}

func (s *symbols) get(str string) sym { return s.intern(str, false) }

// getCapped interns a reason, or returns onDisk when the reasons held
// are at their bound (maxReasonBytes).
func (s *symbols) getCapped(str string) sym { return s.intern(str, true) }

func (s *symbols) intern(str string, reason bool) sym {
	if str == "" {
		return 0
	}
	if v, ok := s.idx[str]; ok {
		s.refs[v]++
		return v
	}
	if reason {
		cost := len(str) + reasonOverhead
		if s.reasons >= s.limit || s.reasonBytes+cost > s.byteLimit {
			return onDisk
		}
		s.reasons++
		s.reasonBytes += cost
	}
	var v sym
	if n := len(s.free); n > 0 {
		v, s.free = s.free[n-1], s.free[:n-1]
		s.strs[v], s.refs[v], s.capped[v] = str, 1, reason
	} else {
		v = sym(len(s.strs))
		s.strs, s.refs, s.capped = append(s.strs, str), append(s.refs, 1), append(s.capped, reason)
	}
	s.idx[str] = v
	return v
}

// compact copies every string held into blocks of text. The first build
// interns its strings (senders, domains, reasons) one by one among the
// scan's garbage, so each ends up alone in a span that is otherwise
// free: at a million messages some fourteen megabytes the heap keeps and
// cannot use. Copied, they share a few blocks, and those spans are let
// go. Storing a string key again replaces the key the index holds, so
// the index is not made anew (which would cost its size once more).
func (s *symbols) compact() {
	var blocks slab
	for v, str := range s.strs {
		if str == "" {
			continue
		}
		str = blocks.copyStr(str)
		s.strs[v] = str
		s.idx[str] = sym(v)
	}
}

func (s *symbols) retain(v sym) {
	if v != 0 && v != onDisk {
		s.refs[v]++
	}
}

func (s *symbols) release(v sym) {
	if v == 0 || v == onDisk {
		return
	}
	if s.refs[v]--; s.refs[v] > 0 {
		return
	}
	delete(s.idx, s.strs[v])
	if s.capped[v] {
		s.reasons--
		s.reasonBytes -= len(s.strs[v]) + reasonOverhead
	}
	s.strs[v] = ""
	s.free = append(s.free, v)
}

func (s *symbols) str(v sym) string {
	if v == onDisk {
		return ""
	}
	return s.strs[v]
}

// drop gives back the references a message holds.
func (m *Model) drop(x *msg) {
	if x == nil {
		return
	}
	m.syms.release(x.sender)
	m.syms.release(x.sdom)
	for i := range x.rs() {
		r := &x.rs()[i]
		m.syms.release(r.domain)
		m.syms.release(r.reason)
		m.syms.release(r.dsn)
	}
}
