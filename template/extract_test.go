package template

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestExtractRefusesHostileEntries feeds archives that try to write outside the target and
// checks that each is refused with an EntryError naming the entry and wrapping
// ErrUnsafeEntry, and that nothing outside the target changed.
func TestExtractRefusesHostileEntries(t *testing.T) {
	tests := []struct {
		name    string
		entries func(sb sandbox) []ent
		bad     string // the entry that must be named
	}{
		{"dotdot", func(sandbox) []ent { return []ent{fileEnt("../x", "pwned")} }, "../x"},
		{"dotdot into outside", func(sandbox) []ent {
			return []ent{fileEnt("../outside/victim", "pwned")}
		}, "../outside/victim"},
		{"dotdot after a dir", func(sandbox) []ent {
			return []ent{dirEnt("a/", 0o755), fileEnt("a/../../x", "pwned")}
		}, "a/../../x"},
		{"dotdot dir", func(sandbox) []ent { return []ent{dirEnt("../d/", 0o755)} }, "../d/"},
		{"dotdot symlink", func(sandbox) []ent { return []ent{symlinkEnt("../s", "/etc")} }, "../s"},
		{"absolute file", func(sb sandbox) []ent {
			return []ent{fileEnt(filepath.Join(sb.outside, "x"), "pwned")}
		}, "<outside>/x"},
		{"absolute over victim", func(sb sandbox) []ent {
			return []ent{fileEnt(sb.victim, "pwned")}
		}, "<outside>/victim"},
		{"empty name", func(sandbox) []ent { return []ent{fileEnt("", "x")} }, ""},
		{"file through absolute symlink", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), fileEnt("link/pwned", "pwned")}
		}, "link/pwned"},
		{"file over victim through symlink", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), fileEnt("link/victim", "pwned")}
		}, "link/victim"},
		{"file through relative symlink", func(sandbox) []ent {
			return []ent{symlinkEnt("link2", "../outside"), fileEnt("link2/pwned", "pwned")}
		}, "link2/pwned"},
		{"file through deeper symlink to /", func(sb sandbox) []ent {
			return []ent{dirEnt("a/", 0o755), symlinkEnt("a/b", "/"),
				fileEnt("a/b"+filepath.Join(sb.outside, "x"), "pwned")}
		}, "a/b<outside>/x"},
		{"dir through symlink", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), dirEnt("link/d/", 0o755)}
		}, "link/d/"},
		{"symlink through symlink", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), symlinkEnt("link/s", "/etc")}
		}, "link/s"},
		{"fifo through symlink", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), specialEnt("link/p", tar.TypeFifo)}
		}, "link/p"},
		{"hardlink name through symlink", func(sb sandbox) []ent {
			return []ent{fileEnt("f", "x"), symlinkEnt("link", sb.outside), hardlinkEnt("link/hl", "f")}
		}, "link/hl"},
		{"hardlink to dotdot", func(sandbox) []ent {
			return []ent{hardlinkEnt("hl", "../outside/victim")}
		}, "hl"},
		{"hardlink to absolute", func(sb sandbox) []ent {
			return []ent{hardlinkEnt("hl", sb.victim)}
		}, "hl"},
		{"hardlink through symlinked parent", func(sb sandbox) []ent {
			return []ent{symlinkEnt("link", sb.outside), hardlinkEnt("hl", "link/victim")}
		}, "hl"},
		{"unknown type", func(sandbox) []ent { return []ent{specialEnt("weird", 'Z')} }, "weird"},
		{"file naming the target", func(sandbox) []ent { return []ent{fileEnt(".", "x")} }, "."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			err := Extract(bytes.NewReader(tarball(t, tt.entries(sb))), sb.target)
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Fatalf("Extract = %v, want an error wrapping ErrUnsafeEntry", err)
			}
			want := strings.ReplaceAll(tt.bad, "<outside>", sb.outside)
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Entry != want {
				t.Errorf("error %v does not come from entry %q", err, want)
			}
			if want != "" && !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not name %q", err, want)
			}
			sb.checkUntouched(t)
		})
	}
}

// TestExtractSkipsDeviceNodes (issue 20): device nodes, in /dev as debootstrap and OpenVZ's
// caches ship them or elsewhere, and hard links to them are skipped, not refused, and
// counted; everything else of the archive is unpacked.
func TestExtractSkipsDeviceNodes(t *testing.T) {
	sb := newSandbox(t)
	es := []ent{dirEnt("./", 0o755), dirEnt("./dev/", 0o755), specialEnt("./dev/null", tar.TypeChar),
		specialEnt("./dev/loop0", tar.TypeBlock), hardlinkEnt("./dev/null2", "./dev/null"),
		dirEnt("./etc/", 0o755), specialEnt("./etc/null", tar.TypeChar), fileEnt("./etc/hostname", "h\n"),
		specialEnt("./dev/initctl", tar.TypeFifo)}
	skipped, err := extract(context.Background(), bytes.NewReader(tarball(t, es)), sb.target)
	if err != nil {
		t.Fatal(err)
	}
	if skipped.DevNodes != 3 || !slices.Equal(skipped.Elsewhere, []string{"etc/null"}) {
		t.Errorf("skipped %+v, want 3 in /dev and etc/null", skipped)
	}
	for _, n := range []string{"dev/null", "dev/loop0", "dev/null2", "etc/null"} {
		if _, err := os.Lstat(filepath.Join(sb.target, n)); !os.IsNotExist(err) {
			t.Errorf("%s was created: %v", n, err)
		}
	}
	for _, n := range []string{"etc/hostname", "dev/initctl", "dev"} {
		if _, err := os.Lstat(filepath.Join(sb.target, n)); err != nil {
			t.Errorf("%s is missing: %v", n, err)
		}
	}
	notes := strings.Join(skipped.Notes(), "\n")
	if !strings.Contains(notes, "skipped 3 device nodes in /dev") || !strings.Contains(notes, "/etc/null") {
		t.Errorf("notes: %q", notes)
	}
	if len((Skipped{}).Notes()) != 0 {
		t.Error("notes for nothing skipped")
	}
	sb.checkUntouched(t)
}

