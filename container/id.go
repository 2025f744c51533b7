package container

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
)

var maxDescLen = 1024

// ValidateID checks a VE id: a number without leading zeros other than 0 (as vzctl's CTID),
// or a name of lower-case letters, digits, '_', '.' and '-' starting with a letter or digit,
// at most 63 characters.
func ValidateID(id string) error {
	switch {
	case !idSyntax(id):
		return fmt.Errorf("%w %q: use a number (101) or a name matching [a-z0-9][a-z0-9_.-]{0,62}", ErrInvalidID, id)
	case numeric(id) && (id == "0" || strings.HasPrefix(id, "0")):
		return fmt.Errorf("%w %q: numeric ids start at 1 and have no leading zeros", ErrInvalidID, id)
	}
	return nil
}

// validateName checks a VE's --name: the id syntax, but not all digits, so that a name can
// never be mistaken for a numeric id.
func validateName(name string) error {
	if !idSyntax(name) || numeric(name) {
		return fmt.Errorf("%w: name %q: use [a-z0-9][a-z0-9_.-]{0,62}, not only digits", ErrInvalidValue, name)
	}
	return nil
}

// validateHostname checks an RFC 1123 host name (dots allowed, at most 253 characters).
func validateHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%w: hostname %q: 1 to 253 characters", ErrInvalidValue, h)
	}
	for _, l := range strings.Split(h, ".") {
		if !hostLabel(l) {
			return fmt.Errorf("%w: hostname %q: labels of letters, digits and '-', separated by dots", ErrInvalidValue, h)
		}
	}
	return nil
}

func validateDescription(d string) error {
	if len(d) > maxDescLen {
		return fmt.Errorf("%w: description longer than %d bytes", ErrInvalidValue, maxDescLen)
	}
	for _, r := range d {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: description contains a control character", ErrInvalidValue)
		}
	}
	return nil
}

// idSyntax reports whether s matches [a-z0-9][a-z0-9_.-]{0,62}. Every command checks an id,
// so this is plain code rather than a regular expression compiled in each process.
func idSyntax(s string) bool {
	if len(s) == 0 || len(s) > 63 || !isLowerAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' }

// hostLabel reports whether l is one label of an RFC 1123 host name: 1 to 63 letters,
// digits and '-', starting and ending with a letter or digit. (Checked by hand rather than
// by a regular expression: compiling one with a counted repetition costs a fresh process
// about half a millisecond.)
func hostLabel(l string) bool {
	if len(l) == 0 || len(l) > 63 || !isAlnum(l[0]) || !isAlnum(l[len(l)-1]) {
		return false
	}
	for i := 1; i < len(l)-1; i++ {
		if !isAlnum(l[i]) && l[i] != '-' {
			return false
		}
	}
	return true
}

// numeric reports whether s is one or more ASCII digits.
func numeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lazyRegexp compiles a regular expression on first use rather than at program start:
// every vectl process (and every VE init and monitor, the same binary) would otherwise
// pay for compiling all of them.
func lazyRegexp(expr string) func() *regexp.Regexp {
	return sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })
}
