package model

// EachQShape calls fn for every (domain, arrival second, count) of the
// qshape counts of the named queues: pending recipients by recipient
// domain, or messages by sender domain (senders). It lets a renderer with
// its own bucket rules (package qshape's, Perl numbers and all) build
// qshape's table from the model without reading a file. fn runs under the
// model's read lock: it must not call back into the model.
func (m *Model) EachQShape(queues []string, senders bool, fn func(domain string, arrival, n int64)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, qn := range queues {
		q, ok := queueIndex(qn)
		if !ok {
			continue
		}
		src := m.agg.queue[q].rcptDomains
		if senders {
			src = m.agg.queue[q].senderDomains
		}
		for d, h := range src {
			name := m.syms.str(d)
			for i, k := range h.keys {
				if c := h.n[i]; c != 0 {
					fn(name, int64(k), int64(c))
				}
			}
		}
	}
}
