package template

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Reasons for refusing an entry. Each wraps ErrUnsafeEntry and is wrapped in an EntryError
// naming the entry.
var (
	errEmptyName   = fmt.Errorf("empty name: %w", ErrUnsafeEntry)
	errAbsolute    = fmt.Errorf("absolute path: %w", ErrUnsafeEntry)
	errDotDot      = fmt.Errorf("path leaves the target: %w", ErrUnsafeEntry)
	errThroughLink = fmt.Errorf("path goes through a symlink: %w", ErrUnsafeEntry)
)

// Extract unpacks an uncompressed tar stream into dst, an existing empty directory, treating
// the archive as hostile: every entry is created with *at system calls relative to a parent
// directory that was opened without following any symlink, so nothing is ever written outside
// dst or through a link. Absolute names, ".." components and links leaving the tree are
// refused with an *EntryError wrapping ErrUnsafeEntry; device nodes are skipped (Skipped). Owners are restored only when
// running as root; modes (setuid, setgid and sticky included), mtimes and SCHILY.xattr
// records always are, except overlayfs's own attributes, which are dropped. On error dst is
// left partly filled for the caller to remove.
func Extract(r io.Reader, dst string) error {
	_, err := extract(context.Background(), r, dst)
	return err
}

// Skipped is what an extraction left out on purpose: device nodes, which debootstrap,
// OpenVZ's precreated caches and image servers' archives ship in /dev, while a VE gets its
// own /dev. Hard links to a skipped node are skipped with it.
type Skipped struct {
	DevNodes  int      // nodes below dev/
	Elsewhere []string // nodes anywhere else, by name
}

// Notes are the lines that tell the user what was skipped (none when nothing was).
func (s Skipped) Notes() []string {
	var out []string
	if s.DevNodes > 0 {
		out = append(out, fmt.Sprintf("skipped %d device nodes in /dev (a VE gets its own /dev)", s.DevNodes))
	}
	for _, n := range s.Elsewhere {
		out = append(out, "skipped device node /"+n+" (outside /dev; a VE gets its own devices)")
	}
	return out
}

// extract is Extract with a context checked between entries; it also says what it skipped.
func extract(ctx context.Context, r io.Reader, dst string) (Skipped, error) {
	// Every existing path inside the target is resolved without following any symlink (a
	// symlink in any component fails with ELOOP), and nothing outside it.
	t, err := openArchiveTree(dst)
	if err != nil {
		return Skipped{}, err
	}
	defer t.Close()
	x := &extractor{t: t, asRoot: os.Geteuid() == 0, dirs: map[string]*tar.Header{}, nodes: map[string]bool{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return x.skipped, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return x.skipped, fmt.Errorf("read archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return x.skipped, &EntryError{Entry: hdr.Name, Err: err}
		}
	}
	return x.skipped, x.finishDirs()
}

// extractor holds the state of one extraction.
type extractor struct {
	t      *tree // the target directory, resolved without symlinks
	asRoot bool  // restore owners; an unprivileged caller keeps its own
	// skipped counts the device nodes left out; nodes holds their names, for hard links.
	skipped Skipped
	nodes   map[string]bool
	// dirs holds the headers of the directories extracted so far, by clean name ("" is the
	// target itself). Their mode and mtime are applied at the end: a 0555 directory must stay
	// writable while its contents arrive, and creating those contents changes its mtime.
	dirs map[string]*tar.Header
}

// cleanName turns an archive path into a clean relative one ("" for the target itself),
// refusing absolute paths and ".." components rather than resolving them.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errEmptyName
	}
	if strings.HasPrefix(name, "/") {
		return "", errAbsolute
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", errDotDot
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "/"), nil
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide PAX defaults; archive/tar has no use for them either
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		x.skip(name)
		return nil
	case tar.TypeDir:
		return x.dir(name, hdr)
	}
	if name == "" {
		return fmt.Errorf("only a directory entry may name the target itself: %w", ErrUnsafeEntry)
	}
	switch hdr.Typeflag {
	// archive/tar turns the old '\x00' type into TypeReg and expands sparse files itself;
	// GNU tar treats "contiguous" files as regular ones.
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		return x.file(name, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, hdr)
	case tar.TypeLink:
		return x.hardlink(name, hdr)
	case tar.TypeFifo:
		return x.fifo(name, hdr)
	}
	return fmt.Errorf("unsupported entry type %q: %w", hdr.Typeflag, ErrUnsafeEntry)
}

