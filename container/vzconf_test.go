package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vectl/vectl/container/store"
)

func TestVZConfLine(t *testing.T) {
	for line, want := range map[string][2]string{
		`KEY="a b"`:           {"KEY", "a b"},
		`KEY=plain # note`:    {"KEY", "plain"},
		`KEY='single'`:        {"KEY", "single"},
		` KEY="esc \" q"`:     {"KEY", `esc " q`},
		`VE_ROOT="/vz/$VEID"`: {"VE_ROOT", "/vz/$VEID"},
		`KEY=""`:              {"KEY", ""},
		`#UUID: 1234`:         {"", ""},
		`not a line`:          {"", ""},
		`BAD-KEY="x"`:         {"", ""},
	} {
		k, v, ok := vzConfLine(line)
		if ok != (want[0] != "") || k != want[0] || v != want[1] {
			t.Errorf("vzConfLine(%q) = %q %q %v, want %q %q", line, k, v, ok, want[0], want[1])
		}
	}
	for _, v := range []string{"plain", `with "quotes"`, `back\slash`, "$VEID"} {
		if _, got, _ := vzConfLine("K=" + vzQuote(v)); got != v {
			t.Errorf("vzQuote(%q) reads back as %q", v, got)
		}
	}
}

// TestSyncVZConf checks that rewrites keep others' lines and report others' changes.
func TestSyncVZConf(t *testing.T) {
	root := t.TempDir()
	m := New(Options{Root: root, VZConfDir: filepath.Join(root, "vz")})
	if err := m.store.Init(); err != nil {
		t.Fatal(err)
	}
	cfg := &store.Config{ID: "101", OSTemplate: "t", Layout: LayoutOverlay, Hostname: "h.example"}
	if err := m.store.Reserve(cfg); err != nil {
		t.Fatal(err)
	}
	var warns []string
	warn := func(s string) { warns = append(warns, s) }
	if err := m.syncVZConf(cfg, warn); err != nil {
		t.Fatal(err)
	}
	path := m.VZConfPath("101")
	data, _ := os.ReadFile(path)
	data = append(data, "\n#UUID: 54cd4489-187b-4299-999e-4410f59c26b9\nMY_KEY=\"mine\"\n"...)
	data = []byte(strings.Replace(string(data), `HOSTNAME="h.example"`, `HOSTNAME="other.example"`, 1))
	os.WriteFile(path, data, 0o644)
	if ch := m.VZConfChanges("101"); len(ch) != 1 || ch[0] != (VZKV{"HOSTNAME", "other.example"}) {
		t.Fatalf("changes: %v", ch)
	}
	cfg.Description = "d"
	if err := m.syncVZConf(cfg, warn); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	for _, s := range []string{"#UUID: 54cd4489-187b-4299-999e-4410f59c26b9\n", "MY_KEY=\"mine\"\n",
		"HOSTNAME=\"h.example\"\n", "DESCRIPTION=\"d\"\n", "ONBOOT=\"no\"\n"} {
		if !strings.Contains(string(data), s) {
			t.Errorf("after rewrite %s lacks %q:\n%s", path, s, data)
		}
	}
	if len(warns) != 1 || !strings.Contains(warns[0], `HOSTNAME="other.example" was changed outside vectl`) {
		t.Errorf("warnings: %q", warns)
	}
	if ch := m.VZConfChanges("101"); len(ch) != 0 {
		t.Errorf("changes after the rewrite: %v", ch)
	}
	global, _ := os.ReadFile(filepath.Join(root, "vz", "vz.conf"))
	if !strings.Contains(string(global), `VE_PRIVATE="`+root+`/private/$VEID"`) {
		t.Errorf("vz.conf:\n%s", global)
	}
	// A vz.conf that vectl did not write is left alone.
	os.WriteFile(filepath.Join(root, "vz", "vz.conf"), []byte("VIRTUOZZO=yes\n"), 0o644)
	m.syncVZConf(cfg, warn)
	if g, _ := os.ReadFile(filepath.Join(root, "vz", "vz.conf")); string(g) != "VIRTUOZZO=yes\n" {
		t.Errorf("someone else's vz.conf was rewritten:\n%s", g)
	}
	if err := m.removeVZConf("101"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + ".destroyed"); err != nil {
		t.Errorf("destroyed config: %v", err)
	}
}
