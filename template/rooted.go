package template

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// tree is vectl's one rooted path walker: every path inside an OS tree (a template being
// built or unpacked, a VE's root) is opened through it, so nothing is ever resolved outside
// the tree. It resolves paths in one of two ways:
//
//   - guestView (openTree): as the guest will see them. A tree that came from packages (and
//     their maintainer scripts) may hold absolute symlinks such as /etc/resolv.conf ->
//     /run/systemd/resolve/stub-resolv.conf: symlinks are followed, but absolute targets and
//     ".." stop at the tree's root (RESOLVE_IN_ROOT).
//   - noLinks (openArchiveTree): no symlink is followed at all, in any component, and nothing
//     may resolve outside the tree. An archive being unpacked is hostile: an entry must never
//     be written through a symlink an earlier entry made.
//
// Either way the last component of a path being created is made with *at calls relative to
// its opened parent, which never follow a symlink, so no write can land on the host.
type tree struct {
	dir     string
	fd      int    // O_PATH fd of the tree's root
	resolve uint64 // guestView or noLinks
}

// The two resolutions of a tree.
const (
	guestView = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS
	noLinks   = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
)

// openTree opens dir for editing as the guest sees it.
func openTree(dir string) (*tree, error) { return openTreeAs(dir, guestView) }

// openArchiveTree opens dir for unpacking an archive: no symlink is followed.
func openArchiveTree(dir string) (*tree, error) { return openTreeAs(dir, noLinks) }

func openTreeAs(dir string, resolve uint64) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &tree{dir: dir, fd: fd, resolve: resolve}, nil
}

func (t *tree) Close() error { return unix.Close(t.fd) }

// pathErr reports an error on rel as the guest path /rel inside the tree.
func (t *tree) pathErr(op, rel string, err error) error {
	return &os.PathError{Op: op, Path: t.dir + ":/" + rel, Err: err}
}

// open opens rel inside the tree ("" or "." is the root itself), resolving it the tree's way.
// Its errors are the kernel's (ELOOP: a symlink in a noLinks tree, EXDEV: a path leaving it).
func (t *tree) open(rel string, flags uint64) (int, error) {
	if rel == "" {
		rel = "."
	}
	return openat2(t.fd, rel, flags, t.resolve)
}

// openBeneath opens rel below dirfd without following any symlink: the last step below a
// parent the tree opened.
func openBeneath(dirfd int, rel string, flags uint64) (int, error) {
	return openat2(dirfd, rel, flags, noLinks)
}

func openat2(dirfd int, rel string, flags, resolve uint64) (int, error) {
	for {
		fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: resolve})
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // EAGAIN: a concurrent rename elsewhere on the system; retrying is safe
		}
		return fd, err
	}
}

// parent opens the directory holding rel and returns it with rel's last component.
func (t *tree) parent(rel string) (int, string, error) {
	return t.parentDir(rel, false)
}

// parentDir is parent; with create, missing directories on the way are made (mode 0755)
// first. Errors from resolving the directory keep the kernel's errno (errors.Is works).
func (t *tree) parentDir(rel string, create bool) (int, string, error) {
	rel = strings.Trim(path.Clean("/"+rel), "/")
	if rel == "" {
		return -1, "", fmt.Errorf("the tree's root has no parent")
	}
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	fd, err := t.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil {
		return fd, base, nil
	}
	if create && errors.Is(err, unix.ENOENT) {
		if err := t.mkdirAll(dir, 0o755); err != nil {
			return -1, "", err
		}
		if fd, err = t.open(dir, unix.O_PATH|unix.O_DIRECTORY); err == nil {
			return fd, base, nil
		}
	}
	return -1, "", t.pathErr("open", dir, err)
}

// mkdirAll creates directory rel and its missing parents; the ones it creates get mode.
func (t *tree) mkdirAll(rel string, mode uint32) error {
	rel = strings.Trim(path.Clean("/"+rel), "/")
	if rel == "" {
		return nil
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := t.open(p, unix.O_PATH|unix.O_DIRECTORY)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return t.pathErr("mkdir", p, err)
		}
		if err := t.mkdir(p, mode); err != nil {
			return err
		}
	}
	return nil
}

// mkdir creates directory rel with exactly mode (whatever the umask), owned by the caller.
func (t *tree) mkdir(rel string, mode uint32) error {
	pfd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	fd, err := mkdirBeneath(pfd, base, mode)
	if err != nil {
		return t.pathErr("mkdir", rel, err)
	}
	return unix.Close(fd)
}

