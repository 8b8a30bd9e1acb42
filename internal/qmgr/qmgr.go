package qmgr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sluice/internal/bounce"
	"sluice/internal/clock"
	evt "sluice/internal/event"
	"sluice/internal/gopool"
	"sluice/internal/maillog"
	"sluice/internal/spool"
)

// Notifier sends delivery status notifications (bounce.Bouncer does).
type Notifier interface {
	Send(ctx context.Context, r *bounce.Report) (queueID string, err error)
}

// Config is what a Manager runs with. Zero durations and limits take
// Postfix's defaults.
type Config struct {
	Spool     *spool.Spool
	Clock     clock.Clock // clock.Real() when nil
	Deliverer Deliverer
	Notifier  Notifier // nil: no DSNs are sent (they are logged as lost)
	Log       *maillog.Logger
	// Events receives what happens to messages (package event): every
	// move between queues, every recipient's outcome, every removal.
	// The mail log's delivery lines come from these events: when Events
	// is nil they go to Log, otherwise Log must be one of Events'
	// subscribers.
	Events evt.Observer

	RelayHost string // relayhost: when set, the next hop of every recipient
	// Local, when set, says which recipients the local transport
	// delivers (mydestination): they go to the destination LocalNexthop,
	// never to the relayhost, and are logged by "local".
	Local func(addr string) bool

	ConcurrencyLimit   int // default_destination_concurrency_limit (20)
	InitialConcurrency int // initial_destination_concurrency (5)
	RecipientLimit     int // default_destination_recipient_limit (50)
	ProcessLimit       int // deliveries at once, all destinations (default_process_limit, 100)
	ActiveLimit        int // qmgr_message_active_limit (20000)

	QueueRunDelay     time.Duration // queue_run_delay (300s)
	MinBackoff        time.Duration // minimal_backoff_time (300s)
	MaxBackoff        time.Duration // maximal_backoff_time (4000s)
	MaxLifetime       time.Duration // maximal_queue_lifetime (5d); negative means 0
	BounceLifetime    time.Duration // bounce_queue_lifetime (5d); negative means 0
	ShutdownGrace     time.Duration // how long Run waits for deliveries after ctx ends (5s)
	SyncBeforeDefer   bool          // fsync a file before it goes to deferred/ (set by New unless NoSyncBeforeDefer)
	NoSyncBeforeDefer bool

	// Suspensions, when set, pause delivery of the mail they match
	// (suspend.go); call SuspensionsChanged when they change.
	Suspensions Suspensions
}

func (c *Config) defaults() {
	if c.Clock == nil {
		c.Clock = clock.Real()
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.ConcurrencyLimit, 20)
	def(&c.InitialConcurrency, 5)
	def(&c.RecipientLimit, 50)
	def(&c.ProcessLimit, 100)
	def(&c.ActiveLimit, 20000)
	if c.InitialConcurrency > c.ConcurrencyLimit {
		c.InitialConcurrency = c.ConcurrencyLimit
	}
	dur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		} else if *p < 0 {
			*p = 0
		}
	}
	dur(&c.QueueRunDelay, 300*time.Second)
	dur(&c.MinBackoff, 300*time.Second)
	dur(&c.MaxBackoff, 4000*time.Second)
	dur(&c.MaxLifetime, 5*24*time.Hour)
	dur(&c.BounceLifetime, 5*24*time.Hour)
	dur(&c.ShutdownGrace, 5*time.Second)
	if c.QueueRunDelay <= 0 {
		c.QueueRunDelay = time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	c.SyncBeforeDefer = !c.NoSyncBeforeDefer && !c.Spool.NoSync
}

// deliveryWorkers bounds the goroutines kept waiting for the next
// delivery (gopool).
const deliveryWorkers = 64