// resolveErr turns the errors of a no-symlink resolution into reasons naming what they mean.
func resolveErr(what string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return errThroughLink
	case errors.Is(err, unix.EXDEV):
		return errDotDot
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: a path component is not a directory", what)
	}
	return fmt.Errorf("open %s: %w", what, err)
}

// openParent returns an O_PATH fd of the directory that will hold name, and name's last
// component. Missing parents are created 0755 when create is set.
func (x *extractor) openParent(name string, create bool) (int, string, error) {
	fd, base, err := x.t.parentDir(name, create)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		dir, _ := path.Split(name)
		return -1, "", resolveErr(strings.TrimSuffix(dir, "/"), err)
	}
	return fd, base, nil
}

// clear makes room for a new non-directory entry called base in pfd: a previous
// non-directory is unlinked (never opened, so a symlink there is never followed); a previous
// directory is removed only if it is empty.
func (x *extractor) clear(pfd int, base, name string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat existing %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace existing %s: %w", name, err)
		}
		return nil
	}
	err = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("would replace non-empty directory %s", name)
	}
	if err != nil {
		return fmt.Errorf("replace existing directory %s: %w", name, err)
	}
	delete(x.dirs, name)
	return nil
}

func (x *extractor) dir(name string, hdr *tar.Header) error {
	var fd int
	if name == "" {
		f, err := x.t.open(".", unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("open target: %w", err)
		}
		fd = f
	} else {
		pfd, base, err := x.openParent(name, true)
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		var st unix.Stat_t
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := unix.Unlinkat(pfd, base, 0); err != nil {
				return fmt.Errorf("replace existing %s: %w", name, err)
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			// 0700 until finishDirs: the owner must be able to fill it whatever its mode.
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("stat existing %s: %w", name, err)
		}
		fd, err = openBeneath(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return resolveErr(name, err)
		}
	}
	defer unix.Close(fd)
	if err := x.chown(fd, hdr); err != nil {
		return err
	}
	if err := x.setXattrs(fd, hdr); err != nil {
		return err
	}
	x.dirs[name] = hdr
	return nil
}

func (x *extractor) file(name string, hdr *tar.Header, r io.Reader) error {
	pfd, base, err := x.openParent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := x.clear(pfd, base, name); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// Owner, then mode (chown clears setuid), then xattrs (chown clears security.capability).
	if err := x.chown(fd, hdr); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := x.setXattrs(fd, hdr); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return setTimes(pfd, base, hdr)
}

