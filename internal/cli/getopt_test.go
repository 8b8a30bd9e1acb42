package cli

import (
	"fmt"
	"testing"
)

func TestGetopt(t *testing.T) {
	cases := []struct {
		args []string
		want string // options, then operands
	}{
		{[]string{"-bh", "-c", "DIR", "x"}, "[{98 } {104 } {99 DIR}] [x]"},
		{[]string{"-cDIR", "-q", "ID"}, "[{99 DIR} {113 }] [ID]"},
		// Options end at the first operand, as in Postfix's tools.
		{[]string{"FILE", "-e"}, "[] [FILE -e]"},
		{[]string{"-e", "--", "-b"}, "[{101 }] [-b]"},
		{[]string{"-", "-e"}, "[] [- -e]"},
	}
	for _, c := range cases {
		opts, ops, err := Getopt(c.args, "bc:ehq")
		if got := fmt.Sprint(opts, " ", ops); err != nil || got != c.want {
			t.Errorf("Getopt(%q) = %s, %v; want %s", c.args, got, err, c.want)
		}
	}
	for args, want := range map[string]string{"-x": "invalid option -- 'x'", "-c": "option requires an argument -- 'c'"} {
		if _, _, err := Getopt([]string{args}, "bc:"); err == nil || err.Error() != want {
			t.Errorf("Getopt(%s): %v, want %s", args, err, want)
		}
	}
}
