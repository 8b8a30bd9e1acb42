package server

import (
	"sluice/internal/httpapi"
	"sluice/internal/metrics"
)

// subscribeLive makes the event stream's ring (the API's and the control
// socket's /events) and the metrics, and subscribes both to the bus. It
// is called before the model subscribes: the ring asks the model for
// the sender of each event that does not carry it, and before the model
// applies a Deleted the message is still there to ask about.
func (s *Server) subscribeLive() {
	s.stream = httpapi.NewRing(httpapi.RingSize, s.clk.Now, s.model.Envelope)
	s.stats = metrics.New(s.model, s.clk.Now)
	s.stats.SetStream(s.stream.Stats)
	s.events.Subscribe(s.stream)
	s.events.Subscribe(s.stats)
}