// TestExtractHostileButSafe covers hostile-looking archives that extract fine because the
// extractor never follows a symlink.
func TestExtractHostileButSafe(t *testing.T) {
	t.Run("file replaces symlink to outside", func(t *testing.T) {
		sb := newSandbox(t)
		es := []ent{symlinkEnt("f", sb.victim), fileEnt("f", "new\n")}
		if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(sb.target, "f")
		if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("f is %v, %v; want a regular file", fi, err)
		}
		if data, _ := os.ReadFile(f); string(data) != "new\n" {
			t.Errorf("f holds %q", data)
		}
		sb.checkUntouched(t)
	})
	t.Run("dir replaces symlink to outside", func(t *testing.T) {
		sb := newSandbox(t)
		es := []ent{symlinkEnt("d", sb.outside), dirEnt("d/", 0o755), fileEnt("d/f", "x")}
		if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(filepath.Join(sb.target, "d")); err != nil || !fi.IsDir() {
			t.Fatalf("d is %v, %v; want a directory", fi, err)
		}
		sb.checkUntouched(t)
	})
	t.Run("hardlink to symlink pointing outside", func(t *testing.T) {
		sb := newSandbox(t)
		es := []ent{symlinkEnt("s", sb.victim), hardlinkEnt("h", "s")}
		if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
			t.Fatal(err)
		}
		// Linking the symlink itself is fine; following it would add a link to the victim.
		h := filepath.Join(sb.target, "h")
		if target, err := os.Readlink(h); err != nil || target != sb.victim {
			t.Errorf("h is not the symlink: %q, %v", target, err)
		}
		sb.checkUntouched(t)
	})
	t.Run("symlink with any target", func(t *testing.T) {
		sb := newSandbox(t)
		es := []ent{symlinkEnt("abs", "/etc/passwd"), symlinkEnt("up", "../../../x"), symlinkEnt("out", sb.victim)}
		if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"abs": "/etc/passwd", "up": "../../../x", "out": sb.victim} {
			if got, err := os.Readlink(filepath.Join(sb.target, name)); err != nil || got != want {
				t.Errorf("%s -> %q, %v; want %q", name, got, err, want)
			}
		}
		sb.checkUntouched(t)
	})
}

func TestExtractErrors(t *testing.T) {
	tests := []struct {
		name    string
		entries []ent
		bad     string
		msg     string
	}{
		{"hardlink to missing target", []ent{hardlinkEnt("hl", "nope")}, "hl", "does not exist"},
		{"hardlink to directory", []ent{dirEnt("d/", 0o755), hardlinkEnt("hl", "d")}, "hl", "directory"},
		{"file over non-empty dir", []ent{dirEnt("d/", 0o755), fileEnt("d/f", "x"), fileEnt("d", "x")}, "d", "non-empty directory"},
		{"parent is a file", []ent{fileEnt("f", "x"), fileEnt("f/g", "x")}, "f/g", "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			err := Extract(bytes.NewReader(tarball(t, tt.entries)), sb.target)
			var ee *EntryError
			if !errors.As(err, &ee) || ee.Entry != tt.bad {
				t.Fatalf("Extract = %v, want an EntryError for %q", err, tt.bad)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not say %q", err, tt.msg)
			}
			sb.checkUntouched(t)
		})
	}
}

func TestExtractReplacesAndUpdates(t *testing.T) {
	sb := newSandbox(t)
	es := []ent{
		fileEnt("f", "old"),
		fileEnt("f", "new"),
		fileEnt("d", "file first"),
		dirEnt("d/", 0o700),
		dirEnt("d/", 0o750), // a dir over a dir only updates its metadata
		dirEnt("empty/", 0o755),
		symlinkEnt("empty", "f"), // a non-dir may replace an empty dir
		fileEnt("deep/er/file", "parents are created"),
	}
	if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(sb.target, "f")); string(data) != "new" {
		t.Errorf("f holds %q, want the later entry", data)
	}
	if fi, err := os.Lstat(filepath.Join(sb.target, "d")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Errorf("d is %v, %v; want a 0750 directory", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(sb.target, "empty")); err != nil || target != "f" {
		t.Errorf("empty -> %q, %v", target, err)
	}
	if fi, err := os.Lstat(filepath.Join(sb.target, "deep", "er")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("implicit parent is %v, %v; want 0755", fi, err)
	}
	sb.checkUntouched(t)
}

