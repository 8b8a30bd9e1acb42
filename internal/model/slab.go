package model

import "unsafe"

// slab allocates the messages the first build reads — their structs,
// recipients, IDs and addresses — from large blocks instead of one
// object each. A start-up scan makes several kilobytes of garbage per
// message between the few hundred bytes it keeps, so kept objects ended
// up scattered over half-empty spans: tens of megabytes the daemon's
// memory limit counted and the collector could not give back, and three
// or four million objects for every collection to visit. A block lives
// as long as any message in it does; a message that changes later (an
// Activated event makes it anew) leaves its slot behind, so blocks
// empty as the queue turns over.
type slab struct {
	msgs  []msg
	rcpts []rcpt
	text  []byte
}

// Block sizes: about 256 KB of messages, 320 KB of recipients, 64 KB of
// text.
const (
	slabMsgs  = 4096
	slabRcpts = 8192
	slabText  = 64 << 10
)

func (s *slab) takeMsg() *msg {
	if len(s.msgs) == cap(s.msgs) {
		s.msgs = make([]msg, 0, slabMsgs)
	}
	s.msgs = s.msgs[:len(s.msgs)+1]
	return &s.msgs[len(s.msgs)-1]
}

// takeRcpts returns n recipients; the slice's capacity is n, so an append
// never writes into a neighbour's.
func (s *slab) takeRcpts(n int) []rcpt {
	if n > slabRcpts/8 {
		return make([]rcpt, n)
	}
	if cap(s.rcpts)-len(s.rcpts) < n {
		s.rcpts = make([]rcpt, 0, slabRcpts)
	}
	l := len(s.rcpts)
	s.rcpts = s.rcpts[:l+n]
	return s.rcpts[l : l+n : l+n]
}

// copyStr returns a copy of v in the slab's text; the bytes are never
// written again, which is what unsafe.String asks.
func (s *slab) copyStr(v string) string {
	if len(v) == 0 || len(v) > slabText/16 {
		return v
	}
	if cap(s.text)-len(s.text) < len(v) {
		s.text = make([]byte, 0, slabText)
	}
	l := len(s.text)
	s.text = append(s.text, v...)
	return unsafe.String(&s.text[l], len(v))
}
