package layout

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCreate makes the overlay and copy private areas from a small tree (unprivileged).
func TestCreate(t *testing.T) {
	lower := t.TempDir()
	if err := os.Chmod(lower, 0o751); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ov := Area{ID: "101", Layout: Overlay, Private: filepath.Join(dir, "ov"), Root: filepath.Join(dir, "r1"), Lower: lower}
	if err := ov.Create(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(ov.Private, "upper"))
	if err != nil || st.Mode().Perm() != 0o751 {
		t.Errorf("overlay upper: %v, mode %v; want the lower tree's 0751", err, st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(ov.Private, "work")); err != nil {
		t.Errorf("overlay work dir: %v", err)
	}
	cp := Area{ID: "102", Layout: Copy, Private: filepath.Join(dir, "cp"), Root: filepath.Join(dir, "r2"), Lower: lower}
	if err := cp.Create(context.Background(), 0, 0); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(cp.Private, "rootfs", "hello")); err != nil || string(data) != "hi\n" {
		t.Errorf("copy: %q, %v", data, err)
	}
	if err := (Area{Layout: "zfs", Private: filepath.Join(dir, "bad")}).Create(context.Background(), 0, 0); err == nil {
		t.Error("an unknown layout was created")
	}
	if err := ov.Create(context.Background(), 0, 0); err == nil {
		t.Error("Create over an existing private area succeeded")
	}
}

// TestUnmountedIsNoError: unmounting what is not mounted, or missing, is not an error.
func TestUnmountedIsNoError(t *testing.T) {
	dir := t.TempDir()
	if err := Unmount(dir); err != nil {
		t.Errorf("Unmount of a plain directory: %v", err)
	}
	if err := Unmount(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Unmount of a missing directory: %v", err)
	}
	if Mounted(dir) {
		t.Error("a plain directory counts as mounted")
	}
	if set, err := MountedBelow(dir); err != nil || len(set) != 0 {
		t.Errorf("MountedBelow of a plain directory: %v, %v", set, err)
	}
	if _, ok := DiskUsage(dir); ok {
		t.Error("DiskUsage of an unmounted root")
	}
}
