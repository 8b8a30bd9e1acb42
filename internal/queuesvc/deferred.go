package queuesvc

import (
	"context"
	"net"
	"sort"
	"strings"

	"sluice/internal/manage"
)

// DeferredFor is the mail that waits in deferred/ for one domain: its
// messages, its pending recipients in the domain, and their last reasons,
// most frequent first. sluice probe and GET /api/v1/probe show it beside
// what the probe found, so the admin sees at once whether the destination
// answers now as it answered the queue manager.
type DeferredFor struct {
	Domain     string        `json:"domain"`
	Messages   int           `json:"messages"`
	Recipients int           `json:"recipients"`
	Reasons    []ReasonCount `json:"reasons,omitempty"`
}

// ReasonCount is one last reason and how many recipients have it.
type ReasonCount struct {
	Reason     string `json:"reason"`
	Recipients int    `json:"recipients"`
}

// NoReasonYet stands for the reason of a deferred recipient whose
// defer log has no entry (yet).
const NoReasonYet = "(no reason yet)"

// ProbeDomain is the mail domain a probe target names, lower case
// without a trailing dot; "" for an address literal or a host with a
// port, which name no domain of the queue, and for anything that is no
// host name at all: the domain becomes a selector term, and white space,
// '=' or a wildcard would make it another selection.
func ProbeDomain(target string) string {
	t := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(target), "."))
	if t == "" || net.ParseIP(t) != nil {
		return ""
	}
	for _, c := range []byte(t) {
		if c <= ' ' || c == 0x7f || strings.IndexByte("[]:=,*?\"'()<>@/", c) >= 0 {
			return ""
		}
	}
	return t
}

// EachFunc calls fn for every message sel selects, with reasons.
type EachFunc func(ctx context.Context, sel *manage.Selector, fn func(*manage.Message) error) error

// DeferredTo gathers DeferredFor of domain from the messages each lists.
// Only recipients in the domain count (a message to several domains is
// selected by any of them), and only those still pending.
func DeferredTo(ctx context.Context, domain string, each EachFunc) (*DeferredFor, error) {
	sel, err := manage.ParseSelector("domain=" + domain)
	if err != nil {
		return nil, BadRequest("%v", err)
	}
	d := &DeferredFor{Domain: domain}
	count := map[string]int{}
	err = each(ctx, sel, func(m *manage.Message) error {
		if m.Queue != "deferred" {
			return nil
		}
		n := 0
		for _, rc := range m.Recipients {
			_, dom, _ := strings.Cut(rc.Address, "@")
			if rc.Done || !strings.EqualFold(strings.TrimSuffix(dom, "."), domain) {
				continue
			}
			n++
			reason := rc.Reason
			if reason == "" {
				reason = NoReasonYet
			}
			count[reason]++
		}
		if n > 0 {
			d.Messages++
			d.Recipients += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for reason, n := range count {
		d.Reasons = append(d.Reasons, ReasonCount{reason, n})
	}
	sort.Slice(d.Reasons, func(i, j int) bool {
		a, b := d.Reasons[i], d.Reasons[j]
		return a.Recipients > b.Recipients || a.Recipients == b.Recipients && a.Reason < b.Reason
	})
	return d, nil
}

// DeferredTo is DeferredTo over this service's messages (the model in
// the daemon, else the files).
func (s *Service) DeferredTo(ctx context.Context, domain string) (*DeferredFor, error) {
	return DeferredTo(ctx, domain, func(ctx context.Context, sel *manage.Selector, fn func(*manage.Message) error) error {
		_, err := s.Each(ctx, sel, true, fn)
		return err
	})
}
