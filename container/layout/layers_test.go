package layout

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if c == "/" {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Merge keeps what the upper layer holds and moves the rest of the lower one in: a file
// hides the lower's file or directory, directories merge, and lower is gone afterwards.
func TestMerge(t *testing.T) {
	dir := t.TempDir()
	lower, upper := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	writeTree(t, lower, map[string]string{
		"etc/a": "lower a", "etc/b": "lower b", "etc/sub/c": "lower c", "var/x": "lower x", "dirfile/y": "lower y",
	})
	writeTree(t, upper, map[string]string{
		"etc/a": "upper a", "etc/sub/d": "upper d", "dirfile": "upper file", "new": "upper new",
	})
	if err := os.Symlink("etc/b", filepath.Join(lower, "link")); err != nil {
		t.Fatal(err)
	}
	if err := Merge(lower, upper); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"etc/a": "upper a", "etc/b": "lower b", "etc/sub/c": "lower c", "etc/sub/d": "upper d",
		"var/x": "lower x", "dirfile": "upper file", "new": "upper new"}
	for p, c := range want {
		data, err := os.ReadFile(filepath.Join(upper, p))
		if err != nil || string(data) != c {
			t.Errorf("%s = %q (%v), want %q", p, data, err, c)
		}
	}
	if l, err := os.Readlink(filepath.Join(upper, "link")); err != nil || l != "etc/b" {
		t.Errorf("link = %q, %v", l, err)
	}
	if _, err := os.Stat(lower); !os.IsNotExist(err) {
		t.Errorf("lower stays after the merge: %v", err)
	}
}

// Chain walks a layer's parents, and refuses a cycle or a missing layer with its name.
func TestPoolChain(t *testing.T) {
	p := Pool{Dir: t.TempDir()}
	now := time.Now()
	for _, l := range []Layer{{ID: "a", Created: now}, {ID: "b", Parent: "a"}, {ID: "c", Parent: "b"}, {ID: "x", Parent: "y"}, {ID: "y", Parent: "x"}, {ID: "m", Parent: "gone"}} {
		if err := p.Save(l); err != nil {
			t.Fatal(err)
		}
	}
	chain, err := p.Chain("c")
	if err != nil || len(chain) != 3 || chain[0].ID != "c" || chain[2].ID != "a" {
		t.Fatalf("Chain(c) = %+v, %v", chain, err)
	}
	if _, err := p.Chain("x"); err == nil {
		t.Error("a cycle was accepted")
	}
	if _, err := p.Chain("m"); err == nil || !filepath.IsAbs(p.Dir) {
		t.Errorf("a missing parent was accepted: %v", err)
	}
	if c, err := p.Chain(""); err != nil || len(c) != 0 {
		t.Errorf("Chain(\"\") = %v, %v", c, err)
	}
	all, err := p.List()
	if err != nil || len(all) != 6 {
		t.Errorf("List = %d layers, %v", len(all), err)
	}
}