// mkdirBeneath creates directory name in dirfd with exactly mode (whatever the umask) and
// returns an fd of it. A directory already there (made meanwhile) is taken as it is.
func mkdirBeneath(dirfd int, name string, mode uint32) (int, error) {
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// writeFile replaces rel with a new regular file holding r's content and mode. Whatever was
// at rel before (a symlink included) is unlinked, never opened.
func (t *tree) writeFile(rel string, r io.Reader, mode uint32) error {
	pfd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkNonDir(pfd, base); err != nil {
		return t.pathErr("replace", rel, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return t.pathErr("create", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return t.pathErr("write", rel, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return t.pathErr("chmod", rel, err)
	}
	if err := f.Close(); err != nil {
		return t.pathErr("write", rel, err)
	}
	return nil
}

// symlink replaces rel with a symlink to target.
func (t *tree) symlink(rel, target string) error {
	pfd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unlinkNonDir(pfd, base); err != nil {
		return t.pathErr("replace", rel, err)
	}
	if err := unix.Symlinkat(target, pfd, base); err != nil {
		return t.pathErr("symlink", rel, err)
	}
	return nil
}

// removeIfRegular removes rel if it is a regular file; anything else is left alone.
func (t *tree) removeIfRegular(rel string) error {
	pfd, base, err := t.parent(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return t.pathErr("stat", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil
	}
	if err := unix.Unlinkat(pfd, base, 0); err != nil {
		return t.pathErr("remove", rel, err)
	}
	return nil
}

// clearDir removes the entries of directory rel for which match returns true (everything
// below a matching directory included), keeping rel itself. A missing rel is not an error.
func (t *tree) clearDir(rel string, match func(name string, st *unix.Stat_t) bool) error {
	fd, err := t.open(rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return t.pathErr("open", rel, err)
	}
	defer unix.Close(fd)
	if err := clearDirFd(fd, match); err != nil {
		return t.pathErr("clear", rel, err)
	}
	return nil
}

// clearDirFd removes the matching entries of the open directory fd.
func clearDirFd(fd int, match func(string, *unix.Stat_t) bool) error {
	var dir unix.Stat_t
	if err := unix.Fstat(fd, &dir); err != nil {
		return err
	}
	names, err := readDirNames(fd)
	if err != nil {
		return err
	}
	var errs []error
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
			}
			continue
		}
		if match != nil && !match(n, &st) {
			continue
		}
		if st.Dev != dir.Dev {
			// debootstrap mounts /proc and /sys in the tree; never empty a mounted filesystem.
			errs = append(errs, fmt.Errorf("%s is a mount point", n))
			continue
		}
		if err := removeAllAt(fd, n, &st); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// removeAllAt removes name in dirfd and, for a directory, everything below it. Directories
// are opened with O_NOFOLLOW relative to their parent, so a symlink is removed, not
// followed; clearDirFd refuses to descend into a mount point.
func removeAllAt(dirfd int, name string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return unix.Unlinkat(dirfd, name, 0)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var self unix.Stat_t
	if err := unix.Fstat(fd, &self); err != nil {
		unix.Close(fd)
		return err
	}
	if self.Dev != st.Dev || self.Ino != st.Ino {
		unix.Close(fd)
		return fmt.Errorf("%s changed while being removed", name)
	}
	err = clearDirFd(fd, nil)
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// readDirNames lists an open directory through a fresh fd, leaving the caller's offset alone.
func readDirNames(fd int) ([]string, error) {
	dup, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), ".")
	defer f.Close()
	return f.Readdirnames(-1)
}

// unlinkNonDir removes base in dirfd unless it is missing or a directory (which is an error).
func unlinkNonDir(dirfd int, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.EISDIR
	}
	return unix.Unlinkat(dirfd, base, 0)
}

// ReadGuestFile reads /rel inside the OS tree at root (a template or a VE's mounted root),
// resolving symlinks as the guest would, within root. A missing file is an os.ErrNotExist.
func ReadGuestFile(root, rel string) ([]byte, error) {
	t, err := openTree(root)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return t.readFile(strings.TrimPrefix(rel, "/"))
}

// readFile reads rel, resolved inside the tree.
func (t *tree) readFile(rel string) ([]byte, error) {
	fd, err := t.open(rel, unix.O_RDONLY|unix.O_NOCTTY)
	if err != nil {
		return nil, t.pathErr("open", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	return io.ReadAll(f)
}

// RemoveGuestFile removes /rel inside the OS tree at root if it is a regular file; anything
// else there (a symlink, a directory, nothing) is left alone. The directory is resolved
// within root.
func RemoveGuestFile(root, rel string) error {
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.removeIfRegular(strings.TrimPrefix(rel, "/"))
}

// WriteGuestFile replaces /rel inside the OS tree at root with data: a temporary file in the
// same directory is renamed over it, so a symlink at rel is replaced, never followed, and
// programs in a running guest never see the file missing or half written. The directory
// itself is resolved within root.
func WriteGuestFile(root, rel string, data []byte, mode uint32) error {
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.Close()
	var st unix.Stat_t
	if err := unix.Fstat(t.fd, &st); err != nil {
		return err
	}
	if st.Uid != 0 || st.Gid != 0 {
		return t.asOwner(st.Uid, st.Gid, func() error { return t.writeGuestFile(rel, data, mode) })
	}
	return t.writeGuestFile(rel, data, mode)
}

// asOwner runs f on an OS thread of its own whose filesystem ids are uid and gid: the owner
// of a user-namespace VE's root (host uid 0 is nobody there, and through an idmapped mount
// it cannot even create a file). The thread is discarded afterwards.
func (t *tree) asOwner(uid, gid uint32, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime drops the thread
		unix.Setfsgid(int(gid))
		unix.Setfsuid(int(uid))
		errc <- f()
	}()
	return <-errc
}

func (t *tree) writeGuestFile(rel string, data []byte, mode uint32) error {
	pfd, base, err := t.parent(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	tmp := ".vectl-" + base + ".tmp"
	_ = unix.Unlinkat(pfd, tmp, 0)
	fd, err := unix.Openat(pfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return t.pathErr("create", rel, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = unix.Fchmod(fd, mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(pfd, tmp, pfd, base)
	}
	if err != nil {
		_ = unix.Unlinkat(pfd, tmp, 0)
		return t.pathErr("write", rel, err)
	}
	return nil
}
