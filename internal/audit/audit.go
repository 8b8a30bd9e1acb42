// Package audit is the queue's audit log: one JSON object a line in
// $queue_directory/private/sluice-audit.log, telling who changed the
// queue, through which interface, how, and with what effect.
//
// Every interface that changes the queue appends to it: the tools when
// they act on the files (no daemon), the control socket (the tools while
// the daemon runs), the HTTP API, the dashboard, the suspensions. An entry
// is written with one write(2) on a descriptor opened O_APPEND, so lines
// from several processes never interleave, and fsynced before Append
// returns: an action that was reported done is on record.
//
// The file is 0600: it names users and message IDs. It belongs to the
// owner of its directory (the mail owner), also when root creates it, so
// the daemon, which runs as the mail owner, can append to it afterwards.
// Reading it ("sluice queue audit") is thus for root and the mail owner.
//
// Nothing here rotates the log; an administrator may move it away at any
// time (the next Append creates a new one).
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// FileName is the log's path relative to the queue directory.
const FileName = "private/sluice-audit.log"

// Path is the audit log of the spool at queueDir.
func Path(queueDir string) string { return filepath.Join(queueDir, FileName) }

// Interfaces, as Entry.Interface names them.
const (
	CLI       = "cli"       // a tool acting on the files (no daemon)
	Control   = "control"   // a tool through the daemon's control socket
	HTTP      = "http"      // the HTTP API
	Dashboard = "dashboard" // the web dashboard
	Suspend   = "suspend"   // a suspension that ended on its own
)

// maxIDs bounds the IDs one entry lists; Matched still counts them all.
const maxIDs = 100

// Entry is one change to the queue (or an attempt at one).
type Entry struct {
	Time time.Time `json:"time"`
	// User is who asked: "uid=N" for a local user, or the name of the
	// HTTP token ("api", "dashboard"); "daemon" for what the daemon
	// does on its own (a suspension ending).
	User string `json:"user"`
	// UID is the local user's uid, -1 when the user is not one.
	UID       int    `json:"uid"`
	Interface string `json:"interface"`
	// Tool is the program that asked, when known (postsuper, postqueue,
	// "sluice queue hold").
	Tool     string   `json:"tool,omitempty"`
	Action   string   `json:"action"`
	Selector string   `json:"selector,omitempty"`
	IDs      []string `json:"ids,omitempty"`
	// MoreIDs counts the IDs left out of IDs (at most 100 are listed).
	MoreIDs int `json:"more_ids,omitempty"`
	Matched int `json:"matched"`
	Changed int `json:"changed"`
	Skipped int `json:"skipped"`
	Failed  int `json:"failed,omitempty"`
	// Detail says more where the counts do not (a suspension's ID,
	// duration and reason).
	Detail string `json:"detail,omitempty"`
}

// User returns the User of a local uid.
func User(uid int) string { return "uid=" + strconv.Itoa(uid) }

// SetIDs puts ids in e, at most 100 of them.
func (e *Entry) SetIDs(ids []string) {
	if len(ids) > maxIDs {
		e.IDs, e.MoreIDs = append([]string(nil), ids[:maxIDs]...), len(ids)-maxIDs
		return
	}
	e.IDs = append([]string(nil), ids...)
}

// Append writes e as one line at the end of the log at path and syncs
// it. A zero e.Time is now.
func Append(path string, e Entry) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	line = append(line, '\n')
	f, err := openAppend(path)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("audit: append to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// openAppend opens the log for appending, creating it 0600 and giving
// it to the directory's owner when root creates it.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, err
	}
	if err := GiveToDirOwner(f, filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// GiveToDirOwner chowns f to the owner of dir when the process runs as
// root, so that a file root creates in the mail owner's private/ stays
// writable by the daemon.
func GiveToDirOwner(f *os.File, dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", f.Name(), err)
	}
	return nil
}

// Read calls fn with every entry of the log at path whose time is not
// before since, oldest first. A missing log has no entries. A line that
// does not parse (a torn last line after a crash) is skipped.
func Read(path string, since time.Time, fn func(Entry) error) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var e Entry
		if json.Unmarshal(b, &e) != nil {
			continue
		}
		if e.Time.Before(since) {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit: read %s: %w", path, err)
	}
	return nil
}

// Text renders e as one human line.
func (e Entry) Text() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s via %s", e.Time.UTC().Format(time.RFC3339), e.User, e.Interface)
	if e.Tool != "" {
		fmt.Fprintf(&b, " (%s)", e.Tool)
	}
	fmt.Fprintf(&b, ": %s", e.Action)
	if e.Selector != "" {
		fmt.Fprintf(&b, " %s", e.Selector)
	}
	if len(e.IDs) > 0 && e.Selector == "" {
		ids := e.IDs
		if len(ids) > 5 {
			ids = ids[:5]
		}
		fmt.Fprintf(&b, " %s", joinIDs(ids, len(e.IDs)+e.MoreIDs-len(ids)))
	}
	fmt.Fprintf(&b, ": matched %d, changed %d, skipped %d", e.Matched, e.Changed, e.Skipped)
	if e.Failed > 0 {
		fmt.Fprintf(&b, ", failed %d", e.Failed)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	return b.String()
}

func joinIDs(ids []string, more int) string {
	var b bytes.Buffer
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(id)
	}
	if more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	return b.String()
}