// TestExtractReadOnlyDir checks that a 0555 directory is filled before its mode is applied,
// and that directory mtimes survive the creation of their contents.
func TestExtractReadOnlyDir(t *testing.T) {
	sb := newSandbox(t)
	es := []ent{
		dirEnt("ro/", 0o555),
		dirEnt("ro/sub/", 0o555),
		fileEnt("ro/sub/f", "deep"),
		withMode(fileEnt("ro/g", "x"), 0o444),
		dirEnt("sticky/", 0o1777),
	}
	if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{
		"ro": os.ModeDir | 0o555, "ro/sub": os.ModeDir | 0o555, "ro/g": 0o444,
		"sticky": os.ModeDir | os.ModeSticky | 0o777,
	} {
		fi, err := os.Lstat(filepath.Join(sb.target, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode(), want)
		}
		if !fi.ModTime().Equal(fixedTime()) {
			t.Errorf("%s mtime %v, want %v", name, fi.ModTime(), fixedTime())
		}
	}
	if data, _ := os.ReadFile(filepath.Join(sb.target, "ro/sub/f")); string(data) != "deep" {
		t.Errorf("ro/sub/f holds %q", data)
	}
}

func TestExtractXattr(t *testing.T) {
	sb := newSandbox(t)
	probe := filepath.Join(sb.tmp, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(probe, "user.vectl", []byte("1"), 0); errors.Is(err, unix.ENOTSUP) {
		t.Skip("filesystem does not support user xattrs")
	}
	os.Remove(probe)
	es := []ent{
		withPAX(fileEnt("f", "x"), "SCHILY.xattr.user.vectl", "1"),
		// Unprivileged, this one is skipped; as root it must be set.
		withPAX(fileEnt("ping", "x"), "SCHILY.xattr.security.capability",
			"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
	}
	if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(sb.target, "f"), "user.vectl", buf)
	if err != nil || string(buf[:n]) != "1" {
		t.Errorf("user.vectl = %q, %v; want \"1\"", buf[:n], err)
	}
	if os.Geteuid() == 0 {
		if _, err := unix.Lgetxattr(filepath.Join(sb.target, "ping"), "security.capability", buf); err != nil {
			t.Errorf("security.capability not set as root: %v", err)
		}
	}
}

// TestExtractOwnership checks that owners are restored only as root, and that chown does not
// clear setuid and setgid (the mode is applied after it).
func TestExtractOwnership(t *testing.T) {
	sb := newSandbox(t)
	es := []ent{
		withOwner(dirEnt("d/", 0o2775), 1234, 5678),
		withOwner(withMode(fileEnt("d/suid", "x"), 0o6755), 1234, 5678),
		withOwner(symlinkEnt("d/link", "suid"), 1234, 5678),
		withOwner(specialEnt("d/fifo", tar.TypeFifo), 1234, 5678),
	}
	if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
		t.Fatal(err)
	}
	wantUID, wantGID := uint32(os.Getuid()), uint32(os.Getgid())
	if os.Geteuid() == 0 {
		wantUID, wantGID = 1234, 5678
	}
	for _, name := range []string{"d", "d/suid", "d/link", "d/fifo"} {
		st := lstat(t, filepath.Join(sb.target, name))
		if st.Uid != wantUID || st.Gid != wantGID {
			t.Errorf("%s owned by %d:%d, want %d:%d", name, st.Uid, st.Gid, wantUID, wantGID)
		}
	}
	if os.Geteuid() == 0 {
		if st := lstat(t, filepath.Join(sb.target, "d/suid")); st.Mode&0o7777 != 0o6755 {
			t.Errorf("d/suid mode %#o, want 06755", st.Mode&0o7777)
		}
		if st := lstat(t, filepath.Join(sb.target, "d")); st.Mode&0o7777 != 0o2775 {
			t.Errorf("d mode %#o, want 02775", st.Mode&0o7777)
		}
	}
	if st := lstat(t, filepath.Join(sb.target, "d/fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("d/fifo is not a fifo: %#o", st.Mode)
	}
}

// TestExtractDropsOverlayXattrs guards the shared lower layer: an archive must not be able to
// mark directories opaque or redirect them for the VEs built on it.
func TestExtractDropsOverlayXattrs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("requires root: trusted.* xattrs cannot be set otherwise, so there is nothing to drop")
	}
	sb := newSandbox(t)
	es := []ent{withPAX(dirEnt("d/", 0o755), "SCHILY.xattr.trusted.overlay.opaque", "y")}
	if err := Extract(bytes.NewReader(tarball(t, es)), sb.target); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(sb.target, "d"), "trusted.overlay.opaque", make([]byte, 8)); !errors.Is(err, unix.ENODATA) {
		t.Errorf("trusted.overlay.opaque restored (%v)", err)
	}
}
