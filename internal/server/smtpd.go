package server

// startSMTPD opens the smtpd_listen addresses. (Wired to internal/smtpd
// when it lands.)
func (s *Server) startSMTPD(in *intake) error { return nil }

// startPickup starts pickup on maildrop/. (Wired to internal/pickup when
// it lands.)
func (s *Server) startPickup(in *intake) error { return nil }
