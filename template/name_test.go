package template

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"debian-12-x86_64-minimal", true},
		{"busybox-1.35-x86_64", true},
		{"centos-7-x86_64", true},
		{"ubuntu-24.04-amd64+dev", true},
		{"a", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{".hidden", false},
		{".tmp-foo", false},
		{"-option", false},
		{"_x", false},
		{"a/b", false},
		{"../etc", false},
		{"..", false},
		{"a b", false},
		{"a\x00b", false},
		{"débian", false},
		{"a:b", false},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("ValidateName(%q) = %v, want ErrInvalidName", tt.name, err)
			} else if !strings.Contains(err.Error(), "dist-version-arch") {
				t.Errorf("ValidateName(%q) = %q, want it to say the expected form", tt.name, err)
			}
		}
	}
}

// validName is a loop for speed; it must agree with the documented expression on every
// string: all short strings over a small alphabet, random longer ones and the length limits.
func TestValidNameMatchesExpression(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
	check := func(s string) {
		if got, want := validName(s), re.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, expression says %v", s, got, want)
		}
	}
	alphabet := "aZ0._+-/ \x00\xff"
	var walk func(prefix string, n int)
	walk = func(prefix string, n int) {
		check(prefix)
		if n > 0 {
			for i := 0; i < len(alphabet); i++ {
				walk(prefix+alphabet[i:i+1], n-1)
			}
		}
	}
	walk("", 3)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(140))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(string(b))
	}
	for _, n := range []int{127, 128, 129} {
		check(strings.Repeat("a", n))
	}
}

func TestNameFromFile(t *testing.T) {
	tests := []struct {
		path, want string
	}{
		{"/srv/debian-12-x86_64.tar.gz", "debian-12-x86_64"},
		{"debian-12-x86_64.tgz", "debian-12-x86_64"},
		{"/x/alpine-3.20-x86_64.tar.xz", "alpine-3.20-x86_64"},
		{"alpine-3.20-x86_64.txz", "alpine-3.20-x86_64"},
		{"busybox-1.35-x86_64.tar.zst", "busybox-1.35-x86_64"},
		{"busybox-1.35-x86_64.tzst", "busybox-1.35-x86_64"},
		{"plain.tar", "plain"},
		{"noext", "noext"},
		{"rootfs.tar.gz.tar", "rootfs.tar.gz"},
		{"/x/.tar.gz", ""},
		{"/x/.hidden.tar", ""},
		{"/x/-opt.tar", ""},
		{"/", ""},
	}
	for _, tt := range tests {
		got, err := NameFromFile(tt.path)
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("NameFromFile(%q) = %q, %v; want ErrInvalidName", tt.path, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NameFromFile(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}
