package model

import (
	"strings"
	"testing"
)

// TestReasonByteBound: reasons are kept while their cost fits the byte
// bound, past it they are left on disk, and a reason given back makes
// room again; other strings are never bounded.
func TestReasonByteBound(t *testing.T) {
	var s symbols
	s.init()
	s.byteLimit = 3 * (10 + reasonOverhead)
	var held []sym
	for _, r := range []string{"reason-001", "reason-002", "reason-003"} {
		v := s.getCapped(r)
		if v == onDisk || s.str(v) != r {
			t.Fatalf("%s not kept within the bound", r)
		}
		held = append(held, v)
	}
	if v := s.getCapped("reason-004"); v != onDisk {
		t.Errorf("a reason past the bound was kept")
	}
	if v := s.getCapped("reason-001"); v != held[0] {
		t.Errorf("a reason held already costs nothing more, but was refused")
	}
	s.release(held[0])
	if v := s.getCapped("reason-004"); v != onDisk {
		t.Errorf("reason-001 still has a holder: no room yet")
	}
	s.release(held[0])
	v := s.getCapped("reason-004")
	if v == onDisk || s.str(v) != "reason-004" {
		t.Errorf("no room after a reason was given back")
	}
	if long := strings.Repeat("x", 1000); s.str(s.get(long)) != long {
		t.Errorf("a string that is not a reason was bounded")
	}
	s.release(v)
	s.release(held[1])
	s.release(held[2])
	if s.reasons != 0 || s.reasonBytes != 0 {
		t.Errorf("after every release: %d reasons, %d bytes", s.reasons, s.reasonBytes)
	}
}
