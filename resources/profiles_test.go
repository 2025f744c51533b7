package resources

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestProfileUserNS(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("priv", `{"userns": "no", "ram": "256M"}`)
	write("plain", `{"ram": "256M"}`)
	write("bad", `{"userns": "maybe"}`)
	for name, want := range map[string]string{"priv": "no", "plain": "", "vswap-1g": "", "none": ""} {
		if got, err := ProfileUserNS(dir, name); err != nil || got != want {
			t.Errorf("ProfileUserNS(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := ProfileUserNS(dir, "bad"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad userns value: %v", err)
	}
	// The limits of a profile that also says userns load as before.
	l, err := Profile(dir, "priv", Host{CPUs: 2, Nodes: 1, NoFileHi: 1 << 20})
	if err != nil || l.RAM == nil || *l.RAM != 256<<20 {
		t.Fatalf("Profile(priv) = %+v, %v", l, err)
	}
}
