package template

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// makeTree builds a small root filesystem with every kind of entry Pack handles and returns
// whether the user xattr could be set.
func makeTree(t *testing.T, root string) (xattrs bool) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	must(os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*::::::\n"), 0o600))
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(root, "bin/suid"), []byte("\x7fELF"), 0o755))
	must(os.Chmod(filepath.Join(root, "bin/suid"), 0o4755))
	must(os.Link(filepath.Join(root, "bin/suid"), filepath.Join(root, "bin/suid-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(root, "bin/abs")))
	must(os.Symlink("suid", filepath.Join(root, "bin/rel")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o640))
	must(os.Mkdir(filepath.Join(root, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o1777))
	must(os.MkdirAll(filepath.Join(root, "ro/sub"), 0o755))
	must(os.WriteFile(filepath.Join(root, "ro/sub/f"), []byte("read-only dir content"), 0o644))
	must(os.Chmod(filepath.Join(root, "ro/sub"), 0o555))
	must(os.Chmod(filepath.Join(root, "ro"), 0o555))
	must(os.WriteFile(filepath.Join(root, "empty"), nil, 0o600))
	err := unix.Setxattr(filepath.Join(root, "etc/passwd"), "user.vectl", []byte("1"), 0)
	if err != nil && !errors.Is(err, unix.ENOTSUP) {
		t.Fatal(err)
	}
	// Distinct mtimes, set last (deepest first) since creating entries changes a dir's mtime.
	when := time.Date(2021, 6, 7, 8, 9, 10, 123456789, time.UTC)
	var paths []string
	filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	})
	for i := len(paths) - 1; i >= 0; i-- {
		ts, _ := unix.TimeToTimespec(when.Add(time.Duration(i) * time.Minute))
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	t.Cleanup(func() { removeTree(root) })
	return err == nil
}

// compareTrees fails unless dst has the same entries as src with the same type, mode,
// mtime, symlink target, content, hardlink structure and user xattr.
func compareTrees(t *testing.T, src, dst string, xattrs bool) {
	t.Helper()
	inodes := map[uint64]uint64{} // src inode -> dst inode
	count := 0
	err := filepath.WalkDir(src, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		count++
		rel, _ := filepath.Rel(src, p)
		q := filepath.Join(dst, rel)
		a, b := lstat(t, p), lstat(t, q)
		if a.Mode != b.Mode {
			t.Errorf("%s: mode %#o, want %#o", rel, b.Mode, a.Mode)
		}
		if a.Mtim != b.Mtim {
			t.Errorf("%s: mtime %v, want %v", rel, b.Mtim, a.Mtim)
		}
		if os.Geteuid() == 0 && (a.Uid != b.Uid || a.Gid != b.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, b.Uid, b.Gid, a.Uid, a.Gid)
		}
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			x, _ := os.Readlink(p)
			y, _ := os.Readlink(q)
			if x != y {
				t.Errorf("%s: symlink to %q, want %q", rel, y, x)
			}
		case unix.S_IFREG:
			x, _ := os.ReadFile(p)
			y, err := os.ReadFile(q)
			if err != nil || !bytes.Equal(x, y) {
				t.Errorf("%s: content %q, %v; want %q", rel, y, err, x)
			}
			if a.Nlink > 1 {
				if ino, ok := inodes[a.Ino]; ok && ino != b.Ino {
					t.Errorf("%s: hardlink became a separate file", rel)
				}
				inodes[a.Ino] = b.Ino
				if b.Nlink != a.Nlink {
					t.Errorf("%s: %d links, want %d", rel, b.Nlink, a.Nlink)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	filepath.WalkDir(dst, func(string, os.DirEntry, error) error { n++; return nil })
	if n != count {
		t.Errorf("copy has %d entries, want %d", n, count)
	}
	if xattrs {
		buf := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(dst, "etc/passwd"), "user.vectl", buf)
		if err != nil || string(buf[:n]) != "1" {
			t.Errorf("user.vectl = %q, %v; want \"1\"", buf[:n], err)
		}
	}
}

func TestPackExtractRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	xattrs := makeTree(t, src)
	var buf bytes.Buffer
	if err := Pack(&buf, src); err != nil {
		t.Fatal(err)
	}
	// The hardlink is one file and one TypeLink entry, and the root is "./".
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Name == "bin/suid-link" && (hdr.Typeflag != tar.TypeLink || hdr.Linkname != "bin/suid") {
			t.Errorf("bin/suid-link packed as type %q to %q, want a hardlink to bin/suid", hdr.Typeflag, hdr.Linkname)
		}
	}
	if len(names) == 0 || names[0] != "./" {
		t.Errorf("first entries %v, want ./ first", names)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(dst) })
	if err := Extract(&buf, dst); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst, xattrs)
	if !xattrs {
		t.Log("user xattrs not supported here: xattr check skipped")
	}
}

func TestCopyTree(t *testing.T) {
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	xattrs := makeTree(t, src)
	t.Cleanup(func() { removeTree(dst) })
	if err := CopyTree(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, src, dst, xattrs)

	if err := CopyTree(context.Background(), src, dst); !errors.Is(err, os.ErrExist) {
		t.Errorf("CopyTree onto an existing dst = %v, want ErrExist", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst2 := filepath.Join(tmp, "dst2")
	if err := CopyTree(ctx, src, dst2); !errors.Is(err, context.Canceled) {
		t.Errorf("CopyTree with a cancelled context = %v", err)
	}
	if _, err := os.Lstat(dst2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed CopyTree left %s: %v", dst2, err)
	}
}

func TestPackSkipsSocketsAndDevDevices(t *testing.T) {
	src := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(src, "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := os.Geteuid() == 0
	if root {
		if err := os.Mkdir(filepath.Join(src, "dev"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(src, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := Pack(&buf, src); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "sock" || hdr.Name == "dev/null" {
			t.Errorf("packed %s", hdr.Name)
		}
	}
	if !root {
		t.Log("device node part needs root to create a device node")
		return
	}
	bad := filepath.Join(src, "etc-null")
	if err := unix.Mknod(bad, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	if err := Pack(io.Discard, src); err == nil || !strings.Contains(err.Error(), "etc-null") {
		t.Errorf("Pack with a device outside dev/ = %v, want an error naming it", err)
	}
}
