package milter

import (
	"context"
	"net/netip"

	"sluice/internal/cleanup"
)

// NewLocal returns the filter for one local submission
// (non_smtpd_milters). As Postfix's cleanup does for non-SMTP mail, it
// plays an SMTP session to the milters when the message is complete:
// connect from localhost [127.0.0.1], HELO localhost, MAIL, RCPT for each
// recipient, DATA, then the content. A refusal anywhere refuses the
// message (pickup keeps it for a 4xx and sets it aside for a 5xx);
// logf writes the "ID: milter-reject: ..." lines.
func NewLocal(cfg *Config, logf func(format string, args ...any)) cleanup.Filter {
	return &localFilter{cfg: cfg, logf: logf}
}

type localFilter struct {
	cfg  *Config
	logf func(format string, args ...any)
}

func (lf *localFilter) Filter(ctx context.Context, c *cleanup.Content) (cleanup.Verdict, error) {
	lo := netip.MustParseAddr("127.0.0.1")
	s, r := New(lf.cfg, ConnInfo{ClientName: "localhost", ClientPTR: "localhost", ClientAddr: lo, ServerAddr: lo})
	defer s.Close()
	f := &Filter{S: s, Log: MessageLog{Origin: "localhost[127.0.0.1]", Proto: "SMTP", Helo: "localhost", Log: lf.logf}}
	steps := []func() Result{
		func() Result { return r },
		func() Result { return s.Helo("localhost", "") },
		func() Result { return s.Mail(c.Sender, nil, AuthInfo{}) },
	}
	for _, rc := range c.Recipients {
		steps = append(steps, func() Result { return s.Rcpt(rc.Address, nil) })
	}
	steps = append(steps, s.Data)
	for _, step := range steps {
		res := step()
		if res.Discard {
			f.log(c, "milter-discard", "milter triggers DISCARD action")
			return cleanup.Verdict{Action: cleanup.FilterDiscard}, nil
		}
		if res.Refused() {
			return f.reject(c, res.Reply), nil
		}
	}
	return f.Filter(ctx, c)
}
