package pickup

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gm "github.com/d--j/go-milter"

	"sluice/internal/milter"
	"sluice/internal/spool"
)

// stamp is a milter that adds a header, or refuses with reply.
type stamp struct {
	gm.NoOpMilter
	reply string
}

func (s *stamp) EndOfMessage(m gm.Modifier) (*gm.Response, error) {
	if s.reply != "" {
		return gm.RejectWithCodeAndReason(451, s.reply)
	}
	if err := m.AddHeader("X-Local-Milter", "seen "+m.Get("{client_addr}")); err != nil {
		return nil, err
	}
	return gm.RespAccept, nil
}

func localMilters(t *testing.T, reply string) *milter.Config {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "m.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := gm.NewServer(gm.WithMilter(func() gm.Milter { return &stamp{reply: reply} }), gm.WithActions(gm.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	specs, err := milter.ParseList("unix:"+sock, milter.Spec{DefaultAction: "tempfail", Protocol: 6,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 5 * time.Second, ContentTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &milter.Config{Milters: specs, ConnectMacros: []string{"{client_addr}"}, EOMMacros: []string{"i", "{client_addr}"}}
}

// TestNonSMTPDMilters: mail from sendmail goes through non_smtpd_milters;
// a milter's 4xx keeps the maildrop file for the next scan.
func TestNonSMTPDMilters(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
	}{{"stamped", ""}, {"tempfail keeps maildrop", "4.7.1 later"}} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t)
			fx.p.cfg.Milters = localMilters(t, tc.reply)
			id := drop(t, fx.sp, &DropEnvelope{Arrival: time.Now(), Sender: "u@facts.test",
				Recipients: []DropRecipient{{Address: "r@example.com"}}}, []string{"Subject: local", "", "hi"}, nil)
			fx.p.Scan(context.Background())
			_, dropErr := os.Lstat(filepath.Join(fx.sp.Root, spool.Maildrop, id))
			ents, _ := fx.sp.List(spool.Incoming)
			if tc.reply != "" {
				if dropErr != nil || len(ents) != 0 {
					t.Fatalf("refused: maildrop file %v, incoming %d", dropErr, len(ents))
				}
				return
			}
			if len(ents) != 1 {
				t.Fatalf("incoming holds %d; log:\n%s", len(ents), fx.log.String())
			}
			c, err := spool.OpenContent(fx.sp.Path(spool.Incoming, ents[0].ID))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			text, _ := io.ReadAll(c)
			if !strings.Contains(string(text), "X-Local-Milter: seen 127.0.0.1\n") {
				t.Errorf("queued without the milter's header:\n%s", text)
			}
		})
	}
}
