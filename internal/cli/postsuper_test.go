package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

// psFixture builds the same set of messages in a spool and returns the
// IDs by symbolic name.
func psFixture(t *testing.T, root string) map[string]string {
	t.Helper()
	sp := spool.New(root)
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ids := map[string]string{}
	mk := func(name, queue string, reason string, expire bool) {
		f, err := sp.NewFile(spool.Incoming, now)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteEnvelope(&spool.NewEnvelope{Arrival: now, Sender: "s@src.test", Recipients: []spool.NewRecipient{{Address: name + "@example.com"}}})
		f.WriteLine([]byte("Subject: " + name))
		if err := f.Commit(); err != nil {
			t.Fatal(err)
		}
		if queue != spool.Incoming {
			if err := sp.Move(f.ID, spool.Incoming, queue); err != nil {
				t.Fatal(err)
			}
		}
		if reason != "" {
			sp.AppendLog(spool.Defer, f.ID, spool.LogEntry{Recipient: name + "@example.com", Status: "4.4.1", Action: "delayed", Reason: reason})
		}
		if expire {
			os.Chmod(sp.Path(queue, f.ID), 0o710)
		}
		ids[name] = f.ID
	}
	mk("m1", spool.Deferred, "connect to 127.0.0.1[127.0.0.1]:9: Connection refused", false)
	mk("m2", spool.Deferred, "", false)
	mk("m3", spool.Hold, "", false)
	mk("m4", spool.Incoming, "", false)
	mk("m5", spool.Deferred, "refused", true)
	mk("m6", spool.Hold, "", true)
	return ids
}

// psState describes where each message is: queue and forced-expiry bit.
func psState(t *testing.T, root string, ids map[string]string) string {
	sp := spool.New(root)
	var out []string
	for name, id := range ids {
		q, err := sp.Locate(id, spool.Maildrop, spool.Incoming, spool.Active, spool.Deferred, spool.Hold)
		if err != nil {
			out = append(out, name+":gone")
			continue
		}
		fi, _ := os.Stat(sp.Path(q, id))
		st := name + ":" + q
		if spool.IsForcedExpire(fi.Mode()) {
			st += "#"
		}
		out = append(out, st)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func symbolic(s string, ids map[string]string) string {
	for name, id := range ids {
		s = strings.ReplaceAll(s, id, name)
	}
	return s
}

func TestPostsuperMatchesPostfix(t *testing.T) {
	oracle.Require(t)
	cases := []struct {
		args  []string
		stdin string
	}{
		{args: []string{"-d", "m1", "-h", "m2", "-H", "m3", "-d", "NOSUCH", "-e", "m4", "-e", "m4"}},
		{args: []string{"-f", "m6"}},
		{args: []string{"-f", "m5", "-h", "m5", "-H", "m5"}},
		{args: []string{"-r", "ALL", "hold"}},
		{args: []string{"-d", "ALL", "deferred"}},
		{args: []string{"-d", "bad/id", "-d", "ALL", "-h", "ALL"}},
		{args: []string{"-h", "-", "-e", "-"}, stdin: "m1\n\nbad id\nm2\n"},
		{args: []string{"-d", "-"}, stdin: "m3\nm4\n"},
		{args: []string{"-h", "ALL", "maildrop"}},
		{args: []string{"-x"}},
		{args: []string{"-d", "ALL", "nosuch"}},
		{args: []string{"-d", "ALL", "corrupt"}},
		{args: []string{"-e", "ALL"}},
		{args: []string{"-H", "ALL"}},
		{args: []string{}},
	}
	for _, c := range cases {
		c := c
		name := strings.Join(c.args, " ")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pfRoot := filepath.Join(oracle.TempDir(t, "pf-"), "spool")
			slRoot := filepath.Join(oracle.TempDir(t, "sl-"), "spool")
			pfIDs, slIDs := psFixture(t, pfRoot), psFixture(t, slRoot)
			pfConf := oracle.PostfixConfig(t, pfRoot)
			slConf := oracle.PostfixConfig(t, slRoot)
			resolve := func(ids map[string]string, args []string) []string {
				out := []string{"-c"}
				for _, a := range args {
					if id, ok := ids[a]; ok {
						a = id
					}
					out = append(out, a)
				}
				return out
			}
			stdin := func(ids map[string]string) []byte {
				s := c.stdin
				for n, id := range ids {
					s = strings.ReplaceAll(s, n, id)
				}
				return []byte(s)
			}
			pfArgs := resolve(pfIDs, c.args)
			pfArgs = append([]string{pfArgs[0], pfConf}, pfArgs[1:]...)
			want := oracle.Run(t, pfConf, stdin(pfIDs), "postsuper", pfArgs...)
			slArgs := resolve(slIDs, c.args)
			slArgs = append([]string{"postsuper", slArgs[0], slConf}, slArgs[1:]...)
			var stdout, stderr bytes.Buffer
			status := Main(slArgs, bytes.NewReader(stdin(slIDs)), &stdout, &stderr)

			if w, g := symbolic(string(want.Stderr), pfIDs), symbolic(stderr.String(), slIDs); w != g {
				t.Errorf("stderr differs:\n%s", oracle.Diff(w, g))
			}
			if want.Status != status {
				t.Errorf("exit status %d, Postfix %d", status, want.Status)
			}
			if w, g := psState(t, pfRoot, pfIDs), psState(t, slRoot, slIDs); w != g {
				t.Errorf("queue state differs:\nPostfix: %s\nsluice:  %s", w, g)
			}
		})
	}
}
