// Package resources holds vectl's typed resource limits: parsing of vzctl-style values
// ("512M", "unlimited", "150"), validation, the mapping to cgroup settings and usage reading.
// It imports no other vectl package.
package resources

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrInvalid means a resource value could not be parsed or is out of range.
var ErrInvalid = errors.New("invalid value")

// Unlimited is the parsed value of "unlimited".
const Unlimited int64 = -1

// Size units, 1024-based as in vzctl.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
	PiB
)

var suffixes = map[byte]int64{'K': KiB, 'M': MiB, 'G': GiB, 'T': TiB, 'P': PiB}

// ParseSize parses a vzctl size: a whole number with an optional K, M, G, T or P suffix
// (1024-based, either case), or "unlimited" (Unlimited). A number without a suffix counts in
// unit bytes (1 for bytes, KiB for vzctl's 1K disk blocks, 4096 for pages).
func ParseSize(s string, unit int64) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "unlimited") {
		return Unlimited, nil
	}
	mult := unit
	if n := len(s); n > 0 {
		if m, ok := suffixes[upper(s[n-1])]; ok {
			mult, s = m, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || s == "" || s[0] == '+' {
		return 0, fmt.Errorf("%w: size %q: use a whole number with an optional K, M, G, T suffix, or unlimited", ErrInvalid, in)
	}
	if mult > 0 && v > math.MaxInt64/mult {
		return 0, fmt.Errorf("%w: size %q is too large", ErrInvalid, in)
	}
	return v * mult, nil
}

func upper(b byte) byte {
	if b >= 'a' && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}

// FormatSize writes bytes back in the shortest exact vzctl form ("512M", "1G", "1500").
func FormatSize(v int64) string {
	if v == Unlimited {
		return "unlimited"
	}
	for _, u := range []struct {
		s byte
		m int64
	}{{'P', PiB}, {'T', TiB}, {'G', GiB}, {'M', MiB}, {'K', KiB}} {
		if v != 0 && v%u.m == 0 {
			return strconv.FormatInt(v/u.m, 10) + string(u.s)
		}
	}
	return strconv.FormatInt(v, 10)
}
