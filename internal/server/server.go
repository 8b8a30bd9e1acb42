// Package server is `sluice serve`: it reads the configuration and runs
// the whole mail system in one process — SMTP intake (smtpd), local
// submission (pickup of maildrop/), cleanup, the queue manager, the SMTP
// delivery client, bounces, the control socket and the mail log — on one
// spool. Its life follows Postfix's master.
//
// Start: the configuration is checked first (an unknown or malformed
// parameter stops the start), the queue directory is created when it is
// missing, and pid/master.pid is locked with flock(2) and holds our pid
// for the daemon's life. A second daemon on the spool finds the lock
// taken and stops with "fatal: the sluice mail system is already
// running"; a file left by a daemon that was killed holds no lock and
// blocks nothing, whatever process its pid now names. Under the lock,
// temporary files that killed processes left in the spool are removed
// (removeOrphans), "daemon started -- version V, configuration DIR" is
// logged, the queue manager moves active/ back to incoming/ and starts,
// and only then do the listeners open.
//
// Reload (Reload; SIGHUP): the new main.cf is checked, and a bad one is
// refused with the running configuration kept. A good one applies to new
// work only: new SMTP connections go to a new SMTP server (the listening
// sockets stay open; addresses added are opened, addresses removed are
// closed), while sessions in progress finish on the server they began on;
// the queue manager takes the new limits and relayhost without leaving
// its active queue, so deliveries in flight go on; new deliveries and
// bounces use the new settings; pickup restarts with the new cleanup; the
// mail log file is reopened (after a rotation, or at a new
// maillog_file). "reload -- version V, configuration DIR" is logged. The
// spool's shape (queue_directory, hash_queue_names, hash_queue_depth,
// enable_long_queue_ids) changes only at the next start, as Postfix's
// queue_directory does.
//
// Stop (SIGTERM, or the context ending): the sockets close first, so no
// new mail is accepted; sessions and deliveries in progress get
// sluice_shutdown_grace to end, then they are cut — a cut delivery's
// file stays in active/ and goes back to incoming/ at the next start;
// "terminating on signal 15" is logged and pid/master.pid is removed.
//
// The mail log is written in batches, but every line logged while a
// message was accepted is written to the log file before the client is
// told 250 (see maillog.Buffer), so a kill -9 loses no line of mail that
// was acknowledged.
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/internal/bounce"
	"sluice/internal/cleanup"
	"sluice/internal/clock"
	"sluice/internal/config"
	"sluice/internal/control"
	"sluice/internal/event"
	"sluice/internal/httpapi"
	"sluice/internal/local"
	"sluice/internal/maillog"
	"sluice/internal/metrics"
	"sluice/internal/model"
	"sluice/internal/privsep"
	"sluice/internal/qmgr"
	"sluice/internal/spool"
	"sluice/internal/suspend"
)

// Version is printed in the start and reload log lines.
const Version = "0.1"

// Options are what Run needs besides the configuration. Tests replace
// the clock, the DNS resolver and the delivery port.
type Options struct {
	Config *config.Config
	// LogCopy receives a copy of every mail log line (the command sets
	// standard error); nil for none.
	LogCopy  io.Writer
	Clock    clock.Clock   // clock.Real() when nil
	Resolver *net.Resolver // DNS for delivery; net.DefaultResolver when nil
	// SMTPPort is the port deliveries connect to (25 when 0); tests
	// point it at a fake server.
	SMTPPort int
	// Ready, when set, is called once the listeners are open.
	Ready func(*Server)
	// Listener, when set, returns the SMTP socket a root master opened
	// for a smtpd_listen address (nil: bind it here); LogFile the mail
	// log it opened, used instead of maillog_file and not closed here;
	// PIDHeld says the master holds the lock on pid/master.pid (package
	// privsep).
	Listener func(addr string) (net.Listener, error)
	LogFile  *os.File
	PIDHeld  bool
	// LocalMaster, when set, is the channel to a root master (package
	// privsep): local deliveries are handed to `sluice local-deliver`
	// through it instead of run in this process (local.go).
	LocalMaster *privsep.DeliveryClient
	// Users is the passwd table of local delivery; the system's
	// (/etc/passwd, /etc/group) when nil. Tests inject their own.
	Users local.Users
}

