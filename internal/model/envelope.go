package model

// Envelope returns the queue and sender of message id, and false when
// the model has none (or only its ID, for a file in corrupt/). It costs
// one index lookup and reads no file, so an event subscriber can call it
// for every event (the API's event stream names each event's sender).
func (m *Model) Envelope(id string) (queue, sender string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	x := m.msgs.get(id)
	if x == nil {
		return "", "", false
	}
	if x.bare {
		return Queues[x.queue], "", false
	}
	return Queues[x.queue], m.syms.str(x.sender), true
}
