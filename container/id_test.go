package container

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

func TestValidateID(t *testing.T) {
	good := []string{"101", "1", "4294967295", "web", "web-1", "a.b_c", "0a", strings.Repeat("a", 63)}
	bad := []string{"", "0", "0101", "-1", "Web", "web/1", "../x", ".x", "_x", "a b", "init;", strings.Repeat("a", 64), "ve\n"}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		err := ValidateID(id)
		if !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}

// idSyntax, numeric, hostLabel and cgroupName are hand-written for speed; they must agree with the documented
// expressions on every string, checked here on all short strings over a small alphabet and
// on random longer ones.
func TestIDSyntaxMatchesExpression(t *testing.T) {
	idRE := regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	numRE := regexp.MustCompile(`^[0-9]+$`)
	labelRE := regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	cgroupRE := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	check := func(s string) {
		if got, want := hostLabel(s), labelRE.MatchString(s); got != want {
			t.Errorf("hostLabel(%q) = %v, expression says %v", s, got, want)
		}
		if got, want := cgroupName(s), cgroupRE.MatchString(s); got != want {
			t.Errorf("cgroupName(%q) = %v, expression says %v", s, got, want)
		}
		if got, want := idSyntax(s), idRE.MatchString(s); got != want {
			t.Errorf("idSyntax(%q) = %v, expression says %v", s, got, want)
		}
		if got, want := numeric(s), numRE.MatchString(s); got != want {
			t.Errorf("numeric(%q) = %v, expression says %v", s, got, want)
		}
	}
	alphabet := "a0_.-Z/ \n\xff"
	var walk func(prefix string, n int)
	walk = func(prefix string, n int) {
		check(prefix)
		if n > 0 {
			for i := 0; i < len(alphabet); i++ {
				walk(prefix+alphabet[i:i+1], n-1)
			}
		}
	}
	walk("", 4)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, r.IntN(70))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		check(string(b))
	}
	for _, n := range []int{62, 63, 64, 65} {
		check(strings.Repeat("a", n))
		check("A" + strings.Repeat("-", n-2) + "0")
	}
}

func TestValidateIDErrorNamesValueAndForm(t *testing.T) {
	err := ValidateID("Web/1")
	if err == nil || !strings.Contains(err.Error(), `"Web/1"`) || !strings.Contains(err.Error(), "[a-z0-9]") {
		t.Fatalf("error %v must name the id and the expected form", err)
	}
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"web", "db-1", "a1"} {
		if err := validateName(n); err != nil {
			t.Errorf("validateName(%q) = %v", n, err)
		}
	}
	// A name of only digits would shadow numeric ids.
	for _, n := range []string{"101", "", "Web", "x/y"} {
		if err := validateName(n); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("validateName(%q) = %v, want ErrInvalidValue", n, err)
		}
	}
}

func TestValidateHostname(t *testing.T) {
	for _, h := range []string{"web1", "web1.example.com", "a-b.c", "x"} {
		if err := validateHostname(h); err != nil {
			t.Errorf("validateHostname(%q) = %v", h, err)
		}
	}
	for _, h := range []string{"", "-web", "web-", "a..b", "a_b", "a b", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a"} {
		if err := validateHostname(h); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("validateHostname(%q) = %v, want ErrInvalidValue", h, err)
		}
	}
}

func TestValidateDescription(t *testing.T) {
	if err := validateDescription("front end, v2"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a\nb", "\x1b[31m", strings.Repeat("x", 1025)} {
		if err := validateDescription(d); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("validateDescription(%q) = %v", d, err)
		}
	}
}

func TestNormalizeUUID(t *testing.T) {
	for in, want := range map[string]string{
		"2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d":   "2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d",
		"{2F9A52AD-4B17-4C3E-9A5D-0E2F1C3B4A5D}": "2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d",
	} {
		if got, err := NormalizeUUID(in); err != nil || got != want {
			t.Errorf("NormalizeUUID(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5", "../../etc/passwd-0000-0000-0000-000000000000", "{}"} {
		if _, err := NormalizeUUID(bad); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("NormalizeUUID(%q): %v", bad, err)
		}
	}
}
