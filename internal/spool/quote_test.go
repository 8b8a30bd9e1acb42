package spool

import "testing"

// Defer-log recipients are quoted as Postfix's bounce service writes
// them (checked against a Postfix 3.7 defer log).
func TestQuoteAddress(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain@example.com", "plain@example.com"},
		{"john doe@example.com", `"john doe"@example.com`},
		{"z@a@b.example.com", `"z@a"@b.example.com`},
		{".b@x.com", `".b"@x.com`},
		{"a.@x.com", `"a."@x.com`},
		{"c..d@x.com", `"c..d"@x.com`},
		{`odd"quote\back@src.test`, `"odd\"quote\\back"@src.test`},
		{"ü@exämple.com", "ü@exämple.com"},
		{"caf\xe9@latin.test", "caf\xe9@latin.test"},
		{"postmaster", "postmaster"},
	}
	for _, tc := range tests {
		if got := QuoteAddress(tc.in); got != tc.want {
			t.Errorf("QuoteAddress(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