// Server is a running mail system.
type Server struct {
	opt Options
	sp  *spool.Spool
	clk clock.Clock
	// liveHeap is the live heap last measured (memory.go).
	liveHeap atomic.Uint64
	// memTuned: the daemon sets the soft memory limit (no GOMEMLIMIT);
	// listings counts the listings running (memory.go).
	memTuned atomic.Bool
	listings atomic.Int32
	log      *maillog.Logger
	logBuf   *maillog.Buffer
	pid      *spool.PIDLock
	qm       *qmgr.Manager
	// events joins what cleanup, the queue manager and bounce publish
	// to the mail log and the model.
	events *event.Bus
	model  *model.Model
	deliv  *smtpDeliverer
	local  atomic.Pointer[local.Agent]
	bounce atomic.Pointer[bounce.Bouncer]
	clean  atomic.Pointer[cleanup.Cleanup]
	self   atomic.Pointer[selfSet] // receiving endpoints, for loop detection
	// etrnBusy: an ETRN flush is scanning the deferred queue.
	etrnBusy atomic.Bool

	// mu orders Reload against start and stop, and guards what they
	// change.
	mu       sync.Mutex
	cfg      *config.Config
	set      *settings
	logF     *os.File
	ports    map[string]*port // by configured address
	gen      *smtpdGen        // the SMTP server taking new connections
	draining []*smtpdGen      // older ones finishing their sessions
	drains   sync.WaitGroup
	pick     *pickupRun
	ctl      *control.Server
	ctlDone  chan struct{}
	// showqLn is public/showq, for Postfix's postqueue (privsep.go).
	showqLn   net.Listener
	showqDone chan struct{}
	stopping  bool
	// http is the HTTP API and metrics listener (http.go); nil when off.
	http    *httpapi.Server
	metrics *prometheus.Registry
	susp    *suspend.Store // suspensions (suspend.go)
	// stream and stats are the event stream's ring and the metrics
	// (live.go).
	stream *httpapi.Ring
	stats  *metrics.Collector
}

