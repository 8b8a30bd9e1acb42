package spool

import "testing"

func TestAtol(t *testing.T) {
	tests := []struct {
		in string
		n  int64
		ok bool
	}{
		{"1795964910 322038", 1795964910, true},
		{"  42", 42, true},
		{"-5 0", -5, true},
		{"+7", 7, true},
		{"", 0, false},
		{"x1", 0, false},
		{"99999999999999999999999", 1<<63 - 1, true},
		{"-99999999999999999999999", -1 << 63, true},
	}
	for _, tt := range tests {
		if n, ok := Atol([]byte(tt.in)); n != tt.n || ok != tt.ok {
			t.Errorf("Atol(%q) = %d, %v; want %d, %v", tt.in, n, ok, tt.n, tt.ok)
		}
	}
}