// Manager is the queue manager. Create it with New and run it with Run;
// the trigger methods may be called from any goroutine.
type Manager struct {
	cfg Config
	sp  *spool.Spool
	clk clock.Clock
	log *maillog.Logger

	// Triggers from other goroutines. wake is a one-slot channel, so any
	// number of triggers before the loop looks collapse into one.
	wake     chan struct{}
	trigMu   sync.Mutex
	notified []string // IDs cleanup put in incoming/
	// images are new files as cleanup wrote them (NotifyNew), by ID,
	// until the next take; imageBytes counts these and those of active
	// messages, within imageBudget.
	images     map[string]*spool.Kept
	imageBytes atomic.Int64
	scanIn     bool
	scanDefer  bool
	flushAll   bool
	unparkAll  bool

	ctl     chan func()   // work for the loop from other goroutines (Acquire)
	stopped chan struct{} // closed when Run returns
	// ready is closed once Run has recovered the spool (active/ back to
	// incoming/, unfinished files removed): from then on new files may
	// be written into incoming/ without being taken for crash debris.
	ready    chan struct{}
	done     chan *job     // deliveries that ended
	finished chan *message // messages whose last delivery ended and which left active/

	running atomic.Bool
	stats   struct {
		active, deliveries atomic.Int64
	}

	// Owned by the loop goroutine.
	active    map[string]*message
	dests     map[string]*destination
	waiting   []*destination // destinations with queued deliveries
	inFlight  int
	events    eventHeap
	timer     clock.Timer
	timerAt   time.Time
	jobCtx    context.Context
	wg        sync.WaitGroup  // deliveries and finishers
	blocked   bool            // the active limit stopped a scan; rescan when room is made
	held      map[string]int  // IDs acquired by actions: not taken while held
	workers   *gopool.Pool    // run the deliveries, on goroutines whose stacks have grown
	recovered map[string]bool // moved back from active/ at start

	parked map[string]parked // held back by suspensions (suspend.go)
	// newImages are the images of NotifyNew for the take that triggers
	// runs; take moves each one it uses to its message.
	newImages map[string]*spool.Kept

	// timesMu guards the backoff and lifetime limits in cfg, which
	// finish reads off the loop and Reconfigure changes; every other
	// field of cfg is read and written on the loop only.
	timesMu sync.RWMutex

	syncMu   sync.Mutex
	syncDirs map[string]bool // directories with renames not yet synced
	syncKick chan struct{}
}

