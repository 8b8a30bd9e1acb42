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

// TestSymbolsCompact: after compact every symbol still names its string,
// the index finds each by its text, freed slots stay free and usable,
// and the reason accounting is unchanged.
func TestSymbolsCompact(t *testing.T) {
	var s symbols
	s.init()
	want := map[sym]string{}
	for i := 0; i < 5000; i++ {
		str := strings.Repeat(string(rune('a'+i%26)), 1+i%40) + "-" + strings.Repeat("z", i%7)
		if i%3 == 0 {
			want[s.getCapped(str)] = str
		} else {
			want[s.get(str)] = str
		}
	}
	long := strings.Repeat("L", slabText) // kept as it is
	want[s.get(long)] = long
	gone := s.get("given back")
	s.release(gone)
	reasons, bytes := s.reasons, s.reasonBytes
	s.compact()
	for v, str := range want {
		if s.str(v) != str {
			t.Fatalf("symbol %d is %q after compact, want %q", v, s.str(v), str)
		}
		if got := s.get(str); got != v {
			t.Fatalf("%q found as %d after compact, want %d", str, got, v)
		}
		s.release(v)
	}
	if _, ok := s.idx["given back"]; ok || s.reasons != reasons || s.reasonBytes != bytes {
		t.Errorf("compact changed the index or the accounting: %d %d, want %d %d", s.reasons, s.reasonBytes, reasons, bytes)
	}
	if v := s.get("new one"); s.str(v) != "new one" || v != gone {
		t.Errorf("new symbol %d %q, want the freed slot %d", v, s.str(v), gone)
	}
}
