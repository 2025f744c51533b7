package network

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPluginEnv: a CNI plugin runs with GOMAXPROCS=1 in its environment, and with the
// administrator's own GOMAXPROCS when vectl has one. The plugin is a shell script that
// records its GOMAXPROCS and answers ADD with an empty result.
func TestPluginEnv(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(dir, "seen")
	script := "#!/bin/sh\necho \"${GOMAXPROCS-unset} $CNI_COMMAND\" >> " + seen + "\n" +
		"echo '{\"cniVersion\":\"1.0.0\"}'\n"
	if err := os.WriteFile(filepath.Join(dir, "fake"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := []byte(`{"cniVersion":"1.0.0","name":"vectl-test","plugins":[{"type":"fake"}]}`)
	ve := VE{ID: "101", NetNS: "/run/netns/none"}
	for _, admin := range []string{"", "3"} {
		t.Setenv("GOMAXPROCS", admin) // restored after the test
		if admin == "" {
			os.Unsetenv("GOMAXPROCS")
		}
		os.Remove(seen)
		n := New(Options{Config: &Config{}, CacheDir: filepath.Join(dir, "cache"),
			PluginDirs: func() ([]string, error) { return []string{dir}, nil }})
		if err := n.add(context.Background(), conf, ve, "eth0", nil); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(seen)
		if err != nil {
			t.Fatal(err)
		}
		want := "1 ADD"
		if admin != "" {
			want = admin + " ADD"
		}
		if strings.TrimSpace(string(got)) != want {
			t.Errorf("administrator's GOMAXPROCS %q: the plugin saw %q, want %q", admin, got, want)
		}
	}
}

// TestDropUnreadable: Detach's clean-up of the libcni cache removes the VE's records that a
// killed vectl left empty or cut short (libcni skips them when it lists attachments), and
// keeps its readable records and every file of other VEs.
func TestDropUnreadable(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results")
	if err := os.MkdirAll(results, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"vectl-venet-101-eth0":    "",                              // created, never written
		"vectl-br-br0-101-eth1":   `{"kind":"cniCacheV1","contain`, // cut short
		"vectl-br-br0-101-eth2":   `{"kind":"cniCacheV1"}`,         // a record: Detach's to delete
		"vectl-venet-1010-eth0":   "",                              // another VE's
		"vectl-venet-9101-eth0":   "",                              // another VE's
		"vectl-br-x-101-y-7-eth1": `{"kind":"cniCacheV1"}`,         // VE 7's, on bridge x-101-y
		"vectl-venet-101":         "",                              // not a name libcni matches
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(results, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := New(Options{Config: &Config{}, CacheDir: dir})
	if err := n.dropUnreadable("101"); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(results)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{"vectl-br-br0-101-eth2", "vectl-br-x-101-y-7-eth1", "vectl-venet-101", "vectl-venet-1010-eth0", "vectl-venet-9101-eth0"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	// No cache directory yet: nothing to do.
	if err := New(Options{Config: &Config{}, CacheDir: filepath.Join(dir, "none")}).dropUnreadable("101"); err != nil {
		t.Error(err)
	}
}

// TestPrimaries: ptp configures the first IPv4 address, or the first IPv6 address of a VE
// without IPv4; every other address, in the order given, is vectl's to add.
func TestPrimaries(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, c := range []struct{ in, prim, extra []netip.Prefix }{
		{pp("10.0.0.2/16", "fd00::2/64"), pp("10.0.0.2/16"), pp("fd00::2/64")},
		{pp("fd00::2/64", "10.0.0.2/16", "10.0.0.3/16"), pp("10.0.0.2/16"), pp("fd00::2/64", "10.0.0.3/16")},
		{pp("fd00::2/64", "fd00::3/64"), pp("fd00::2/64"), pp("fd00::3/64")},
		{pp("10.0.0.2/16"), pp("10.0.0.2/16"), nil},
		{nil, nil, nil},
	} {
		prim, extra := primaries(c.in)
		if !slices.Equal(prim, c.prim) || !slices.Equal(extra, c.extra) {
			t.Errorf("primaries(%v) = %v, %v; want %v, %v", c.in, prim, extra, c.prim, c.extra)
		}
	}
}
