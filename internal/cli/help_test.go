package cli

import (
	"strings"
	"testing"
)

// TestHelpFromOneSource: every tool has a manual, `sluice help NAME`
// prints it, and where the tool takes --help it prints the same text.
func TestHelpFromOneSource(t *testing.T) {
	for _, c := range commands() {
		if !strings.HasPrefix(strings.ToLower(c.Help), "usage:") {
			t.Errorf("%s: help does not start with a usage line: %.40q", c.Name, c.Help)
			continue
		}
		out, _, code := run(t, "", "help", c.Name)
		if code != 0 || out != strings.TrimRight(c.Help, "\n")+"\n" {
			t.Errorf("sluice help %s: %d %.60q", c.Name, code, out)
		}
	}
	for _, name := range []string{"queue", "probe", "mailq", "postqueue", "install"} {
		out, _, _ := run(t, "", name, "--help")
		if strings.TrimRight(out, "\n") != strings.TrimRight(lookup(name).Help, "\n") {
			t.Errorf("%s --help differs from sluice help %s:\n%s", name, name, out)
		}
	}
	if _, errs, code := run(t, "", "help", "nosuch"); code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) {
		t.Errorf("help for an unknown command: %d %q", code, errs)
	}
}
