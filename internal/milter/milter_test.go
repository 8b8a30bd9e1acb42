package milter

import (
	"testing"
	"time"
)

func TestParseMilterList(t *testing.T) {
	def := Spec{DefaultAction: "tempfail", Protocol: 6, CommandTimeout: 30 * time.Second}
	got, err := ParseList("inet:127.0.0.1:8891, unix:/run/x.sock { inet:[::1]:11332, default_action=accept, command_timeout=5s }", def)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Network != "tcp" || got[0].Addr != "127.0.0.1:8891" ||
		got[1].Network != "unix" || got[1].Addr != "/run/x.sock" ||
		got[2].Addr != "[::1]:11332" || got[2].DefaultAction != "accept" || got[2].CommandTimeout != 5*time.Second || got[0].DefaultAction != "tempfail" {
		t.Errorf("parsed %+v", got)
	}
	if _, err := ParseList("{ inet:1.2.3.4:5, default_action=maybe }", def); err == nil {
		t.Error("bad default_action accepted")
	}
}
