package pagecache

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func rollup(rss, anon, pmd string) []byte {
	return []byte("55ca66d1c000-7ffce352a000 ---p 00000000 00:00 0                          [rollup]\n" +
		"Rss:            " + rss + " kB\nPss:                 857 kB\nAnonymous:      " + anon + " kB\n" +
		"AnonHugePages:         0 kB\nShmemPmdMapped:        0 kB\nFilePmdMapped:  " + pmd + " kB\nSwap: 0 kB\n")
}

// TestScattered: the figures of a vectl exec process with its binary in 64 KiB folios and
// in 2 MiB folios (2026-12-06), and what cannot be read.
func TestScattered(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"small folios", rollup("13000", "1604", "0"), true},
		{"2 MiB folios", rollup("17996", "1580", "12288"), false},
		{"a third through 2 MiB entries", rollup("13600", "1600", "4096"), true},
		{"nothing file-backed", rollup("1600", "1600", "0"), false},
		{"no FilePmdMapped (kernel before 5.4)", []byte("Rss: 13000 kB\nAnonymous: 1604 kB\n"), false},
		{"garbage", []byte("Rss: many kB\nAnonymous: 1 kB\nFilePmdMapped: 0 kB\n"), false},
		{"empty", nil, false},
	} {
		if got := scattered(tc.in); got != tc.want {
			t.Errorf("%s: scattered = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestScatteredSelf: this process's own figures parse (whatever the layout of its binary).
func TestScatteredSelf(t *testing.T) {
	data, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("no /proc/self/smaps_rollup here: %v", err)
	}
	for _, name := range []string{"Rss:", "Anonymous:", "FilePmdMapped:"} {
		if field(data, name) < 0 {
			t.Errorf("%s not read from %q", name, data)
		}
	}
}

// TestDue: the first call marks the stamp, a second within the interval is refused, and one
// after it is allowed again; a stamp that cannot be made refuses.
func TestDue(t *testing.T) {
	stamp := filepath.Join(t.TempDir(), "layout")
	if !Due(stamp, time.Minute) {
		t.Fatal("first Due = false, want true")
	}
	if _, err := os.Stat(stamp); err != nil {
		t.Fatalf("the stamp was not made: %v", err)
	}
	if Due(stamp, time.Minute) {
		t.Fatal("second Due within the minute = true, want false")
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stamp, old, old); err != nil {
		t.Fatal(err)
	}
	if !Due(stamp, time.Minute) {
		t.Fatal("Due after the interval = false, want true")
	}
	if st, err := os.Stat(stamp); err != nil || time.Since(st.ModTime()) > time.Minute {
		t.Fatalf("the stamp was not marked again (%v)", err)
	}
	if Due(filepath.Join(t.TempDir(), "missing", "layout"), time.Minute) {
		t.Error("Due with a stamp that cannot be made = true, want false")
	}
}

// TestMark: Mark makes a missing stamp, moves an old one to now, and reports a stamp it
// cannot make; what it marks is Recent and not Due.
func TestMark(t *testing.T) {
	stamp := filepath.Join(t.TempDir(), "layout")
	if !Mark(stamp) {
		t.Fatal("Mark of a missing stamp = false, want true")
	}
	if !Recent(stamp, time.Minute) || Due(stamp, time.Minute) {
		t.Fatal("a stamp just marked is not Recent, or is Due")
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stamp, old, old); err != nil {
		t.Fatal(err)
	}
	if !Mark(stamp) || !Recent(stamp, time.Minute) {
		t.Fatal("Mark of an old stamp did not mark it as of now")
	}
	if Mark(filepath.Join(t.TempDir(), "missing", "layout")) {
		t.Error("Mark of a stamp that cannot be made = true, want false")
	}
}

// TestRecent: marked by Due within the interval, not before it was made nor after the
// interval; Recent itself marks nothing.
func TestRecent(t *testing.T) {
	stamp := filepath.Join(t.TempDir(), "layout")
	if Recent(stamp, time.Minute) {
		t.Fatal("Recent before any Due = true, want false")
	}
	if _, err := os.Stat(stamp); err == nil {
		t.Fatal("Recent made the stamp")
	}
	if !Due(stamp, time.Minute) {
		t.Fatal("first Due = false, want true")
	}
	if !Recent(stamp, time.Minute) {
		t.Fatal("Recent right after Due = false, want true")
	}
	old := time.Now().Add(-2 * time.Minute)
	if err := os.Chtimes(stamp, old, old); err != nil {
		t.Fatal(err)
	}
	if Recent(stamp, time.Minute) {
		t.Fatal("Recent after the interval = true, want false")
	}
	if st, err := os.Stat(stamp); err != nil || time.Since(st.ModTime()) < time.Minute {
		t.Fatalf("Recent marked the stamp (%v)", err)
	}
}

// TestLargeFolios: ext4 from 6.16 and xfs from 5.18, nothing else.
func TestLargeFolios(t *testing.T) {
	for _, tc := range []struct {
		fs      int64
		release string
		want    bool
	}{
		{unix.EXT4_SUPER_MAGIC, "6.18.44-fc-v1272", true},
		{unix.EXT4_SUPER_MAGIC, "6.16.0", true},
		{unix.EXT4_SUPER_MAGIC, "7.0.1", true},
		{unix.EXT4_SUPER_MAGIC, "6.15.9", false},
		{unix.EXT4_SUPER_MAGIC, "6.1.0-50-amd64", false},
		{unix.XFS_SUPER_MAGIC, "5.18.0", true},
		{unix.XFS_SUPER_MAGIC, "5.15.0-91-generic", false},
		{unix.TMPFS_MAGIC, "6.18.0", false},
		{unix.BTRFS_SUPER_MAGIC, "6.18.0", false},
		{unix.EXT4_SUPER_MAGIC, "unknown", false},
	} {
		if got := largeFolios(tc.fs, tc.release); got != tc.want {
			t.Errorf("largeFolios(%#x, %q) = %v, want %v", tc.fs, tc.release, got, tc.want)
		}
	}
	if LargeFolios(filepath.Join(t.TempDir(), "missing")) {
		t.Error("LargeFolios of a missing path = true, want false")
	}
}
