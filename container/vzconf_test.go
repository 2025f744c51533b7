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

func TestParseVZSettings(t *testing.T) {
	for in, want := range map[string]Device{
		"c:10:200:rw": {Type: "c", Major: 10, Minor: 200, Access: "rw"},
		"b:8:all:r":   {Type: "b", Major: 8, Minor: -1, Access: "r"},
		"c:all:all:w": {Type: "c", Major: -1, Minor: -1, Access: "w"},
		"c:1:3:none":  {Type: "c", Major: 1, Minor: 3, Access: ""},
	} {
		if got, err := ParseDeviceRule(in); err != nil || got != want {
			t.Errorf("ParseDeviceRule(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x:1:2:rw", "c:1:2", "c:-1:2:rw", "c:1:2:rwx", "c:a:2:rw"} {
		if _, err := ParseDeviceRule(bad); err == nil {
			t.Errorf("ParseDeviceRule(%q) took it", bad)
		}
	}
	if d, err := ParseDevNode("null:rw"); err != nil || d.Type != "c" || d.Major != 1 || d.Minor != 3 || d.Path != "null" {
		t.Errorf("ParseDevNode(null:rw) = %+v, %v", d, err)
	}
	for _, bad := range []string{"null", "../etc/passwd:rw", "/etc/passwd:rw", "no-such-node:rw", "null:x"} {
		if _, err := ParseDevNode(bad); err == nil {
			t.Errorf("ParseDevNode(%q) took it", bad)
		}
	}
	if name, on, err := ParseCapability("NET_ADMIN:off"); err != nil || name != "net_admin" || on {
		t.Errorf("ParseCapability: %q %v %v", name, on, err)
	}
	for _, bad := range []string{"ve_admin:on", "net_admin", "net_admin:maybe"} {
		if _, _, err := ParseCapability(bad); err == nil {
			t.Errorf("ParseCapability(%q) took it", bad)
		}
	}
	if _, _, err := ParseFeature("warp:on"); err == nil {
		t.Error("ParseFeature(warp:on) took it")
	}
	list := setDevice(nil, Device{Type: "c", Major: 10, Minor: 200, Access: "rw", Path: "net/tun"})
	list = setDevice(list, Device{Type: "c", Major: 10, Minor: 229, Access: "rw"})
	list = setDevice(list, Device{Path: "net/tun"}) // none
	if rules, nodes := FormatDevices(list); rules != "c:10:229:rw" || nodes != "" {
		t.Errorf("devices after removing net/tun: %q %q", rules, nodes)
	}
}