// New returns a Manager; it does nothing until Run.
func New(cfg Config) (*Manager, error) {
	if cfg.Spool == nil {
		return nil, errors.New("qmgr: no spool")
	}
	if cfg.Deliverer == nil {
		return nil, errors.New("qmgr: no deliverer")
	}
	cfg.defaults()
	return &Manager{
		cfg:       cfg,
		sp:        cfg.Spool,
		clk:       cfg.Clock,
		log:       cfg.Log,
		wake:      make(chan struct{}, 1),
		ctl:       make(chan func()),
		stopped:   make(chan struct{}),
		ready:     make(chan struct{}),
		done:      make(chan *job, 256),
		finished:  make(chan *message, 256),
		active:    map[string]*message{},
		recovered: map[string]bool{},
		syncDirs:  map[string]bool{},
		syncKick:  make(chan struct{}, 1),
		dests:     map[string]*destination{},
		workers:   gopool.New(deliveryWorkers),
	}, nil
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Notify tells the manager that cleanup has put message id in incoming/.
// It is cleanup's Notify hook: cheaper than a scan, same effect.
func (m *Manager) Notify(id string) {
	m.trigMu.Lock()
	m.notified = append(m.notified, id)
	m.trigMu.Unlock()
	m.poke()
}

// imageBudget bounds the memory of the queue files kept as cleanup wrote
// them. Past it, new messages are read from their files, as before.
const imageBudget = 32 << 20

// NotifyNew is Notify with what cleanup kept of the file
// (spool.File.Kept), nil when it kept nothing: taking the message then
// reads its envelope, and the delivery its text, from memory rather
// than opening the file twice, and the file is marked and recycled
// through the descriptor kept open. The manager owns kept from here.
func (m *Manager) NotifyNew(id string, kept *spool.Kept) {
	if kept != nil && m.imageBytes.Add(int64(len(kept.Image))) <= imageBudget {
		m.trigMu.Lock()
		if m.images == nil {
			m.images = map[string]*spool.Kept{}
		}
		if old := m.images[id]; old != nil {
			m.dropKept(old)
		}
		m.images[id] = kept
		m.trigMu.Unlock()
	} else if kept != nil {
		m.imageBytes.Add(-int64(len(kept.Image)))
		kept.Close()
	}
	m.Notify(id)
}

// dropKept lets go of what cleanup kept of a file (nil: nothing): its
// share of imageBytes and its descriptor.
func (m *Manager) dropKept(k *spool.Kept) {
	if k == nil {
		return
	}
	m.imageBytes.Add(-int64(len(k.Image)))
	k.Close()
}

// Wake asks for a scan of incoming/ (Postfix's I trigger).
func (m *Manager) Wake() {
	m.trigMu.Lock()
	m.scanIn = true
	m.trigMu.Unlock()
	m.poke()
}

// FlushAll is postqueue -f: forget dead destinations and take every
// message in deferred/ (whatever its mtime) and incoming/ now.
func (m *Manager) FlushAll() {
	m.trigMu.Lock()
	m.flushAll, m.scanIn, m.scanDefer = true, true, true
	m.trigMu.Unlock()
	m.poke()
}

// FlushID is postqueue -i ID: deliver that message now, under the same
// ID. As Postfix's flush service does, it sets the file's time to now,
// sets the unthrottle bit (so its destinations are tried even if they are
// dead) and moves it from deferred/ to incoming/. A message already in
// incoming/ or active/ is left alone; one in hold/ stays on hold. It
// returns an error wrapping fs.ErrNotExist when id is in none of those.
func (m *Manager) FlushID(id string) error {
	q, err := m.sp.Locate(id, spool.Deferred, spool.Incoming, spool.Active, spool.Hold)
	if err != nil {
		return fmt.Errorf("qmgr: flush %s: %w", id, err)
	}
	now := m.clk.Now()
	switch q {
	case spool.Deferred:
		path := m.sp.Path(q, id)
		if err := m.sp.SetTimes(q, id, now); err != nil {
			return fmt.Errorf("qmgr: flush %s: %w", id, err)
		}
		if err := setModeBits(path, spool.ModeUnthrottle); err != nil {
			return fmt.Errorf("qmgr: flush %s: %w", id, err)
		}
		if err := m.sp.Move(id, spool.Deferred, spool.Incoming); err != nil {
			return fmt.Errorf("qmgr: flush %s: %w", id, err)
		}
		m.publish(&evt.Moved{ID: id, From: spool.Deferred, To: spool.Incoming, Time: now, Next: now})
		m.Notify(id)
	case spool.Incoming:
		if err := m.sp.SetTimes(q, id, now); err != nil {
			return fmt.Errorf("qmgr: flush %s: %w", id, err)
		}
		m.Notify(id)
	}
	return nil
}

// Stats are counts for monitoring and tests.
type Stats struct {
	Active     int // messages in the active queue
	Deliveries int // deliveries running now
}

// Stats returns the current counts.
func (m *Manager) Stats() Stats {
	return Stats{Active: int(m.stats.active.Load()), Deliveries: int(m.stats.deliveries.Load())}
}

// Run runs the manager until ctx ends: it first moves active/ back to
// incoming/, then scans incoming/ and deferred/, then serves triggers and
// timers. When ctx ends it starts no new delivery, gives running ones
// ShutdownGrace to end, then cancels them; messages not finished stay in
// active/ and return to incoming/ at the next start. Run returns nil after
// a clean stop.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("qmgr: already running")
	}
	defer close(m.stopped)
	defer m.running.Store(false)
	defer m.workers.Close()
	if err := m.recoverActive(); err != nil {
		return err
	}
	close(m.ready)
	jobCtx, cancelJobs := context.WithCancel(context.Background())
	defer cancelJobs()
	syncDone := make(chan struct{})
	go m.syncer(jobCtx, syncDone)
	defer func() { cancelJobs(); <-syncDone }()
	m.jobCtx = jobCtx
	m.timer = m.clk.NewTimer(time.Hour)
	m.timer.Stop()
	m.scheduleScan(m.clk.Now().Add(m.cfg.QueueRunDelay))
	m.scanIncoming()
	m.scanDeferred(false)
	m.dispatch()
	for {
		m.armTimer()
		select {
		case <-ctx.Done():
			return m.shutdown(cancelJobs)
		case <-m.wake:
			m.triggers()
		case <-m.timer.C():
			m.timerAt = time.Time{}
			m.runEvents()
		case j := <-m.done:
			m.jobDone(j)
		case msg := <-m.finished:
			m.messageGone(msg)
		case f := <-m.ctl:
			f()
		}
		m.dispatch()
	}
}

