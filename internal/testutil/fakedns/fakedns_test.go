package fakedns

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

func TestResolverAgainstTable(t *testing.T) {
	s := Start(t)
	s.AddMX("example.test", 20, "mx2.example.test")
	s.AddMX("example.test", 10, "mx1.example.test")
	s.AddA("mx1.example.test", "127.0.0.2", "127.0.0.3")
	s.AddAAAA("mx1.example.test", "::1")
	s.AddName("nomx.example.test")
	s.Fail("busted.test", "MX", ServFail)
	s.Fail("gone.test", "", NXDomain)
	s.Fail("slow.test", "", Timeout)
	r := s.Resolver()
	ctx := context.Background()

	mx, err := r.LookupMX(ctx, "Example.TEST.")
	if err != nil {
		t.Fatal(err)
	}
	// The Go resolver sorts MX records by preference.
	if len(mx) != 2 || mx[0].Host != "mx1.example.test." || mx[0].Pref != 10 || mx[1].Host != "mx2.example.test." {
		t.Errorf("MX = %v", mx)
	}
	ips, err := r.LookupIPAddr(ctx, "mx1.example.test.")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ip := range ips {
		got = append(got, ip.IP.String())
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"127.0.0.2", "127.0.0.3", "::1"}) {
		t.Errorf("addresses = %v", got)
	}

	tests := []struct {
		name                       string
		lookup                     func(context.Context) error
		notFound, temporary, tmout bool
	}{
		{"NODATA", func(ctx context.Context) error { _, err := r.LookupMX(ctx, "nomx.example.test."); return err }, true, false, false},
		{"no such name", func(ctx context.Context) error { _, err := r.LookupMX(ctx, "nosuch.test."); return err }, true, false, false},
		{"injected NXDOMAIN", func(ctx context.Context) error { _, err := r.LookupIPAddr(ctx, "gone.test."); return err }, true, false, false},
		{"SERVFAIL", func(ctx context.Context) error { _, err := r.LookupMX(ctx, "busted.test."); return err }, false, true, false},
		{"timeout", func(ctx context.Context) error { _, err := r.LookupMX(ctx, "slow.test."); return err }, false, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := tt.lookup(ctx)
			var de *net.DNSError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *net.DNSError", err, err)
			}
			if de.IsNotFound != tt.notFound || de.IsTemporary != tt.temporary || de.IsTimeout != tt.tmout {
				t.Errorf("%+v: want notfound=%v temporary=%v timeout=%v", de, tt.notFound, tt.temporary, tt.tmout)
			}
		})
	}

	// A failure can be lifted again.
	s.Fail("busted.test", "MX", 0)
	s.AddMX("busted.test", 0, "mx1.example.test")
	if mx, err := r.LookupMX(ctx, "busted.test."); err != nil || len(mx) != 1 {
		t.Errorf("after lifting the failure: %v, %v", mx, err)
	}
	if q := s.Queries(); len(q) == 0 || q[0] != (Query{"example.test.", "MX"}) {
		t.Errorf("queries = %v", q)
	}
}
