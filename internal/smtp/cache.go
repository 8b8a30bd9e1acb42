package smtp

import "time"

// The connection cache keeps sessions that ended a delivery in a known
// state, per next hop, for MaxIdle. A session in the cache belongs to the
// cache: whoever removes it under the lock owns it. An idle timer closes
// sessions nobody took in time.

// takeIdle returns the most recently cached live session for key, or nil.
func (c *Client) takeIdle(key string) *session {
	var old []*session
	defer func() {
		for _, s := range old {
			s.quit()
		}
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	list := c.idle[key]
	for len(list) > 0 {
		s := list[len(list)-1]
		list = list[:len(list)-1]
		s.timer.Stop()
		if time.Since(s.born) < maxReuseAge {
			c.idle[key] = list
			return s
		}
		old = append(old, s)
	}
	delete(c.idle, key)
	return nil
}

// release caches s under its next hop after a delivery, or ends it.
func (c *Client) release(s *session) {
	if s.broken || c.MaxIdle <= 0 || time.Since(s.born) >= maxReuseAge {
		s.quit()
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		s.quit()
		return
	}
	if c.idle == nil {
		c.idle = map[string][]*session{}
	}
	c.idle[s.key] = append(c.idle[s.key], s)
	s.timer = time.AfterFunc(c.MaxIdle, func() { c.expire(s) })
	c.mu.Unlock()
}

// expire closes s if it is still in the cache.
func (c *Client) expire(s *session) {
	c.mu.Lock()
	list := c.idle[s.key]
	found := false
	for i, x := range list {
		if x == s {
			c.idle[s.key] = append(list[:i:i], list[i+1:]...)
			found = true
			break
		}
	}
	if len(c.idle[s.key]) == 0 {
		delete(c.idle, s.key)
	}
	c.mu.Unlock()
	if found {
		s.quit()
	}
}

// Close ends every cached connection. Deliveries after Close still work,
// but keep no connection.
func (c *Client) Close() error {
	c.mu.Lock()
	var all []*session
	for _, list := range c.idle {
		for _, s := range list {
			s.timer.Stop()
			all = append(all, s)
		}
	}
	c.idle = nil
	c.closed = true
	c.mu.Unlock()
	for _, s := range all {
		s.quit()
	}
	return nil
}
