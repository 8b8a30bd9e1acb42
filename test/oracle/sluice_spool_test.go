package oracle_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"sluice/internal/oracle"
	"sluice/internal/spool"
)

// Reasons as Postfix's delivery agents write them.
const (
	refused    = "connect to 127.0.0.1[127.0.0.1]:9: Connection refused"
	longReason = "host mx.example.com[192.0.2.1] said: 450 4.2.0 <r1@longreason.test>: Recipient address rejected: this is a deliberately very long temporary failure explanation (in reply to RCPT TO command)"
)

// reasonOfLen returns a reason exactly n bytes long: mailq pads reasons
// up to 76 columns and starts longer ones at column 0.
func reasonOfLen(n int) string {
	s := "450 4.3.0 reason of length " + strconv.Itoa(n) + " "
	return s + strings.Repeat("x", n-len(s))
}

// largeMessage is about 300 KB with lines longer than line_length_limit
// (2048), which the writer splits into L records.
func largeMessage() string {
	var b strings.Builder
	b.WriteString("Subject: large\nFrom: Big <big@src.test>\n\n")
	for i := 0; b.Len() < 300_000; i++ {
		b.WriteString(strings.Repeat(strconv.Itoa(i%10), 70))
		b.WriteByte('\n')
		if i == 100 {
			b.WriteString(strings.Repeat("L", 5000) + "\n" + strings.Repeat("e", 2048) + "\n" + strings.Repeat("f", 2049) + "\n")
		}
	}
	return b.String()
}

type injection struct {
	label string
	msg   string
	args  []string
}

// sluiceSpoolInjections is a queue with every state and edge the
// listing tools render: each queue, markers, reasons (shared, switching,
// missing, long, at the padding boundary, needing JSON escapes), done
// recipients, the null sender, UTF-8 and 8-bit addresses, quoted local
// parts, long senders, ages in every qshape bucket, and content edges
// for postcat.
func sluiceSpoolInjections() []injection {
	plain := "Subject: test\nFrom: someone@src.test\n\nHello.\n"
	many := []string{"-T", "-150m", "-f", "many@src.test", "-r", refused}
	for i := 0; i < 30; i++ {
		many = append(many, "m"+strconv.Itoa(i)+"@d"+strconv.Itoa(i%6)+".example.org")
	}
	return []injection{
		{"maildrop", "Subject: maildrop sample\nFrom: Dora <dora@facts.test>\n\nqueued while down\n",
			[]string{"-q", "maildrop", "-F", "Dora Example", "-f", "dora@facts.test", "drop@example.com"}},
		{"maildrop-null-sender", plain, []string{"-q", "maildrop", "-f", "", "md@example.org"}},
		{"incoming-untried", plain, []string{"-f", "in@src.test", "r1@example.com", "r2@Example.COM", "postmaster"}},
		{"active", plain, []string{"-q", "active", "-f", "act@src.test", "-r", refused, "u@slow.test"}},
		{"multi-same-reason", plain, []string{"-T", "-7m30s", "-f", "multi@src.test", "-s", "4.4.1", "-r", refused,
			"2x@sub.example.com", "3x@sub.example.com", "x@sub.example.com"}},
		{"reason-switch-and-unavailable", plain, []string{"-T", "-25m", "-f", "lr@facts.test",
			"-R", "r1@longreason.test=" + longReason, "-R", "r2@example.com=" + refused,
			"r1@longreason.test", "r2@example.com", "r3@example.com"}},
		{"done-recipient", plain, []string{"-T", "-50m", "-f", "split@facts.test", "-r", refused,
			"-d", "gone@discard.test", "keep@example.org", "gone@discard.test"}},
		{"forced-expire", plain, []string{"-T", "-3h20m", "-e", "-f", "exp@src.test", "-r", refused, "user@example.net"}},
		{"hold", plain, []string{"-q", "hold", "-T", "-9h30m", "-f", "hold@src.test", "-r", refused, "h@example.com"}},
		{"hold-forced-expire", plain, []string{"-q", "hold", "-e", "-f", "he@src.test", "he@example.net"}},
		{"null-sender", "Subject: Undelivered Mail Returned to Sender\n\nbounce\n",
			[]string{"-T", "-30h", "-f", "", "-r", refused, "nullsender@example.org"}},
		{"utf8", "Subject: =?UTF-8?Q?gr=C3=BC=C3=9Fe?=\n\ngrüße\n",
			[]string{"-f", "jöhn@ünicode.test", "-F", "Jöhn Dœ", "-r", "450 4.2.0 Ünïcödé temporary failure", "ü@exämple.com", "plain@example.com"}},
		{"8bit", "Subject: latin\n\ncaf\xe9\n", []string{"-f", "\xe9t\xe9@latin.test", "-r", refused, "caf\xe9@latin.test"}},
		{"large", largeMessage(), []string{"-T", "-70m", "-f", "big@src.test", "-r", refused, "big@example.com"}},
		{"quoted-local-part", plain, []string{"-f", "q@src.test", "-r", refused, "john doe@example.com", "a.b@example.com"}},
		{"long-sender", plain, []string{"-f", "averyveryveryverylongsenderaddress.with.many.labels@some.very.long.domain.example.com",
			"-r", refused, "a3@another.example.net", "a1@example.com", "a2@example.com"}},
		{"reason-padding-boundary", plain, []string{"-f", "pad@src.test",
			"-R", "r75@example.com=" + reasonOfLen(75), "-R", "r76@example.com=" + reasonOfLen(76), "-R", "r77@example.com=" + reasonOfLen(77),
			"r75@example.com", "r76@example.com", "r77@example.com"}},
		{"json-escapes", plain, []string{"-f", "odd\"quote\\back@src.test",
			"-r", "450 4.7.1 \"quoted\" back\\slash\ttab /slash \x7f del", "esc@example.com"}},
		{"many-recipients", plain, many},
		{"crlf-no-final-newline", "Subject: crlf\r\nX-Folded: one\r\n two\r\n\r\nno newline at the end", []string{"-f", "crlf@src.test", "-r", refused, "c@example.com"}},
		{"empty-message", "", []string{"-f", "empty@src.test", "-r", refused, "e@example.com"}},
		{"body-without-headers", "From someone Sat Nov 28 10:00:00 2026\nnot a header\n\nSubject: not a header either\n",
			[]string{"-f", "nohdr@src.test", "-r", refused, "n@example.com"}},
		{"domain-normalisation", plain, []string{"-f", "Norm@SRC.Test", "-r", refused, "x@EXAMPLE..COM.", "y@.example.com", "z@a@b.example.com"}},
	}
}