// Run starts the mail system and runs it until ctx ends, then stops it
// cleanly. It returns an error when the start fails.
func Run(ctx context.Context, opt Options) error {
	s, err := start(opt)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

func start(opt Options) (_ *Server, err error) {
	set, err := load(opt.Config)
	if err != nil {
		return nil, err
	}
	s := &Server{opt: opt, set: set, cfg: opt.Config, clk: opt.Clock}
	if s.clk == nil {
		s.clk = clock.Real()
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.sp = set.spool()
	if err := s.sp.Create(); err != nil {
		return nil, err
	}
	if err := s.openLog(); err != nil {
		return nil, err
	}
	if !opt.PIDHeld {
		if s.pid, err = spool.LockPID(s.sp.Root); err != nil {
			s.log.Log("master", "fatal: %v", err) // close flushes it
			return nil, err
		}
	}
	s.events = &event.Bus{}
	s.events.Subscribe(s.log)
	s.model = model.New(model.Config{Spool: s.sp, Now: s.clk.Now, Log: s.log,
		Snapshot: filepath.Join(s.sp.Root, "private", modelSnapshotName)})
	s.subscribeLive()
	s.events.Subscribe(s.model)
	s.removeOrphans(s.clk.Now())
	if err := s.sp.EnableRecycling(); err != nil {
		// Files are then made and removed one each, as before.
		s.log.Warn("master", "%v", err)
	}
	s.log.Log("master", "daemon started -- version %s, configuration %s", Version, opt.Config.Dir)
	s.logBuf.Flush() // the master's lines are few and worth seeing at once

	s.clean.Store(s.newCleanup(set))
	s.bounce.Store(s.newBouncer(set))
	s.deliv = &smtpDeliverer{}
	s.deliv.swap(s.newSMTPClient(set))
	agent, err := s.newLocal(opt.Config)
	if err != nil {
		return nil, err
	}
	s.local.Store(agent)
	if err := s.openSuspensions(); err != nil {
		return nil, err
	}
	l := limits(set)
	s.qm, err = qmgr.New(qmgr.Config{
		Suspensions: s.susp,
		Spool:       s.sp, Clock: s.clk, Deliverer: &router{smtp: s.deliv, s: s}, Notifier: notifier{s}, Log: s.log, Events: s.events,
		Local:              func(addr string) bool { return s.local.Load().IsLocal(addr) },
		RelayHost:          l.RelayHost,
		ConcurrencyLimit:   l.ConcurrencyLimit,
		InitialConcurrency: l.InitialConcurrency,
		RecipientLimit:     l.RecipientLimit,
		ProcessLimit:       l.ProcessLimit,
		ActiveLimit:        l.ActiveLimit,
		QueueRunDelay:      l.QueueRunDelay,
		MinBackoff:         l.MinBackoff,
		MaxBackoff:         l.MaxBackoff,
		MaxLifetime:        l.MaxLifetime,
		BounceLifetime:     l.BounceLifetime,
		ShutdownGrace:      l.ShutdownGrace,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) newCleanup(set *settings) *cleanup.Cleanup {
	return cleanup.New(cleanup.Config{
		Spool: s.sp, MyHostname: set.myHostname, MyOrigin: set.myOrigin,
		MessageSizeLimit: set.sizeLimit, DelayWarningTime: set.delayWarning,
		HopcountLimit: set.hopLimit, Notifier: notifier{s},
		Now: s.clk.Now, Log: s.log, Events: s.events, CommitMethod: set.commit,
		Notify: func(id string, kept *spool.Kept) {
			if s.qm != nil {
				s.qm.NotifyNew(id, kept)
				return
			}
			kept.Close()
		},
	})
}

func (s *Server) newBouncer(set *settings) *bounce.Bouncer {
	return bounce.New(bounce.Config{
		MyHostname: set.myHostname, Submit: s.submitNotice, Now: s.clk.Now,
		SizeLimit: set.bounceSize, MaxLifetime: set.maxLifetime, DelayWarning: set.delayWarning, Log: s.log,
		Events: s.events,
	})
}

// notifier hands the queue manager's notices to the current bouncer.
type notifier struct{ s *Server }

func (n notifier) Send(ctx context.Context, r *bounce.Report) (string, error) {
	return n.s.bounce.Load().Send(ctx, r)
}

// limits are the queue manager's parameters from set.
func limits(set *settings) qmgr.Limits {
	return qmgr.Limits{
		RelayHost:          set.relayHost,
		ConcurrencyLimit:   set.concLimit,
		InitialConcurrency: set.initialConc,
		RecipientLimit:     set.rcptLimit,
		ProcessLimit:       set.processLimit,
		ActiveLimit:        set.activeLimit,
		QueueRunDelay:      zeroIsNone(set.queueRunDelay),
		MinBackoff:         zeroIsNone(set.minBackoff),
		MaxBackoff:         zeroIsNone(set.maxBackoff),
		MaxLifetime:        zeroIsNone(set.maxLifetime),
		BounceLifetime:     zeroIsNone(set.bounceLifetime),
		ShutdownGrace:      zeroIsNone(set.grace),
	}
}

// zeroIsNone maps a configured 0 to qmgr's "really zero" (negative);
// qmgr reads 0 as "use the default".
func zeroIsNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func (s *Server) run(ctx context.Context) error {
	defer s.close()
	qctx, stopQ := context.WithCancel(context.Background())
	defer stopQ()
	qdone := make(chan error, 1)
	go func() { qdone <- s.qm.Run(qctx) }()
	// Intake waits for the queue manager's recovery, which removes
	// unfinished files from incoming/: a message received meanwhile would
	// be one of them, removed after its 250.
	select {
	case <-s.qm.Ready():
	case err := <-qdone:
		return fmt.Errorf("queue manager: %w", err)
	}
	// The model loads while mail is accepted and delivered; until it
	// has, its answers say so (model.Loading).
	go s.tuneMemory(qctx)
	go s.runModel(qctx)
	go s.susp.Run(qctx)

	if err := s.startIntake(); err != nil {
		stopQ()
		<-qdone
		return err
	}
	s.setSelf(s.Addrs())
	if s.opt.Ready != nil {
		s.opt.Ready(s)
	}
	var qerr error
	select {
	case <-ctx.Done():
		qerr = s.stop(stopQ, qdone)
		if qerr == nil {
			// Nothing changes the spool any more: the model is what
			// the next start loads first (model/snapshot.go).
			start := time.Now()
			if n, err := s.model.WriteSnapshot(); err != nil {
				s.log.Warn("master", "%v", err)
			} else if n > 0 {
				s.log.Log("master", "wrote the queue model's snapshot of %d messages in %d ms", n, time.Since(start).Milliseconds())
			}
		}
	case qerr = <-qdone:
		qdone <- qerr
		s.stop(stopQ, qdone)
		qerr = fmt.Errorf("queue manager stopped: %w", qerr)
	}
	s.log.Log("master", "terminating on signal 15")
	return qerr
}

// modelSnapshotName is the model's snapshot in private/.
const modelSnapshotName = "sluice-model-snapshot"

// stop closes the sockets and pickup, gives SMTP sessions and deliveries
// in flight the grace time together, then cuts what is left.
func (s *Server) stop(stopQ context.CancelFunc, qdone chan error) error {
	s.mu.Lock()
	s.stopping = true
	grace := s.set.grace
	ports, gen, draining, pick := s.ports, s.gen, s.draining, s.pick
	s.ports, s.gen, s.draining, s.pick = nil, nil, nil, nil
	s.mu.Unlock()

	for _, p := range ports {
		p.close()
	}
	pick.stop()
	stopQ() // the queue manager waits up to the same grace (its ShutdownGrace)
	if gen != nil {
		s.drains.Add(1)
		go func() { defer s.drains.Done(); gen.drain(grace) }()
	}
	cutOld := time.AfterFunc(grace, func() {
		for _, g := range draining {
			g.cutNow()
		}
	})
	defer cutOld.Stop()
	qerr := <-qdone
	s.drains.Wait()
	s.stream.Close() // ends the event streams, which Shutdown would wait for
	if s.ctl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.ctl.Shutdown(ctx)
		cancel()
		<-s.ctlDone
	}
	if s.showqLn != nil {
		s.showqLn.Close()
		<-s.showqDone
	}
	s.stopHTTP()
	return qerr
}

// Reload applies a new configuration to the running system (see the
// package comment). On error nothing has changed.
func (s *Server) Reload(cfg *config.Config) error {
	set, err := load(cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || s.gen == nil {
		return errNotReady
	}
	for _, c := range []struct {
		name    string
		changed bool
	}{
		{"queue_directory", s.set.queueDir != set.queueDir},
		{"hash_queue_names", s.set.hashQueues != set.hashQueues},
		{"hash_queue_depth", s.set.hashDepth != set.hashDepth},
		{"enable_long_queue_ids", s.set.longIDs != set.longIDs},
	} {
		if c.changed {
			s.log.Warn("master", "%s changed: it takes effect at the next start (stop and start, not reload)", c.name)
		}
	}

	// Everything that can fail comes first.
	clean := s.newCleanup(set)
	agent, err := s.newLocal(cfg)
	if err != nil {
		return err
	}
	newPorts := map[string]*port{}
	var opened, ports []*port
	fail := func(err error) error {
		for _, p := range opened {
			p.close()
		}
		return err
	}
	for _, a := range set.listen {
		if newPorts[a] != nil {
			continue
		}
		p := s.ports[a]
		if p == nil {
			if p, err = s.openPort(a); err != nil {
				return fail(err)
			}
			opened = append(opened, p)
		}
		newPorts[a] = p
		ports = append(ports, p)
	}
	gen, err := s.newGen(cfg, set, clean, newPorts)
	if err != nil {
		return fail(err)
	}

	s.clean.Store(clean)
	s.bounce.Store(s.newBouncer(set))
	s.deliv.swap(s.newSMTPClient(set))
	s.local.Store(agent)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := s.qm.Reconfigure(ctx, limits(set)); err != nil {
		s.log.Warn("master", "queue manager: %v", err)
	}
	cancel()

	old := s.gen
	s.serveGen(gen, ports)
	s.gen = gen
	s.draining = append(s.draining, old)
	s.drains.Add(1)
	go func() {
		defer s.drains.Done()
		old.drain(old.timeout)
		s.mu.Lock()
		for i, g := range s.draining {
			if g == old {
				s.draining = append(s.draining[:i], s.draining[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	for a, p := range s.ports {
		if newPorts[a] == nil {
			p.close()
		}
	}
	s.ports = newPorts

	s.pick.stop()
	s.pick = s.startPickup(clean, cfg)

	prevSet := s.set
	s.set, s.cfg = set, cfg
	s.setSelf(s.addrsLocked())
	if err := s.reopenLog(); err != nil {
		s.set.maillogFile = prevSet.maillogFile
		s.log.Warn("master", "%v; still logging to the old file", err)
	}
	s.log.Log("master", "reload -- version %s, configuration %s", Version, cfg.Dir)
	s.logBuf.Flush()
	return nil
}

// Queue returns the queue manager (for the control socket and tests).
func (s *Server) Queue() *qmgr.Manager { return s.qm }

// Spool returns the spool.
func (s *Server) Spool() *spool.Spool { return s.sp }

// submitNotice queues a bounce or delay notice from <> through cleanup.
func (s *Server) submitNotice(ctx context.Context, rcpt string, text []byte) (string, error) {
	return s.clean.Load().Submit(ctx, &cleanup.Message{
		Sender:     "",
		Recipients: []cleanup.Recipient{{Address: rcpt}},
	}, bytes.NewReader(text))
}

// submitter is how SMTP sessions queue a message: through cleanup, then
// the mail log is flushed, so that every line logged while the message
// was accepted (its "client=" line, cleanup's lines) is in the log file
// before the 250 that the caller sends next.
func (s *Server) submitter(c *cleanup.Cleanup) func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
	return func(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
		id, err := c.Submit(ctx, m, r)
		if err == nil {
			s.logBuf.Flush()
		}
		return id, err
	}
}

// openLog opens the mail log: maillog_file (created with its directory)
// and the copy writer, behind one buffer.
func (s *Server) openLog() error {
	w, f, err := s.logOutput(s.set.maillogFile)
	if err != nil {
		return err
	}
	s.logF = f
	s.logBuf = maillog.NewBuffer(w, logFlushInterval)
	s.log = maillog.New(s.logBuf, s.set.myHostname, s.set.syslogName, s.clk.Now)
	return nil
}

// logOutput opens the log file path (none when empty) and joins it with
// the copy writer.
func (s *Server) logOutput(path string) (io.Writer, *os.File, error) {
	var ws []io.Writer
	var lf *os.File
	if s.opt.LogFile != nil {
		// The root master opened it (it may be where mail_owner cannot
		// open files); it stays for the process's life.
		ws = append(ws, s.opt.LogFile)
	} else if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, nil, fmt.Errorf("mail log: %w", err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("mail log: %w", err)
		}
		lf = f
		ws = append(ws, f)
	}
	if s.opt.LogCopy != nil {
		ws = append(ws, s.opt.LogCopy)
	}
	return io.MultiWriter(ws...), lf, nil
}

// reopenLog opens maillog_file anew (a rotation moved the old one away,
// or the name changed) and closes the old file. Called with mu held.
func (s *Server) reopenLog() error {
	w, f, err := s.logOutput(s.set.maillogFile)
	if err != nil {
		return err
	}
	s.logBuf.SetOutput(w)
	if s.logF != nil {
		s.logF.Close()
	}
	s.logF = f
	return nil
}

// logFlushInterval is how long a mail log line that precedes no
// acknowledgement may wait in memory. A busy server writes its log in a
// few large writes instead of one system call per line (at most one per
// interval); tail -f sees such lines at most this late.
const logFlushInterval = 10 * time.Millisecond

// close flushes and closes the mail log, then gives up the pid lock:
// the last thing, so that a new daemon starts only after this one's last
// line.
func (s *Server) close() {
	if s.logBuf != nil {
		s.logBuf.Close()
	}
	s.mu.Lock()
	if s.logF != nil {
		s.logF.Close()
		s.logF = nil
	}
	s.mu.Unlock()
	s.pid.Release()
	if s.sp != nil {
		s.sp.Close()
	}
}

var errNotReady = errors.New("server: not ready")

// Submit queues a message through cleanup, as an SMTP session does.
func (s *Server) Submit(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
	return s.submitter(s.clean.Load())(ctx, m, r)
}

// modelReconcileEvery is how often the model is compared with the files
// (in the background, one file at a time), to catch changes made behind
// the daemon's back.
const modelReconcileEvery = time.Hour

// runModel builds the model, then reconciles it periodically until ctx
// ends.
func (s *Server) runModel(ctx context.Context) {
	start := time.Now()
	if err := s.model.Build(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("master", "%v", err)
		}
		return
	}
	var n int64
	for _, q := range s.model.Summary().Queues {
		n += q.Messages
	}
	// No "word: " before the figures: log readers such as pflogsumm
	// take that for a queue ID and cut it off.
	how := "by a scan"
	if h := s.model.SnapshotHits(); h >= 0 {
		how = fmt.Sprintf("%d of them from the snapshot", h)
	}
	s.log.Log("master", "loaded the queue model of %d messages in %d ms, %s", n, time.Since(start).Milliseconds(), how)
	// The scan's garbage made the heap grow to twice what the model
	// keeps; give it back now rather than whenever the scavenger does.
	debug.FreeOSMemory()
	s.model.Run(ctx, modelReconcileEvery)
}
