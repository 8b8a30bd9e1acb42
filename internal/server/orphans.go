package server

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sluice/internal/spool"
)

// tempMaxAge is how old a temporary name must be before it is taken for
// an orphan even though a process with its pid runs: a temporary name
// lives for microseconds (create, stat, link to the ID, remove), so one
// this old belongs to a process that died and whose pid was reused.
const tempMaxAge = time.Minute

// removeOrphans deletes what killed processes left under the spool's
// temporary names: spool.CreateNamed makes every new queue or maildrop
// file as "<usec>.<pid>.<seq>" in the queue's top directory, links it to
// its queue ID and removes the temporary name; a kill between those steps
// leaves the name behind, zero bytes long or sharing its inode with an
// unfinished queue file. Such a name is never a queue file (no scanner
// takes it), and removing it is always safe: a process still between
// its create and its link would see its link fail and refuse the message,
// which the client then still has. To stay clear of live tools (sendmail
// writes maildrop/ while no daemon runs), a name is removed only when its
// process is gone, is this process (it made none yet), or when it is
// older than tempMaxAge. Unfinished files under queue IDs in incoming/ are
// the queue manager's to remove when it starts (qmgr.removeEmbryonic).
//
// It runs at start, under the pid lock, before anything writes the spool.
func (s *Server) removeOrphans(now time.Time) {
	for _, q := range []string{spool.Incoming, spool.Hold, spool.Maildrop} {
		dir := filepath.Join(s.sp.Root, q)
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("master", "look for temporary files in %s: %v", q, err)
			}
			continue
		}
		for _, e := range ents {
			usec, pid, ok := tempName(e.Name())
			if !ok || !e.Type().IsRegular() {
				continue
			}
			age := now.Sub(time.UnixMicro(usec))
			if processExists(pid) && pid != os.Getpid() && age < tempMaxAge {
				continue
			}
			path := filepath.Join(dir, e.Name())
			size := int64(-1)
			if fi, err := e.Info(); err == nil {
				size = fi.Size()
			}
			if err := os.Remove(path); err != nil {
				if !errors.Is(err, os.ErrNotExist) {
					s.log.Warn("master", "remove temporary file %s/%s: %v", q, e.Name(), err)
				}
				continue
			}
			s.log.Warn("master", "%s/%s: removed temporary file left behind by a killed process (%d bytes)", q, e.Name(), size)
		}
	}
}

// tempName parses spool.CreateNamed's temporary name "<usec>.<pid>.<seq>"
// (three decimal numbers; a queue ID never has a dot).
func tempName(name string) (usec int64, pid int, ok bool) {
	parts := strings.Split(name, ".")
	if len(parts) != 3 {
		return 0, 0, false
	}
	for _, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return 0, 0, false
		}
	}
	usec, err1 := strconv.ParseInt(parts[0], 10, 64)
	p, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || p <= 0 {
		return 0, 0, false
	}
	return usec, p, true
}

// processExists reports whether a process with this pid exists (a
// zombie counts; a pid taken by another process counts too, which is why
// the age matters as well).
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
