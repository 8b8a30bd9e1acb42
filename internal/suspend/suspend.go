// Package suspend keeps the queue's suspensions: pauses of delivery for
// the mail a selector picks, each with an end, as KumoMTA's suspensions.
//
// A suspension is a selector (package manage's language), a reason and
// an end time. While it lasts the queue manager delivers nothing that it
// matches, and this holds for mail that arrives later too. Matching is
// per recipient, at scheduling time, over what is known then: the keys
// id, sender, sender_ci, sender_domain, rcpt, rcpt_ci, domain, size and
// age (keys that describe the queue's state — queue, reason, class,
// attempts, rcpts — are refused: they change as the queue manager works
// and would make a suspension's meaning drift). For a recipient the
// selector sees the message with that recipient alone, so
// "domain=*.example.com" suspends the example.com recipients of a message
// and not its others.
//
// What the queue manager does with that (package qmgr): a message whose
// pending recipients are all suspended is not taken at all, its file not
// touched; a message with some suspended recipients has the others
// delivered and the suspended ones deferred ("delivery temporarily
// suspended"), its next attempt no later than the suspension's end.
//
// Suspensions end on their own: at its end a suspension is removed, the
// mail log says "suspension N ended" and the queue manager is told, so
// the mail it held becomes due at once. Resuming one ends it early.
//
// The set is kept in $queue_directory/private/sluice-suspensions.json,
// written whole after every change (a temporary file, fsync, rename,
// fsync of the directory), so suspensions survive a restart and a crash
// leaves the old set or the new one. The daemon owns the file while it
// runs; without a daemon the tools edit it (root and the mail owner
// only, as every change to the queue).
package suspend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"sluice/internal/audit"
	"sluice/internal/clock"
	"sluice/internal/maillog"
	"sluice/internal/manage"
	"sluice/internal/spool"
)

// FileName is the file's path relative to the queue directory.
const FileName = "private/sluice-suspensions.json"

// Path is the suspensions file of the spool at queueDir.
func Path(queueDir string) string { return filepath.Join(queueDir, FileName) }

// ErrNotFound is the error for a suspension ID that is not (or no
// longer) in force.
var ErrNotFound = errors.New("no such suspension")

// Suspension is one pause of delivery.
type Suspension struct {
	ID       int64     `json:"id"`
	Selector string    `json:"selector"`
	Reason   string    `json:"reason,omitempty"`
	Created  time.Time `json:"created"`
	Until    time.Time `json:"until"`
	User     string    `json:"user,omitempty"` // who made it (audit.Entry's User)

	sel *manage.Selector
}

// Keys a suspension's selector may use: what is known of a message when
// it is scheduled and does not change while it waits.
var allowedKeys = map[string]bool{
	"id": true, "sender": true, "sender_ci": true, "sender_domain": true,
	"rcpt": true, "rcpt_ci": true, "domain": true, "size": true, "age": true,
}

// ParseSelector parses a suspension's selector: manage's language, the
// scheduling-time keys only, and not empty (a suspension of everything
// is spelled domain=*).
func ParseSelector(text string) (*manage.Selector, error) {
	sel, err := manage.ParseSelector(text)
	if err != nil {
		return nil, err
	}
	if sel.Empty() {
		return nil, errors.New("suspend: empty selector (to suspend all delivery, say domain=*)")
	}
	for _, t := range sel.Terms {
		if !allowedKeys[t.Key] {
			return nil, fmt.Errorf("suspend: %q: a suspension cannot select by %s (keys: id sender sender_ci sender_domain rcpt rcpt_ci domain size age)", t.Text, t.Key)
		}
	}
	return sel, nil
}

// Config is what a Store runs with.
type Config struct {
	Path  string      // the suspensions file (Path(queue_directory))
	Clock clock.Clock // clock.Real() when nil
	Log   *maillog.Logger
	// AuditPath, when set, is the audit log the ends of suspensions are
	// written to (the changes asked for are audited by the interface
	// that asked).
	AuditPath string
	// OnChange is called (not under the store's lock) after every
	// change to the set: the queue manager looks at the mail it held.
	OnChange func()
	NoSync   bool // skip fsyncs (tests)
}

// Store is the set of suspensions in force. Its methods may be called
// from any goroutine.
type Store struct {
	cfg  Config
	mu   sync.Mutex
	list []*Suspension // sorted by ID
	next int64
	kick chan struct{}
}

// file is the on-disk form.
type file struct {
	NextID      int64         `json:"next_id"`
	Suspensions []*Suspension `json:"suspensions"`
}

