package template

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteGuestFileNeverFollowsSymlinks(t *testing.T) {
	tmp := t.TempDir()
	root, outside := filepath.Join(tmp, "root"), filepath.Join(tmp, "outside")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.MkdirAll(outside, 0o755)
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("host data"), 0o644)
	// A hostile guest points its resolv.conf at a host path, and its /etc/x dir outside.
	os.Symlink(victim, filepath.Join(root, "etc", "resolv.conf"))
	os.Symlink(outside, filepath.Join(root, "etc", "d"))

	if err := WriteGuestFile(root, "/etc/resolv.conf", []byte("nameserver 10.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "host data" {
		t.Fatalf("write went through the symlink: victim = %q", data)
	}
	got, err := ReadGuestFile(root, "/etc/resolv.conf")
	if err != nil || string(got) != "nameserver 10.0.0.1\n" {
		t.Fatalf("ReadGuestFile = %q, %v", got, err)
	}
	if fi, _ := os.Lstat(filepath.Join(root, "etc", "resolv.conf")); !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("resolv.conf is %v", fi.Mode())
	}
	// A directory symlink to an absolute path resolves inside the root, not on the host.
	if err := WriteGuestFile(root, "/etc/d/x", []byte("x"), 0o644); err == nil {
		if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
			t.Fatal("write through an absolute directory symlink landed on the host")
		}
	}
	if _, err := ReadGuestFile(root, "/etc/missing"); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}
