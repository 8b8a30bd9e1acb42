package rewrite

import (
	"net/netip"
	"strconv"
	"strings"
)

// validDomain reports whether d (no trailing dot) is a destination
// Postfix accepts: a host name or an address literal.
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		return validLiteral(d)
	}
	return validHostname(d)
}

// validHostname: at most 255 bytes; labels of 1 to 63 letters, digits,
// "-" or "_", not starting or ending with "-"; not all numeric. Bytes
// above 0x7f count as letters (UTF-8 domains, for SMTPUTF8).
func validHostname(d string) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	numeric := true
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_', c >= 0x80:
				numeric = false
			default:
				return false
			}
		}
	}
	return !numeric
}

// isNumericDomain reports whether d is digits and dots only.
func isNumericDomain(d string) bool {
	return d != "" && strings.Trim(d, "0123456789.") == ""
}

// validLiteral reports whether "[…]" is an IPv4 address (four decimal
// fields up to 255; leading zeros allowed) or "IPv6:" and an IPv6
// address.
func validLiteral(d string) bool {
	if len(d) < 2 || d[0] != '[' || d[len(d)-1] != ']' {
		return false
	}
	in := d[1 : len(d)-1]
	if len(in) > 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		return err == nil && a.Is6() && a.Zone() == ""
	}
	_, ok := parseIPv4(in)
	return ok
}

// parseIPv4 checks Postfix's IPv4 syntax and returns the fields as
// written.
func parseIPv4(s string) ([4]string, bool) {
	var f [4]string
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return f, false
	}
	for i, p := range parts {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			return f, false
		}
		// Leading zeros are allowed ("127.000.000.001").
		if v := strings.TrimLeft(p, "0"); len(v) > 3 {
			return f, false
		} else if n, _ := strconv.Atoi("0" + v); n > 255 {
			return f, false
		}
		f[i] = p
	}
	return f, true
}

// literalAddr returns the address a valid literal names, for comparison
// with this host's addresses. A field with a leading zero is octal, as
// the C library reads it when Postfix compares ("[0177.0.0.1]" is
// 127.0.0.1); one that is not valid octal names no address.
func literalAddr(d string) (netip.Addr, bool) {
	if !validLiteral(d) {
		return netip.Addr{}, false
	}
	in := d[1 : len(d)-1]
	if len(in) > 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		return a, err == nil
	}
	f, _ := parseIPv4(in)
	var b [4]byte
	for i, p := range f {
		base := 10
		if len(p) > 1 && p[0] == '0' {
			base = 8
		}
		n, err := strconv.ParseUint(p, base, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

// needsQuotes reports whether a local part is not an RFC 5321 dot-string
// and so is written as a quoted string.
func needsQuotes(local string) bool {
	if local == "" || local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return true
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c <= ' ' || c == 0x7f || strings.IndexByte("()<>@,;:\\\".[]", c) >= 0 && c != '.' {
			return true
		}
	}
	return false
}
