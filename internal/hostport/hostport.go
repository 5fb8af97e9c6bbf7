// Package hostport holds the one definition of an upstream: the lower-cased
// host:port of a URL (ASCII letters lower-cased: hosts on the wire are
// ASCII), the scheme's default port filled in.
package hostport

import (
	"net/url"
	"strings"
)

// Append appends the upstream of u to b and returns the extended slice. It
// allocates only when b lacks the room.
func Append(b []byte, u *url.URL) []byte {
	host := u.Host
	name, port := host, ""
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		name, port = host[:i], host[i+1:]
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
	ipv6 := strings.IndexByte(name, ':') >= 0
	if ipv6 {
		b = append(b, '[')
	}
	n := len(b)
	b = append(b, name...)
	if hasUpper(name) {
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

// hasUpper reports whether s holds an ASCII upper-case letter, eight bytes
// at a time: hosts are nearly always lower-case already.
func hasUpper(s string) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	for len(s) >= 8 {
		x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
		y := x &^ high // no carry between bytes below
		// A byte's high bit: set in y+(0x80-'A') when it is >= 'A', in
		// y+(0x80-'Z'-1) when it is > 'Z'; x's when it is not ASCII.
		if (y+ones*(0x80-'A'))&^(y+ones*(0x80-'Z'-1))&^x&high != 0 {
			return true
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}