// The main direction most users meet: a spool written by sluice, read
// by Postfix's tools and by sluice's.
func TestSluiceWrittenSpool(t *testing.T) {
	oracle.Require(t)
	root := filepath.Join(t.TempDir(), "spool")
	cfg := oracle.PostfixConfig(t, root)
	labels := map[string]string{}
	for _, in := range sluiceSpoolInjections() {
		ids := inject(t, cfg, in.msg, in.args...)
		if len(ids) != 1 {
			t.Fatalf("%s: inject printed %q", in.label, ids)
		}
		labels[ids[0]] = in.label
	}
	// inject, run as root, gives what it writes to the queue's owner, as
	// Postfix's daemons need; check before oracle.Run hands anything over.
	checkOwnership(t, root)

	pq := postfix(t, cfg, "postqueue", "-c", cfg, "-p")
	mustContain(t, "postqueue -p", pq.stdout, "*", "!#", "#", "!", "(reason unavailable)", "MAILER-DAEMON",
		"\n(host mx.example.com", "\"john doe\"@example.com", "-- ")
	// One blank line after each message: between them and before the trailer.
	if n := strings.Count(pq.stdout, "\n\n"); n != len(labels) {
		t.Errorf("fixture check: Postfix lists %d messages, want %d:\n%s", n, len(labels), pq.stdout)
	}
	compareQueue(t, cfg)
	comparePostcat(t, cfg, labels)

	for id, label := range labels {
		if label != "large" && label != "maildrop" {
			continue
		}
		q, err := spool.New(root).Locate(id)
		if err != nil {
			t.Fatal(err)
		}
		path := spool.New(root).Path(q, id)
		env, _, err := spool.ReadFile(path, spool.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		off := strconv.FormatInt(env.ContentOffset, 10)
		t.Run("postcat -s content-offset -oq "+label, func(t *testing.T) {
			same(t, cfg, compareOpts{}, "postcat", "-c", cfg, "-s", off, "-oq", id)
		})
		t.Run("postcat by path "+label, func(t *testing.T) {
			same(t, cfg, compareOpts{}, "postcat", "-c", cfg, path)
			same(t, cfg, compareOpts{}, "postcat", "-c", cfg, "-bh", path)
		})
	}

	// The same spool under enable_long_queue_ids = yes: the listing
	// switches to the long layout even though every ID here is short.
	cfgLong := oracle.PostfixConfig(t, root, "enable_long_queue_ids = yes")
	t.Run("long layout", func(t *testing.T) {
		same(t, cfgLong, compareOpts{}, "postqueue", "-c", cfgLong, "-p")
		same(t, cfgLong, compareOpts{}, "postqueue", "-c", cfgLong, "-j")
	})
}

// Long queue IDs and two levels of hash directories, written by sluice.
func TestSluiceWrittenSpoolLongIDs(t *testing.T) {
	oracle.Require(t)
	root := filepath.Join(t.TempDir(), "spool")
	cfg := oracle.PostfixConfig(t, root, "enable_long_queue_ids = yes", "hash_queue_depth = 2", "hash_queue_names = deferred, defer, hold")
	labels := map[string]string{}
	plain := "Subject: long ids\n\nbody\n"
	for _, in := range []injection{
		{"deferred", plain, []string{"-T", "-12m", "-f", "longid@facts.test", "-r", refused, "someone@example.com", "other@example.net"}},
		{"hold-hashed", plain, []string{"-q", "hold", "-f", "h@facts.test", "-r", longReason, "h@example.com"}},
		{"maildrop", plain, []string{"-q", "maildrop", "-f", "md@facts.test", "md@example.com"}},
		{"incoming", plain, []string{"-f", "in@facts.test", "in@example.org"}},
		{"forced-expire", plain, []string{"-e", "-T", "-45m", "-f", "fe@facts.test", "-r", refused, "fe@example.org"}},
	} {
		ids := inject(t, cfg, in.msg, in.args...)
		if len(ids) != 1 || !spool.IsLongID(ids[0]) {
			t.Fatalf("%s: inject printed %q, want one long ID", in.label, ids)
		}
		labels[ids[0]] = in.label
	}
	for id, label := range labels {
		if label == "deferred" {
			sp := spool.New(root)
			sp.HashDepth = 2
			p := sp.Path(spool.Deferred, id)
			if _, err := os.Stat(p); err != nil || strings.Count(strings.TrimPrefix(p, root), "/") != 4 {
				t.Errorf("deferred file is not two levels deep at %s: %v", p, err)
			}
		}
	}
	pq := postfix(t, cfg, "postqueue", "-c", cfg, "-p")
	mustContain(t, "postqueue -p", pq.stdout, "----Queue ID-----", "!", "#")
	compareQueue(t, cfg)
	comparePostcat(t, cfg, labels)
	cfgShort := oracle.PostfixConfig(t, root, "enable_long_queue_ids = no", "hash_queue_depth = 2", "hash_queue_names = deferred, defer, hold")
	t.Run("short layout", func(t *testing.T) {
		same(t, cfgShort, compareOpts{}, "postqueue", "-c", cfgShort, "-p")
	})
}

func TestEmptyQueue(t *testing.T) {
	oracle.Require(t)
	root := filepath.Join(t.TempDir(), "spool")
	cfg := oracle.PostfixConfig(t, root)
	pq := postfix(t, cfg, "postqueue", "-c", cfg, "-p")
	mustContain(t, "postqueue -p", pq.stdout, "Mail queue is empty")
	compareQueue(t, cfg)
	comparePostcat(t, cfg, nil)
}

// checkOwnership fails unless every file and directory under the
// queue directories that inject wrote belongs to the queue directory's
// owner, except maildrop files, which keep the caller as owner.
func checkOwnership(t *testing.T, root string) {
	t.Helper()
	uid, _, err := oracle.MailOwnerIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{spool.Incoming, spool.Active, spool.Deferred, spool.Hold, spool.Defer} {
		filepath.WalkDir(filepath.Join(root, q), func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return nil
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid {
				t.Errorf("inject left %s owned by uid %d, want the queue owner %d", p, st.Uid, uid)
			}
			return nil
		})
	}
}
