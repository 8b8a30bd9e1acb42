package server

import (
	"sluice/internal/audit"
	"sluice/internal/suspend"
)

// openSuspensions loads the suspensions (package suspend) before the
// queue manager starts, so that no suspended mail slips out at start. A
// suspensions file that cannot be read stops the start: delivering mail
// an administrator paused is worse than not starting (the mail waits in
// the queue, safe). The store tells the queue manager of every change.
func (s *Server) openSuspensions() error {
	st, err := suspend.Open(suspend.Config{
		Path: suspend.Path(s.sp.Root), Clock: s.clk, Log: s.log, AuditPath: s.auditPath(), NoSync: s.sp.NoSync,
		OnChange: func() {
			if s.qm != nil {
				s.qm.SuspensionsChanged()
			}
		},
	})
	if err != nil {
		s.log.Log("master", "fatal: %v", err)
		return err
	}
	s.susp = st
	return nil
}

// auditPath is the queue's audit log (package audit).
func (s *Server) auditPath() string { return audit.Path(s.sp.Root) }
