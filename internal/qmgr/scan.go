package qmgr

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	evt "sluice/internal/event"
	"sluice/internal/spool"
)

// recoverActive moves every file in active/ back to incoming/, as qmgr
// does when it starts: whatever was being delivered when the last
// process ended is tried again, and recipients marked done are skipped.
func (m *Manager) recoverActive() error {
	if err := m.sp.Create(); err != nil {
		return fmt.Errorf("qmgr: %w", err)
	}
	entries, err := m.sp.List(spool.Active)
	if err != nil {
		return fmt.Errorf("qmgr: %w", err)
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(m.sp.Root, e.Rel), m.sp.Path(spool.Incoming, e.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("qmgr: move %s from active back to incoming: %w", e.ID, err)
		}
		m.recovered[e.ID] = true // its logs may tell of the interrupted round
		m.publish(&evt.Moved{ID: e.ID, From: spool.Active, To: spool.Incoming, Time: m.clk.Now()})
	}
	m.removeEmbryonic()
	if len(entries) > 0 && !m.sp.NoSync {
		for _, q := range []string{spool.Incoming, spool.Active} {
			if err := m.sp.SyncQueueDir(q); err != nil {
				return fmt.Errorf("qmgr: %w", err)
			}
		}
	}
	return nil
}

// removeEmbryonic deletes the files in incoming/ that never became
// ready (mode 0600): cleanup was writing them when the last process died.
// Their message was never acknowledged (250 comes only after the file is
// ready and synced), so the client still has it. Only the daemon's own
// cleanup writes into incoming/, and it is not running yet.
func (m *Manager) removeEmbryonic() {
	entries, err := m.sp.List(spool.Incoming)
	if err != nil {
		m.log.Warn("qmgr", "%v", err)
		return
	}
	for _, e := range entries {
		path := filepath.Join(m.sp.Root, e.Rel)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || spool.IsReady(fi.Mode()) {
			continue
		}
		if err := os.Remove(path); err == nil {
			m.log.Warn("qmgr", "%s: removed incomplete queue file left behind by a crash", e.ID)
		}
	}
}

// scanIncoming takes every complete file in incoming/.
func (m *Manager) scanIncoming() {
	entries, err := m.sp.List(spool.Incoming)
	if err != nil {
		m.log.Warn("qmgr", "%v", err)
		return
	}
	m.take(entries)
}

// takeIncoming takes the files cleanup announced.
func (m *Manager) takeIncoming(ids []string) {
	entries := make([]spool.Entry, 0, len(ids))
	for _, id := range ids {
		if !spool.ValidID(id) {
			continue
		}
		entries = append(entries, spool.Entry{Queue: spool.Incoming, ID: id, Rel: m.sp.RelPath(spool.Incoming, id)})
	}
	m.take(entries)
}

// scanDeferred takes the files in deferred/ whose time has come: mtime ≤
// now + 1s, or every file when all is set (postqueue -f).
func (m *Manager) scanDeferred(all bool) {
	entries, err := m.sp.List(spool.Deferred)
	if err != nil {
		m.log.Warn("qmgr", "%v", err)
		return
	}
	limit := m.clk.Now().Add(time.Second)
	due := entries[:0]
	for _, e := range entries {
		if !all {
			fi, err := os.Lstat(filepath.Join(m.sp.Root, e.Rel))
			if err != nil || fi.ModTime().After(limit) {
				continue
			}
		}
		due = append(due, e)
	}
	m.take(due)
}
