package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/internal/config"
	"sluice/internal/privsep"
	"sluice/internal/spool"
)

// TestLocalDeliverJob: local-deliver's work on a queue file passed as
// an open file: the main.cf of the directory it is given, aliases into
// a mailbox, an unknown user bounced, and a forward to a remote address
// written to maildrop/ as sendmail writes it (pickup queues it).
func TestLocalDeliverJob(t *testing.T) {
	if os.Geteuid() != 0 {
		// Delivery to root's mailbox is possible only as root (the
		// agent never writes as another user than its own).
		t.Skip("needs root")
	}
	top := t.TempDir()
	mail := filepath.Join(top, "mail")
	os.Mkdir(mail, 0o755)
	aliases := filepath.Join(top, "aliases")
	os.WriteFile(aliases, []byte("postmaster: root\nlist: carol@remote.test, root\n"), 0o644)
	dir, queue := mailConfig(t, "mail_spool_directory = "+mail+"\nalias_maps = texthash:"+aliases+"\n")
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := OpenSpool(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Create(); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	qf, err := sp.NewFile(spool.Incoming, now)
	if err != nil {
		t.Fatal(err)
	}
	qf.WriteEnvelope(&spool.NewEnvelope{Arrival: now, Sender: "dave@remote.test", Recipients: []spool.NewRecipient{{Address: "postmaster@facts.test"}}})
	for _, l := range []string{"Subject: to the list", "", "From the start of a line."} {
		qf.WriteLine([]byte(l))
	}
	if err := qf.Commit(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(qf.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	job := &privsep.LocalJob{QueueID: qf.ID, Sender: "dave@remote.test", Recipients: []privsep.DeliveryRecipient{
		{Address: "postmaster@facts.test", Orig: "postmaster@facts.test"},
		{Address: "list@facts.test"},
		{Address: "ghost@facts.test"},
	}}
	out, err := localDeliver(context.Background(), cfg, job, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Results) != 3 {
		t.Fatalf("results %+v", out)
	}
	if r := out.Results[0]; r.Status != "sent" || r.Reason != "delivered to mailbox" || len(r.Finals) != 1 || r.Finals[0].To != "root@facts.test" {
		t.Errorf("postmaster: %+v", r)
	}
	r := out.Results[1]
	if r.Status != "sent" || len(r.Finals) != 2 || r.Finals[0].To != "carol@remote.test" || !regexp.MustCompile(`^forwarded as [0-9A-F]+$`).MatchString(r.Finals[0].Text) ||
		r.Finals[1].Text != "delivered to mailbox" {
		t.Errorf("list: %+v", r)
	}
	if r := out.Results[2]; r.Status != "bounced" || r.DSN != "5.1.1" || r.Reason != `unknown user: "ghost"` {
		t.Errorf("ghost: %+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(mail, "root"))
	if strings.Count(string(b), "\n>From the start of a line.\n") != 2 || !strings.Contains(string(b), "\nX-Original-To: postmaster@facts.test\nDelivered-To: postmaster@facts.test\n") {
		t.Errorf("root's mailbox:\n%s", b)
	}
	// The forwarded copy: a maildrop file with the list's sender and a
	// Delivered-To: for the list, named as the result says.
	files := maildropFiles(t, queue)
	want := "A rewrite_context=local\nF \nS dave@remote.test\nR carol@remote.test\nM \nN Delivered-To: list@facts.test\n"
	if len(files) != 1 || !strings.HasPrefix(files[0], "T (time)\n"+want) || !strings.Contains(files[0], "N From the start of a line.\nX \nE \n") {
		t.Errorf("maildrop: %q", files)
	}
	id := strings.TrimPrefix(r.Finals[0].Text, "forwarded as ")
	if _, err := os.Stat(filepath.Join(queue, spool.Maildrop, id)); err != nil {
		t.Errorf("forwarded as %s: %v", id, err)
	}
	// The file is still open for the caller.
	if _, err := f.Stat(); err != nil {
		t.Errorf("queue file closed: %v", err)
	}
}
