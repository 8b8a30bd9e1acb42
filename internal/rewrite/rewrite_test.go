package rewrite

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The relay tricks of the issue, against a server whose myhostname is
// mx.example and whose own address is 192.0.2.10: each must be refused to
// an outside client with Postfix's reply, and passed for a trusted one.
func TestRelayTricksRefused(t *testing.T) {
	cfg := DefaultConfig("mx.example", []string{"mx.example", "localhost"})
	cfg.OwnAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	r := New(cfg)
	tests := []struct {
		path, reply string
		class       Class
		resolved    string
	}{
		{"<user%outside.example@mx.example>", "554 5.7.1 <user%outside.example@mx.example>: Relay access denied", Default, "user@outside.example"},
		{"<outside.example!user@mx.example>", "554 5.7.1 <outside.example!user@mx.example>: Relay access denied", Default, "user@outside.example"},
		{`<"user@outside.example"@mx.example>`, "554 5.7.1 <user@outside.example@mx.example>: Relay access denied", Default, "user@outside.example"},
		{"<user@outside.example@mx.example>", "554 5.7.1 <user@outside.example@mx.example>: Relay access denied", Default, "user@outside.example"},
		{"<@mx.example:user@outside.example>", "554 5.7.1 <user@outside.example>: Relay access denied", Default, "user@outside.example"},
		{"<user%outside.example@[192.0.2.10]>", "554 5.7.1 <user%outside.example@[192.0.2.10]>: Relay access denied", Default, "user@outside.example"},
		{"<user@[192.0.2.11]>", "554 5.7.1 <user@[192.0.2.11]>: Relay access denied", Default, "user@[192.0.2.11]"},
		{"<user@MX.EXAMPLE.>", "", Local, "user@MX.EXAMPLE"},
		{"<user@[192.0.2.10]>", "", Local, "user@[192.0.2.10]"},
		{"<@a.example,@b.example:user@mx.example>", "", Local, "user@mx.example"},
		{"<postmaster>", "", Local, "postmaster@mx.example"},
		{"<@mx.example>", "", Local, "MAILER-DAEMON@mx.example"},
		{"<user%localhost@mx.example>", "", Local, "user@localhost"},
		{"<user@1.2.3.4>", "501 5.1.3 Bad recipient address syntax", Default, "user@1.2.3.4"},
		{"<user@>", "501 5.1.3 Bad recipient address syntax", Default, "user@"},
	}
	for _, tt := range tests {
		addr, err := ParsePath(tt.path)
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		v := r.Check(addr, false)
		if v.Reply() != tt.reply || v.Result.Class != tt.class || v.Result.Address != tt.resolved {
			t.Errorf("%s: %q class %v resolved %q; want %q %v %q", tt.path, v.Reply(), v.Result.Class, v.Result.Address, tt.reply, tt.class, tt.resolved)
		}
		if trusted := r.Check(addr, true); trusted.OK == strings.HasPrefix(tt.reply, "501 ") {
			t.Errorf("%s: trusted %+v", tt.path, trusted)
		}
	}
}

func TestParsePath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<user@example.com>", "user@example.com"},
		{"user@example.com", "user@example.com"},
		{" <@a,@b:user@example.com> ", "user@example.com"},
		{`<"user@outside"@example.com>`, "user@outside@example.com"},
		{`<"a\"b c"@example.com>`, `a"b c@example.com`},
		{`<user\@x@example.com>`, "user@x@example.com"},
		{"<user@example.com (comment)>", "user@example.com"},
		{"<@example.com>", "@example.com"},
		{"<>", ""},
		{"<postmaster>", "postmaster"},
	}
	for _, tt := range tests {
		got, err := ParsePath(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"<user@example.com", "user@example.com>", `<"user@example.com>`, "<a(b@example.com>", `<user\>`, "<a<b>"} {
		if got, err := ParsePath(bad); !errors.Is(err, ErrPathSyntax) {
			t.Errorf("ParsePath(%q) = %q, %v; want ErrPathSyntax", bad, got, err)
		}
	}
}

func TestOwnAddrs(t *testing.T) {
	listeners := []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 2525},
		&net.TCPAddr{IP: net.IPv4zero, Port: 25},
	}
	ifaces := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("192.0.2.10"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		}, nil
	}
	got, err := OwnAddrs(listeners, []string{"[198.51.100.7]"}, ifaces)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("198.51.100.7")}
	if !slices.Equal(got, want) {
		t.Errorf("OwnAddrs = %v, want %v", got, want)
	}
	// Without a wildcard listener the interfaces are not asked.
	got, err = OwnAddrs(listeners[:1], nil, func() ([]net.Addr, error) { return nil, errors.New("not asked") })
	if err != nil || !slices.Equal(got, want[:1]) {
		t.Errorf("OwnAddrs = %v, %v", got, err)
	}
	if _, err := OwnAddrs(nil, []string{"proxy.example"}, nil); err == nil {
		t.Error("a host name in proxy_interfaces was accepted")
	}
}
