package template

import (
	"bytes"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Init systems reported by DetectInit and recorded in Info.Init.
const (
	initSystemd  = "systemd"
	initSysvinit = "sysvinit"
	initBusybox  = "busybox"
	initOpenRC   = "openrc"
	initRunit    = "runit"
)

// maxLinks bounds a symlink chain, as the kernel does (ELOOP after 40).
const maxLinks = 40

// DetectInit names the init system of an unpacked root filesystem by inspecting /sbin/init,
// resolving symlinks inside root only: a link whose target is named "systemd", "busybox",
// "openrc-init", "runit-init" or "runit" gives "systemd", "busybox", "openrc" or "runit"; a
// file that is lib/systemd/systemd or bin/busybox (the same inode) or contains "BusyBox"
// gives those; any other file gives "openrc" when the tree has /sbin/openrc (sysvinit
// starting OpenRC, as Debian does it), else "sysvinit". It returns "" when /sbin/init is
// missing or dangling.
func DetectInit(root string) string {
	// Resolved as the guest will: nothing outside root is ever looked at.
	t, err := openTree(root)
	if err != nil {
		return ""
	}
	defer t.Close()
	p := "sbin/init"
	for range maxLinks {
		dir, base := path.Split(p) // dir keeps its trailing "/"
		if base == "" || base == "." || base == ".." {
			break // names a directory, not a link; the final open decides
		}
		pfd, err := t.open(dir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return ""
		}
		target, isLink, err := readlinkat(pfd, base)
		unix.Close(pfd)
		if err != nil {
			return ""
		}
		if !isLink {
			break
		}
		switch path.Base(target) {
		case "systemd":
			return initSystemd
		case "busybox":
			return initBusybox
		case "openrc-init":
			return initOpenRC
		case "runit-init", "runit":
			return initRunit
		}
		if strings.HasPrefix(target, "/") {
			p = target
		} else {
			// Not cleaned: the kernel resolves ".." after the directory's own symlinks (say
			// /sbin -> usr/sbin), and so must we.
			p = dir + target
		}
	}
	fd, err := t.open(p, unix.O_RDONLY)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return ""
	}
	switch {
	case sameFile(t, "lib/systemd/systemd", &st) || sameFile(t, "usr/lib/systemd/systemd", &st):
		return initSystemd
	case sameFile(t, "bin/busybox", &st) || contains(f, []byte("BusyBox")):
		return initBusybox
	case exists(t, "sbin/openrc") || exists(t, "usr/sbin/openrc"):
		// Debian's OpenRC: sysvinit as PID 1, OpenRC running the boot scripts.
		return initOpenRC
	}
	return initSysvinit
}

// exists reports whether rel, resolved inside the tree, exists.
func exists(t *tree, rel string) bool {
	fd, err := t.open(rel, unix.O_PATH)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// readlinkat returns the target of base in dirfd if it is a symlink.
func readlinkat(dirfd int, base string) (string, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "", false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", false, nil
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, base, buf)
	if err != nil {
		return "", false, err
	}
	return string(buf[:n]), true, nil
}

// sameFile reports whether rel, resolved inside the tree, is the inode st describes.
func sameFile(t *tree, rel string, st *unix.Stat_t) bool {
	fd, err := t.open(rel, unix.O_PATH)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var other unix.Stat_t
	if err := unix.Fstat(fd, &other); err != nil {
		return false
	}
	return other.Dev == st.Dev && other.Ino == st.Ino
}

// maxScan bounds how much of a file contains reads; init binaries are far smaller.
const maxScan = 64 << 20

// contains reports whether r holds needle within its first maxScan bytes.
func contains(r io.Reader, needle []byte) bool {
	buf := make([]byte, 64<<10)
	keep := 0 // bytes carried over so that a needle split between reads is found
	lr := io.LimitReader(r, maxScan)
	for {
		n, err := lr.Read(buf[keep:])
		if bytes.Contains(buf[:keep+n], needle) {
			return true
		}
		if err != nil {
			return false
		}
		total := keep + n
		keep = min(len(needle)-1, total)
		copy(buf, buf[total-keep:total])
	}
}

// DetectOS names the distribution and version of an unpacked tree: ID and VERSION_ID of its
// /etc/os-release (or /usr/lib/os-release), resolved inside root; without them, the
// "dist-version" start of the template's name (debian-13-x86_64-minimal).
func DetectOS(root, name string) (dist, version string) {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := ReadGuestFile(root, p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(l), "=")
			if !ok {
				continue
			}
			v = strings.Trim(v, `"'`)
			switch k {
			case "ID":
				dist = v
			case "VERSION_ID":
				version = v
			}
		}
		if dist != "" {
			break
		}
	}
	if parts := strings.SplitN(name, "-", 3); dist == "" && len(parts) >= 2 {
		dist, version = parts[0], parts[1]
	} else if parts := strings.SplitN(name, "-", 3); version == "" && len(parts) >= 2 && parts[0] == dist {
		version = parts[1] // testing and unstable have no VERSION_ID
	}
	return dist, version
}