// Ready is closed once Run has recovered the spool from the last
// process's end. SMTP intake and pickup must wait for it: the recovery
// removes unfinished files from incoming/, and a message being received
// meanwhile is an unfinished file until it is committed.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// triggers handles what Notify, Wake and the Flush calls asked for.
func (m *Manager) triggers() {
	m.trigMu.Lock()
	ids := m.notified
	m.notified = nil
	images := m.images
	m.images = nil
	scanIn, scanDefer, flush, susp := m.scanIn, m.scanDefer, m.flushAll, m.unparkAll
	m.scanIn, m.scanDefer, m.flushAll, m.unparkAll = false, false, false, false
	m.trigMu.Unlock()
	if susp {
		m.unpark(m.clk.Now(), true)
	}
	if flush {
		for _, d := range m.dests {
			d.revive()
		}
	}
	m.newImages = images
	if scanIn {
		m.scanIncoming()
	} else if len(ids) > 0 {
		m.takeIncoming(ids)
	}
	// Images the take did not use (a message it could not take now) are
	// let go: that message is read from its file when it is taken.
	for _, k := range m.newImages {
		m.dropKept(k)
	}
	m.newImages = nil
	if scanDefer {
		m.scanDeferred(flush)
	}
}

// shutdown waits for running deliveries, then cancels those that are
// still running after the grace time, and waits for them to end.
func (m *Manager) shutdown(cancel context.CancelFunc) error {
	grace := time.NewTimer(m.cfg.ShutdownGrace)
	defer grace.Stop()
	allDone := make(chan struct{})
	go func() { m.wg.Wait(); close(allDone) }()
	for {
		select {
		case <-allDone:
			return nil
		case <-grace.C:
			cancel()
		case j := <-m.done:
			m.jobEnded(j)
		case msg := <-m.finished:
			m.messageGone(msg)
		case f := <-m.ctl:
			f()
		}
	}
}

// FlushSite is postqueue -s SITE: every deferred message with a pending
// recipient whose next hop is site is made due now (as FlushID). It
// returns how many were flushed.
func (m *Manager) FlushSite(site string) (int, error) {
	entries, err := m.sp.List(spool.Deferred)
	if err != nil {
		return 0, fmt.Errorf("qmgr: flush %s: %w", site, err)
	}
	site = strings.ToLower(strings.TrimSuffix(site, "."))
	n := 0
	for _, e := range entries {
		env, _, err := spool.ReadFile(m.sp.Path(spool.Deferred, e.ID), spool.ReadOptions{SkipContent: true})
		if err != nil {
			continue
		}
		for _, r := range env.Pending() {
			if m.nexthop(r.Address) == site || strings.ToLower(domainOf(r.Address)) == site {
				if m.FlushID(e.ID) == nil {
					n++
				}
				break
			}
		}
	}
	return n, nil
}

// syncLater asks the syncer to sync dirs. Moves into active/ need no
// sync before delivery (after a crash the file is found in incoming/ or
// active/, and both are retried), so the syncs run off the loop, a batch
// at a time, instead of between a message's arrival and its delivery.
func (m *Manager) syncLater(dirs map[string]bool) {
	m.syncMu.Lock()
	for d := range dirs {
		m.syncDirs[d] = true
	}
	m.syncMu.Unlock()
	select {
	case m.syncKick <- struct{}{}:
	default:
	}
}

// syncInterval spaces the syncer's rounds: each directory sync is a
// journal commit that the fsyncs of arriving mail (which must happen
// before their 250) would otherwise queue behind.
const syncInterval = 500 * time.Millisecond

func (m *Manager) syncer(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			m.syncPending()
			return
		case <-m.syncKick:
			m.syncPending()
		}
		select {
		case <-ctx.Done():
			m.syncPending()
			return
		case <-time.After(syncInterval):
		}
	}
}

func (m *Manager) syncPending() {
	m.syncMu.Lock()
	dirs := m.syncDirs
	m.syncDirs = map[string]bool{}
	m.syncMu.Unlock()
	for d := range dirs {
		if err := syncDir(d); err != nil {
			m.log.Warn("qmgr", "%v", err)
		}
	}
}

// publish passes e to the subscribers, or to the mail log alone when
// the Manager has none.
func (m *Manager) publish(e evt.Event) {
	if m.cfg.Events != nil {
		m.cfg.Events.Observe(e)
		return
	}
	m.log.Observe(e)
}
