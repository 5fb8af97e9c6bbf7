// Package hostport holds the one definition of an upstream: the lower-cased
// host:port of a URL (ASCII letters lower-cased: hosts on the wire are
// ASCII), the scheme's default port filled in.
package hostport

import (
	"math/bits"
	"net/url"
	"strings"
)

// Append appends the upstream of u to b and returns the extended slice. It
// allocates only when b lacks the room.
func Append(b []byte, u *url.URL) []byte {
	host := u.Host
	name, port := host, ""
	colon, upper := scan(host)
	if colon >= 0 && strings.IndexByte(host[colon:], ']') < 0 {
		name, port = host[:colon], host[colon+1:]
	}
	if len(name) > 1 && name[0] == '[' && name[len(name)-1] == ']' {
		name = name[1 : len(name)-1]
	}
	if port == "" {
		if u.Scheme == "https" {
			port = "443"
		} else {
			port = "80"
		}
	}
	ipv6 := colon >= 0 && strings.IndexByte(name, ':') >= 0 // a host without a colon is no IPv6 literal
	if ipv6 {
		b = append(b, '[')
	}
	n := len(b)
	b = append(b, name...)
	if upper {
		for i, c := range b[n:] {
			if 'A' <= c && c <= 'Z' {
				b[n+i] = c + 'a' - 'A'
			}
		}
	}
	if ipv6 {
		b = append(b, ']')
	}
	b = append(b, ':')
	return append(b, port...)
}

// scan returns the index of the last ':' in s (-1 if none) and whether s
// holds an ASCII upper-case letter, eight bytes at a time: a host is
// short, and nearly always lower-case already.
func scan(s string) (colon int, upper bool) {
	const ones, low7, high = 0x0101010101010101, 0x7f7f7f7f7f7f7f7f, 0x8080808080808080
	colon = -1
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		y := x &^ high // ASCII bits only: no carry between bytes below
		// A byte's high bit: set in y+(0x80-'A') when it is >= 'A', in
		// y+(0x80-'Z'-1) when it is > 'Z'; x's when it is not ASCII.
		if (y+ones*(0x80-'A'))&^(y+ones*(0x80-'Z'-1))&^x&high != 0 {
			upper = true
		}
		// A byte of z is zero where x has ':'; its high bit stays clear in
		// ((z&low7)+low7)|z exactly there.
		z := x ^ ones*':'
		if m := ^(((z & low7) + low7) | z | low7); m != 0 {
			colon = i + (bits.Len64(m)-1)/8
		}
	}
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case c == ':':
			colon = i
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	return colon, upper
}
