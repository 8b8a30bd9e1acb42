package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"sluice/internal/config"
	"sluice/internal/local"
	"sluice/internal/pickup"
	"sluice/internal/privsep"
	"sluice/internal/spool"
)

// localDeliverHelp is the manual of the hidden local-deliver command.
const localDeliverHelp = `usage: sluice local-deliver -c config_dir   (not for users)

The local delivery agent of a privilege-separated sluice serve: the root
master runs it, as root, for each delivery the mail system (which runs
as mail_owner) hands over: the job (JSON: queue ID, sender, recipients)
on standard input, the queue file open read-only as descriptor 3 (the
job names its device and inode), and a
pipe as standard output, where it writes the results (JSON: one per
recipient, with its final deliveries, and the warnings for the mail log).
It reads main.cf from config_dir and delivers as the local(8) agent does
in the daemon itself: aliases, .forward files, mailboxes, files and
commands, each step with the identity of the user it is for, never as
root. Mail forwarded to addresses outside mydestination is written to
maildrop/ as sendmail writes it, and pickup queues it.

It refuses to run unless its effective user is root, descriptor 3 is a
regular file open read-only and standard output is a pipe. Exit status 0
when the results were written, 75 otherwise (the daemon then defers the
recipients).`

func runLocalDeliver(env *Env) int {
	opts, operands, err := Getopt(env.Args, "c:h")
	if err != nil || len(operands) > 0 {
		return env.Fatalf(exUsage, "usage: sluice local-deliver -c config_dir (run by sluice serve, not by users)")
	}
	dir := ""
	for _, o := range opts {
		switch o.Name {
		case 'c':
			dir = o.Arg
		case 'h':
			fmt.Fprintln(env.Stdout, localDeliverHelp)
			return 0
		}
	}
	if os.Geteuid() != 0 {
		return env.Fatalf(exTempFail, "local-deliver is run as root by the sluice serve master, not by users (effective uid %d)", os.Geteuid())
	}
	msg, err := inheritedFDs()
	if err != nil {
		return env.Fatalf(exTempFail, "%v (local-deliver is run by the sluice serve master, not by users)", err)
	}
	defer msg.Close()
	cfg, err := env.LoadConfig(dir)
	if err != nil {
		return env.Fatalf(exTempFail, "%v", err)
	}
	var job privsep.LocalJob
	dec := json.NewDecoder(io.LimitReader(env.Stdin, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&job); err != nil {
		return env.Fatalf(exTempFail, "malformed job: %v", err)
	}
	req := privsep.DeliveryRequest{QueueID: job.QueueID, Sender: job.Sender, Recipients: job.Recipients}
	if err := req.Check(); err != nil {
		return env.Fatalf(exTempFail, "malformed job: %v", err)
	}
	if id, err := privsep.FileIDOf(int(msg.Fd())); err != nil || id != job.Message {
		return env.Fatalf(exTempFail, "descriptor 3 is not the job's queue file (local-deliver is run by the sluice serve master, not by users)")
	}
	limit := job.TimeLimit
	if limit <= 0 || limit > privsep.MaxDeliveryTime {
		limit = privsep.MaxDeliveryTime
	}
	// Stop starting deliveries before the master's time limit, so the
	// results of those done still reach the daemon.
	ctx, cancel := context.WithTimeout(context.Background(), limit*9/10)
	defer cancel()
	out, err := localDeliver(ctx, cfg, &job, msg)
	if err != nil {
		return env.Fatalf(exTempFail, "%v", err)
	}
	if err := json.NewEncoder(env.Stdout).Encode(out); err != nil {
		return env.Fatalf(exTempFail, "write results: %v", err)
	}
	return 0
}

// inheritedFDs checks what the master passes: the queue file as fd 3,
// open read-only, and a pipe as standard output. (That descriptor 3 is
// the job's file is checked once the job is read: the Go runtime opens
// files of its own at the lowest free descriptors.)
func inheritedFDs() (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(3, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, errors.New("descriptor 3 is not the job's queue file")
	}
	if fl, _, e := syscall.Syscall(syscall.SYS_FCNTL, 3, syscall.F_GETFL, 0); e != 0 || fl&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, errors.New("the queue file is not open read-only")
	}
	if err := syscall.Fstat(1, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil, errors.New("standard output is not the results pipe")
	}
	syscall.CloseOnExec(3) // commands run for a delivery must not get it
	return os.NewFile(3, "queue file"), nil
}

// localDeliver delivers the queue file msg to job's recipients with the
// local agent cfg describes, and returns the results to report.
func localDeliver(ctx context.Context, cfg *config.Config, job *privsep.LocalJob, msg *os.File) (*privsep.LocalOutcome, error) {
	sp, err := OpenSpool(cfg)
	if err != nil {
		return nil, err
	}
	lc, err := local.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	limit, err := cfg.Int("message_size_limit")
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	out := &privsep.LocalOutcome{}
	lc.Warn = func(format string, args ...any) {
		mu.Lock()
		out.Warnings = append(out.Warnings, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	lc.Forward = func(ctx context.Context, sender string, rcpts []string, r io.Reader) (string, error) {
		return forwardByMaildrop(sp, sender, rcpts, r, limit)
	}
	agent, err := local.New(lc)
	if err != nil {
		return nil, err
	}
	m := &local.Message{
		QueueID: job.QueueID,
		Sender:  job.Sender,
		Open:    func() (io.ReadCloser, error) { return spool.ReadContent(msg) },
	}
	for _, rc := range job.Recipients {
		m.Recipients = append(m.Recipients, local.Recipient{Address: rc.Address, Orig: rc.Orig})
	}
	for _, lr := range agent.Deliver(ctx, m) {
		w := privsep.LocalResult{Status: lr.Status.String(), DSN: lr.DSN, Reason: lr.Reason}
		for _, f := range lr.Finals {
			w.Finals = append(w.Finals, privsep.LocalFinal{To: f.To, Status: f.Status.String(), DSN: f.DSN, Text: f.Text})
		}
		out.Results = append(out.Results, w)
	}
	return out, nil
}

// forwardByMaildrop queues a forwarded copy the way sendmail does: a
// maildrop file (this process is root and may write maildrop/), which
// pickup hands to cleanup; pickup is woken if it listens. The ID is the
// maildrop file's ("forwarded as ID"); pickup logs the queue ID it gets
// with "uid=0".
func forwardByMaildrop(sp *spool.Spool, sender string, rcpts []string, r io.Reader, limit int64) (string, error) {
	de := &pickup.DropEnvelope{Arrival: time.Now(), Sender: sender}
	for _, rc := range rcpts {
		de.Recipients = append(de.Recipients, pickup.DropRecipient{Address: rc})
	}
	newDrop := func(now time.Time) (dropSink, error) { return pickup.NewDrop(sp, now) }
	id, _, err := writeDrop(newDrop, de, r, false, false, limit)
	if err != nil {
		return "", err
	}
	_ = pickup.WakeDaemon(sp) // it also scans maildrop/ every second
	return id, nil
}