func (x *extractor) symlink(name string, hdr *tar.Header) error {
	pfd, base, err := x.openParent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := x.clear(pfd, base, name); err != nil {
		return err
	}
	// Any target is fine, absolute ones included: the link is created, never followed.
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if x.asRoot {
		if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	return setTimes(pfd, base, hdr)
}

// skip leaves out the device node name (a VE gets its own /dev).
func (x *extractor) skip(name string) {
	x.nodes[name] = true
	if name == "dev" || strings.HasPrefix(name, "dev/") {
		x.skipped.DevNodes++
	} else {
		x.skipped.Elsewhere = append(x.skipped.Elsewhere, name)
	}
}

func (x *extractor) hardlink(name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("link target %q: %w", hdr.Linkname, err)
	}
	if x.nodes[target] {
		x.skip(name) // a second name of a skipped device node
		return nil
	}
	if target == "" {
		return fmt.Errorf("link target %q is the target directory: %w", hdr.Linkname, ErrUnsafeEntry)
	}
	if target == name {
		return nil // a link to itself leaves the file as it is
	}
	opfd, obase, err := x.openParent(target, false)
	if errors.Is(err, errThroughLink) || errors.Is(err, errDotDot) {
		return fmt.Errorf("link target %q: %w", hdr.Linkname, err)
	}
	if err != nil {
		return fmt.Errorf("link target %q does not exist in the tree: %w", hdr.Linkname, err)
	}
	defer unix.Close(opfd)
	var st unix.Stat_t
	if err := unix.Fstatat(opfd, obase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("link target %q does not exist in the tree: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("link target %q is a directory", hdr.Linkname)
	}
	pfd, base, err := x.openParent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := x.clear(pfd, base, name); err != nil {
		return err
	}
	// Flags 0: if the target is a symlink, the new name is a second link to the symlink
	// itself, not to whatever it points at.
	if err := unix.Linkat(opfd, obase, pfd, base, 0); err != nil {
		return fmt.Errorf("link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (x *extractor) fifo(name string, hdr *tar.Header) error {
	pfd, base, err := x.openParent(name, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := x.clear(pfd, base, name); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, base, unix.S_IFIFO|0o600, 0); err != nil {
		return fmt.Errorf("mkfifo: %w", err)
	}
	// Opening a fifo for reading without O_NONBLOCK would wait for a writer.
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open fifo: %w", err)
	}
	defer unix.Close(fd)
	if err := x.chown(fd, hdr); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, mode(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return setTimes(pfd, base, hdr)
}

// finishDirs applies the deferred directory modes and mtimes, deepest first, so that a
// directory is still 0700 while its children are finished.
func (x *extractor) finishDirs() error {
	names := make([]string, 0, len(x.dirs))
	for n := range x.dirs {
		names = append(names, n)
	}
	depth := func(n string) int {
		if n == "" {
			return -1
		}
		return strings.Count(n, "/")
	}
	slices.SortFunc(names, func(a, b string) int { return depth(b) - depth(a) })
	for _, n := range names {
		hdr := x.dirs[n]
		var fd int
		var err error
		fd, err = x.t.open(n, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return &EntryError{Entry: hdr.Name, Err: resolveErr(n, err)}
		}
		// Times before mode: a 0000 directory no longer lets its owner look up ".".
		err = setTimes(fd, ".", hdr)
		if err == nil {
			if cerr := unix.Fchmod(fd, mode(hdr)); cerr != nil {
				err = fmt.Errorf("chmod: %w", cerr)
			}
		}
		unix.Close(fd)
		if err != nil {
			return &EntryError{Entry: hdr.Name, Err: err}
		}
	}
	return nil
}

// mode is the permission part of a header's mode, setuid, setgid and sticky included.
func mode(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

func (x *extractor) chown(fd int, hdr *tar.Header) error {
	if !x.asRoot {
		return nil
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	return nil
}

// xattrPrefix starts the PAX records that carry extended attributes (GNU tar and bsdtar
// both write them).
const xattrPrefix = "SCHILY.xattr."

func (x *extractor) setXattrs(fd int, hdr *tar.Header) error {
	var names []string
	for k := range hdr.PAXRecords {
		if n, ok := strings.CutPrefix(k, xattrPrefix); ok && n != "" && !overlayXattr(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		err := unix.Fsetxattr(fd, n, []byte(hdr.PAXRecords[xattrPrefix+n]), 0)
		if err == nil {
			continue
		}
		// An unprivileged caller (tests, rootless use) cannot set these namespaces; the
		// template is still usable, it just lacks file capabilities or labels.
		if !x.asRoot && (strings.HasPrefix(n, "security.") || strings.HasPrefix(n, "trusted.")) &&
			(errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOTSUP)) {
			continue
		}
		return fmt.Errorf("set xattr %s: %w", n, err)
	}
	return nil
}

// overlayXattr reports whether an extended attribute is overlayfs's own metadata (opaque
// directories, redirects, metacopy). The unpacked tree is an overlay lower layer, where such
// attributes from an archive would change what VEs see; they are dropped, never restored.
func overlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// setTimes sets base's access and modification times from hdr without following a symlink.
func setTimes(dirfd int, base string, hdr *tar.Header) error {
	if hdr.ModTime.IsZero() {
		return nil
	}
	mtime, err := unix.TimeToTimespec(hdr.ModTime)
	if err != nil {
		return fmt.Errorf("mtime %v: %w", hdr.ModTime, err)
	}
	atime := mtime
	if !hdr.AccessTime.IsZero() {
		if atime, err = unix.TimeToTimespec(hdr.AccessTime); err != nil {
			atime = mtime
		}
	}
	if err := unix.UtimesNanoAt(dirfd, base, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}
