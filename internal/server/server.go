// Package server is `sluice serve`: it reads the configuration and runs
// the whole mail system in one process — SMTP intake (smtpd), local
// submission (pickup of maildrop/), cleanup, the queue manager, the SMTP
// delivery client, bounces, the control socket and the mail log — on one
// spool.
//
// Start-up: the configuration is checked first (an unknown or malformed
// parameter stops the start), the queue directory is created when it is
// missing, pid/master.pid is written (tools use it to see a live daemon),
// then the queue manager moves active/ back to incoming/ and starts, and
// only then do the listeners open.
//
// Stop (SIGTERM, or the context ending): the listeners close first, so no
// new mail is accepted; sessions in progress get a moment to end; the
// queue manager gives deliveries in flight a few seconds and then
// abandons them — their files stay in active/ and go back to incoming/ at
// the next start; pid/master.pid is removed.
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
	"strconv"
	"sync"
	"time"

	"sluice/internal/bounce"
	"sluice/internal/cleanup"
	"sluice/internal/clock"
	"sluice/internal/config"
	"sluice/internal/maillog"
	"sluice/internal/qmgr"
	"sluice/internal/spool"
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
	// PIDHeld says the master holds pid/master.pid (package privsep).
	Listener func(addr string) (net.Listener, error)
	LogFile  *os.File
	PIDHeld  bool
}

// Server is a running mail system.
type Server struct {
	opt   Options
	set   *settings
	sp    *spool.Spool
	clk   clock.Clock
	log   *maillog.Logger
	logF  *os.File
	logW  *logWriter
	clean *cleanup.Cleanup
	qm    *qmgr.Manager
	in    *intake
	pidf  string
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
	s := &Server{opt: opt, set: set, clk: opt.Clock}
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
	if !s.opt.PIDHeld {
		if err := s.writePID(); err != nil {
			return nil, err
		}
	}
	s.log.Log("master", "daemon started -- version %s, configuration %s", Version, opt.Config.Dir)

	s.clean = cleanup.New(cleanup.Config{
		Spool: s.sp, MyHostname: set.myHostname, MyOrigin: set.myOrigin,
		MessageSizeLimit: set.sizeLimit, DelayWarningTime: set.delayWarning,
		Now: s.clk.Now, Log: s.log, CommitMethod: set.commit,
		Notify: func(id string) {
			if s.qm != nil {
				s.qm.Notify(id)
			}
		},
	})
	bouncer := bounce.New(bounce.Config{
		MyHostname: set.myHostname, Submit: s.submitNotice, Now: s.clk.Now,
		SizeLimit: set.bounceSize, MaxLifetime: set.maxLifetime, DelayWarning: set.delayWarning, Log: s.log,
	})
	deliverer, err := s.newDeliverer()
	if err != nil {
		return nil, err
	}
	s.qm, err = qmgr.New(qmgr.Config{
		Spool: s.sp, Clock: s.clk, Deliverer: deliverer, Notifier: bouncer, Log: s.log,
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
	})
	if err != nil {
		return nil, err
	}
	return s, nil
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

	in, err := s.startIntake()
	if err != nil {
		stopQ()
		<-qdone
		return err
	}
	s.in = in
	if s.opt.Ready != nil {
		s.opt.Ready(s)
	}
	select {
	case <-ctx.Done():
	case err := <-qdone:
		in.stop()
		return fmt.Errorf("queue manager stopped: %w", err)
	}
	in.stop()
	stopQ()
	qerr := <-qdone
	s.log.Log("master", "terminating on signal 15")
	return qerr
}

// Addrs returns the addresses the SMTP server listens on.
func (s *Server) Addrs() []net.Addr {
	if s.in == nil {
		return nil
	}
	return s.in.addrs()
}

// Queue returns the queue manager (for the control socket and tests).
func (s *Server) Queue() *qmgr.Manager { return s.qm }

// Spool returns the spool.
func (s *Server) Spool() *spool.Spool { return s.sp }

// submitNotice queues a bounce or delay notice from <> through cleanup.
func (s *Server) submitNotice(ctx context.Context, rcpt string, text []byte) (string, error) {
	return s.clean.Submit(ctx, &cleanup.Message{
		Sender:     "",
		Recipients: []cleanup.Recipient{{Address: rcpt}},
	}, bytes.NewReader(text))
}

// openLog opens the mail log: maillog_file (created with its directory)
// and the copy writer.
func (s *Server) openLog() error {
	var ws []io.Writer
	if s.opt.LogFile != nil {
		ws = append(ws, s.opt.LogFile)
	} else if f := s.set.maillogFile; f != "" {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return fmt.Errorf("mail log: %w", err)
		}
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("mail log: %w", err)
		}
		s.logF = lf
		ws = append(ws, lf)
	}
	if s.opt.LogCopy != nil {
		ws = append(ws, s.opt.LogCopy)
	}
	s.logW = newLogWriter(io.MultiWriter(ws...), logFlushInterval)
	s.log = maillog.New(s.logW, s.set.myHostname, s.set.syslogName, s.clk.Now)
	return nil
}

// logFlushInterval is how long a mail log line may wait in memory. A
// busy server writes its log in a few large writes instead of two system
// calls per line; tail -f sees lines at most this late.
const logFlushInterval = 100 * time.Millisecond

// logWriter buffers whole log lines and writes them out every interval
// (and when the buffer is large, and on Close).
type logWriter struct {
	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	stop  chan struct{}
	done  chan struct{}
	limit int
}

func newLogWriter(w io.Writer, every time.Duration) *logWriter {
	l := &logWriter{w: w, stop: make(chan struct{}), done: make(chan struct{}), limit: 64 << 10}
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				l.Flush()
				return
			case <-t.C:
				l.Flush()
			}
		}
	}()
	return l
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if len(l.buf) >= l.limit {
		l.flushLocked()
	}
	return len(p), nil
}

// Flush writes out what is buffered.
func (l *logWriter) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *logWriter) flushLocked() {
	if len(l.buf) == 0 {
		return
	}
	// The mail log must never stop mail; a failed write is dropped.
	_, _ = l.w.Write(l.buf)
	l.buf = l.buf[:0]
}

// Close flushes and stops the writer.
func (l *logWriter) Close() {
	close(l.stop)
	<-l.done
}

// writePID writes pid/master.pid as Postfix does (the number, right
// aligned, and a newline), refusing to start over a live daemon.
func (s *Server) writePID() error {
	path := filepath.Join(s.sp.Root, "pid", "master.pid")
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(b))); err == nil && pid > 0 && pid != os.Getpid() && alive(pid) {
			return fmt.Errorf("the mail system is already running (pid %d, %s)", pid, path)
		}
	}
	if err := os.WriteFile(path, []byte(fmt.Sprintf("%10d\n", os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	s.pidf = path
	return nil
}

func (s *Server) close() {
	if s.pidf != "" {
		if b, err := os.ReadFile(s.pidf); err == nil {
			if pid, _ := strconv.Atoi(string(bytes.TrimSpace(b))); pid == os.Getpid() {
				os.Remove(s.pidf)
			}
		}
	}
	if s.logW != nil {
		s.logW.Close()
	}
	if s.logF != nil {
		s.logF.Close()
	}
}

var errNotReady = errors.New("server: not ready")

// Submit queues a message through cleanup, as intake does.
func (s *Server) Submit(ctx context.Context, m *cleanup.Message, r io.Reader) (string, error) {
	return s.clean.Submit(ctx, m, r)
}
