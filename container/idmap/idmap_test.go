package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writePool(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "subuid")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAllocateFromRootsRanges(t *testing.T) {
	pool := writePool(t, "# comment\nalice:100000:65536\nroot:200000:262144\n")
	got, err := Allocate(pool, nil, nil)
	if err != nil || got != 200000 {
		t.Fatalf("first = %d, %v; want 200000", got, err)
	}
	// Used blocks are skipped, also ones not aligned to 65536, and a gap too small is passed.
	used := []Range{{200000, Size}, {265536 + 10, Size}}
	if got, err := Allocate(pool, used, nil); err != nil || got != 265536+10+Size {
		t.Fatalf("next = %d, %v; want %d", got, err, 265536+10+Size)
	}
	used = append(used, Range{265536 + 10 + Size, Size})
	_, err = Allocate(pool, used, nil)
	if !errors.Is(err, ErrNoRange) || !strings.Contains(err.Error(), pool) || !strings.Contains(err.Error(), "65536") {
		t.Fatalf("exhausted: %v; want ErrNoRange naming the file and the size", err)
	}
}

func TestAllocateDefaultSkipsOtherUsers(t *testing.T) {
	pool := writePool(t, "bob:1000000000:70000\n")
	got, err := Allocate(pool, nil, nil)
	if err != nil || got != DefaultBase+70000 {
		t.Fatalf("got %d, %v; want the default base past bob's range", got, err)
	}
	// A missing file means the default range.
	if got, err := Allocate(filepath.Join(t.TempDir(), "none"), []Range{{DefaultBase, Size}}, nil); err != nil || got != DefaultBase+Size {
		t.Fatalf("missing file: %d, %v", got, err)
	}
}

func TestSubRangesRejectsGarbage(t *testing.T) {
	for _, c := range []string{"root:x:65536\n", "root:1\n", "root:10:0\n"} {
		if _, _, err := SubRanges(writePool(t, c)); err == nil {
			t.Errorf("%q: no error", c)
		}
	}
}

func TestShift(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root: covered by the integration tests")
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o755)
	syscall.Chmod(f, 0o4755) // os.Chmod would drop the bit: Go spells it os.ModeSetuid
	os.Link(f, filepath.Join(dir, "hardlink"))
	os.Symlink("f", filepath.Join(dir, "l"))
	os.Lchown(filepath.Join(dir, "l"), 1000, 1000)
	if err := Shift(dir, 0, 0, 200000, 300000); err != nil {
		t.Fatal(err)
	}
	var st = func(p string) (uint32, uint32, os.FileMode) {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		s := fi.Sys().(*syscall.Stat_t)
		return s.Uid, s.Gid, fi.Mode()
	}
	if u, g, m := st(f); u != 200000 || g != 300000 || m&os.ModeSetuid == 0 {
		t.Fatalf("f: %d:%d %v; want 200000:300000 and setuid kept", u, g, m)
	}
	if u, g, _ := st(filepath.Join(dir, "l")); u != 201000 || g != 301000 {
		t.Fatalf("symlink: %d:%d", u, g)
	}
	// Out of range: nothing changes.
	os.Lchown(filepath.Join(dir, "l"), 5, 5)
	if err := Shift(dir, 200000, 300000, 0, 0); err == nil || !strings.Contains(err.Error(), "/l is owned by 5:5") {
		t.Fatalf("err = %v", err)
	}
	if u, _, _ := st(f); u != 200000 {
		t.Fatal("a refused shift changed a file")
	}
}

func TestAllocateNested(t *testing.T) {
	dir := t.TempDir()
	m := filepath.Join(dir, "uid_map")
	if err := os.WriteFile(m, []byte("         0     100000      65536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gaps, err := Unmapped(m)
	if err != nil || len(gaps) != 1 || gaps[0] != (Range{65536, 1<<32 - 1 - 65536}) {
		t.Fatalf("Unmapped = %v, %v", gaps, err)
	}
	// A VE's 65536 ids leave no range for a user-namespace VE inside it.
	if _, err := Allocate(filepath.Join(dir, "none"), nil, gaps); !errors.Is(err, ErrNoRange) ||
		!strings.Contains(err.Error(), "--userns no") {
		t.Fatalf("nested allocation: %v", err)
	}
	// A namespace that maps a root range of /etc/subuid allocates there.
	os.WriteFile(m, []byte("0 100000 65536\n200000 300000 131072\n"), 0o644)
	pool := filepath.Join(dir, "subuid")
	os.WriteFile(pool, []byte("root:200000:131072\n"), 0o644)
	gaps, _ = Unmapped(m)
	if got, err := Allocate(pool, []Range{{200000, Size}}, gaps); err != nil || got != 200000+Size {
		t.Fatalf("Allocate = %d, %v", got, err)
	}
	// The host's own map leaves nothing unmapped.
	os.WriteFile(m, []byte("0 0 4294967295\n"), 0o644)
	if gaps, err := Unmapped(m); err != nil || len(gaps) != 0 {
		t.Fatalf("host map: %v %v", gaps, err)
	}
}