// Open loads the suspensions file (none yet is an empty set). The
// suspensions that ended while nothing ran are dropped, each logged as
// ended.
func Open(cfg Config) (*Store, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	s := &Store{cfg: cfg, next: 1, kick: make(chan struct{}, 1)}
	b, err := os.ReadFile(cfg.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("suspend: %w", err)
	}
	if err == nil {
		var f file
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("suspend: %s: %w", cfg.Path, err)
		}
		for _, x := range f.Suspensions {
			sel, err := ParseSelector(x.Selector)
			if err != nil {
				return nil, fmt.Errorf("suspend: %s: suspension %d: %w", cfg.Path, x.ID, err)
			}
			x.sel = sel
			s.list = append(s.list, x)
			s.next = max(s.next, x.ID+1)
		}
		s.next = max(s.next, f.NextID)
		sort.Slice(s.list, func(i, j int) bool { return s.list[i].ID < s.list[j].ID })
	}
	if ended := s.endDue(); len(ended) > 0 {
		if err := s.save(); err != nil {
			return nil, err
		}
		s.reportEnded(ended)
	}
	return s, nil
}

// Add makes a suspension of the mail sel picks for d from now.
func (s *Store) Add(selector, reason string, d time.Duration, user string) (Suspension, error) {
	sel, err := ParseSelector(selector)
	if err != nil {
		return Suspension{}, err
	}
	if d <= 0 {
		return Suspension{}, errors.New("suspend: the duration must be positive")
	}
	now := s.cfg.Clock.Now()
	s.mu.Lock()
	x := &Suspension{ID: s.next, Selector: sel.String(), Reason: reason, Created: now.UTC(), Until: now.Add(d).UTC(), User: user, sel: sel}
	s.next++
	s.list = append(s.list, x)
	if err := s.save(); err != nil {
		s.list = s.list[:len(s.list)-1]
		s.next--
		s.mu.Unlock()
		return Suspension{}, err
	}
	out := *x
	s.mu.Unlock()
	s.cfg.Log.Log("qmgr", "suspension %d: delivery suspended for %s until %s: %s%s", x.ID, sel, x.Until.Format(time.RFC3339), d, reasonSuffix(reason))
	s.changed()
	return out, nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}

// Resume ends suspension id now.
func (s *Store) Resume(id int64) (Suspension, error) {
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	i := s.index(id)
	if i < 0 || !now.Before(s.list[i].Until) {
		s.mu.Unlock()
		return Suspension{}, fmt.Errorf("suspend: suspension %d: %w", id, ErrNotFound)
	}
	old := s.list
	x := s.list[i]
	s.list = append(append([]*Suspension(nil), s.list[:i]...), s.list[i+1:]...)
	if err := s.save(); err != nil {
		s.list = old
		s.mu.Unlock()
		return Suspension{}, err
	}
	s.mu.Unlock()
	s.cfg.Log.Log("qmgr", "suspension %d resumed: delivery for %s goes on", x.ID, x.Selector)
	s.changed()
	return *x, nil
}

// ResumeAll ends every suspension now and returns them.
func (s *Store) ResumeAll() ([]Suspension, error) {
	s.mu.Lock()
	old := s.list
	s.list = nil
	if err := s.save(); err != nil {
		s.list = old
		s.mu.Unlock()
		return nil, err
	}
	s.mu.Unlock()
	now := s.cfg.Clock.Now()
	var out []Suspension
	for _, x := range old {
		if now.Before(x.Until) {
			s.cfg.Log.Log("qmgr", "suspension %d resumed: delivery for %s goes on", x.ID, x.Selector)
			out = append(out, *x)
		}
	}
	if len(old) > 0 {
		s.changed()
	}
	return out, nil
}

// List returns the suspensions in force, by ID.
func (s *Store) List() []Suspension {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	out := make([]Suspension, 0, len(s.list))
	for _, x := range s.list {
		if now.Before(x.Until) {
			out = append(out, *x)
		}
	}
	return out
}

// Any reports whether some suspension is in force at now; while none is,
// the queue manager need not look at recipients before taking mail.
func (s *Store) Any(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.list {
		if now.Before(x.Until) {
			return true
		}
	}
	return false
}

// Suspended reports whether delivery of message id (envelope env) to
// its recipient rcpt is suspended at now; if so, until when (the latest
// end of the suspensions that match it) and why, for the defer log.
func (s *Store) Suspended(now time.Time, id string, env *spool.Envelope, rcpt string) (until time.Time, why string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m *manage.Message
	for _, x := range s.list {
		if !now.Before(x.Until) {
			continue
		}
		if m == nil {
			m = &manage.Message{ID: id, Sender: env.Sender, Arrival: env.Arrival, Size: env.Size.ContentLen, Recipients: []manage.Recipient{{Address: rcpt}}}
			if m.Size == 0 {
				m.Size = env.Size.MessageLen
			}
		}
		if !x.sel.Match(m, now) {
			continue
		}
		if x.Until.After(until) {
			until = x.Until
			why = "suspension " + strconv.FormatInt(x.ID, 10) + reasonSuffix(x.Reason)
		}
		ok = true
	}
	return until, why, ok
}

