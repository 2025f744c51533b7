package network

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

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