// Run ends suspensions when their time comes, until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := s.cfg.Clock.NewTimer(time.Hour)
	t.Stop()
	// armed is the end the timer is set for; a kick that leaves the
	// earliest end where it was does not move the timer.
	var armed time.Time
	for {
		if next, ok := s.nextEnd(); ok && !next.Equal(armed) {
			t.Stop()
			t.Reset(max(next.Sub(s.cfg.Clock.Now()), 0))
			armed = next
		}
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C():
			armed = time.Time{}
			s.mu.Lock()
			ended := s.endDue()
			var err error
			if len(ended) > 0 {
				err = s.save()
			}
			s.mu.Unlock()
			if err != nil {
				s.cfg.Log.Warn("qmgr", "%v", err)
			}
			if len(ended) > 0 {
				s.reportEnded(ended)
				s.changed()
			}
		}
	}
}

func (s *Store) nextEnd() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, x := range s.list {
		if next.IsZero() || x.Until.Before(next) {
			next = x.Until
		}
	}
	return next, !next.IsZero()
}

// endDue removes the suspensions whose end has come; s.mu is held (or
// the store is not shared yet).
func (s *Store) endDue() []*Suspension {
	now := s.cfg.Clock.Now()
	var ended []*Suspension
	keep := s.list[:0]
	for _, x := range s.list {
		if now.Before(x.Until) {
			keep = append(keep, x)
		} else {
			ended = append(ended, x)
		}
	}
	s.list = keep
	return ended
}

func (s *Store) reportEnded(ended []*Suspension) {
	for _, x := range ended {
		s.cfg.Log.Log("qmgr", "suspension %d ended: delivery for %s goes on", x.ID, x.Selector)
		if s.cfg.AuditPath != "" {
			err := audit.Append(s.cfg.AuditPath, audit.Entry{
				Time: s.cfg.Clock.Now(), User: "daemon", UID: -1, Interface: audit.Suspend, Action: "suspension-ended",
				Selector: x.Selector, Detail: "suspension " + strconv.FormatInt(x.ID, 10) + " ended" + reasonSuffix(x.Reason),
			})
			if err != nil {
				s.cfg.Log.Warn("qmgr", "%v", err)
			}
		}
	}
}

// changed tells the queue manager and the expiry timer.
func (s *Store) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if s.cfg.OnChange != nil {
		s.cfg.OnChange()
	}
}

func (s *Store) index(id int64) int {
	for i, x := range s.list {
		if x.ID == id {
			return i
		}
	}
	return -1
}

// save writes the set: a temporary file beside the real one, synced,
// renamed over it, the directory synced. s.mu is held.
func (s *Store) save() error {
	b, err := json.MarshalIndent(file{NextID: s.next, Suspensions: s.list}, "", "  ")
	if err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.cfg.Path)
	tmp, err := os.CreateTemp(dir, ".sluice-suspensions-*.tmp")
	if err != nil {
		return fmt.Errorf("suspend: save: %w", err)
	}
	fail := func(err error) error {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("suspend: save %s: %w", s.cfg.Path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := audit.GiveToDirOwner(tmp, dir); err != nil {
		return fail(err)
	}
	if !s.cfg.NoSync {
		if err := tmp.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), s.cfg.Path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("suspend: save %s: %w", s.cfg.Path, err)
	}
	if !s.cfg.NoSync {
		if d, err := os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
			if err != nil {
				return fmt.Errorf("suspend: sync %s: %w", dir, err)
			}
		}
	}
	return nil
}

// Request asks for a suspension, over the control socket and the HTTP
// API alike.
type Request struct {
	Selector string `json:"select"`
	// For is how long: a Go duration (90m, 2h30m) or a number with a
	// unit s m h d w (2h, 1d).
	For    string `json:"for"`
	Reason string `json:"reason,omitempty"`
}

// ParseDuration parses a suspension's length: a Go duration, or a
// number with one of the units s m h d w.
func ParseDuration(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return 0, fmt.Errorf("suspend: duration %q is not positive", v)
		}
		return d, nil
	}
	if len(v) > 1 {
		unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}[v[len(v)-1]]
		if f, err := strconv.ParseFloat(v[:len(v)-1], 64); err == nil && unit > 0 && f > 0 {
			return time.Duration(f * float64(unit)), nil
		}
	}
	return 0, fmt.Errorf("suspend: bad duration %q (want e.g. 30m, 2h, 1d)", v)
}

// Do carries out r for user: it checks and adds the suspension.
func (s *Store) Do(r Request, user string) (Suspension, error) {
	d, err := ParseDuration(r.For)
	if err != nil {
		return Suspension{}, err
	}
	return s.Add(r.Selector, r.Reason, d, user)
}

// Describe is a suspension's audit detail and the tools' line about it.
func (x Suspension) Describe() string {
	s := fmt.Sprintf("suspension %d until %s", x.ID, x.Until.UTC().Format(time.RFC3339))
	if x.Reason != "" {
		s += ": " + x.Reason
	}
	return s
}
