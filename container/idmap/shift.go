package idmap

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Shift moves the owners of every file below dir (dir included, symlinks themselves, hard
// links once) from the id range starting at from (uid) and fromGID to the one starting at to
// and toGID, Size ids each: what set --userns does to an overlay's upper directory. It checks
// every owner first and changes nothing when one is outside the range, naming that file. A
// failure midway shifts back what was shifted. chown clears setuid and setgid bits and file
// capabilities; Shift puts them back.
func Shift(dir string, from, fromGID, to, toGID uint32) error {
	type entry struct {
		path     string
		uid, gid uint32
		mode     uint32
		fcaps    []byte
	}
	var todo []entry
	seen := map[[2]uint64]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		key := [2]uint64{st.Dev, st.Ino}
		if seen[key] {
			return nil
		}
		seen[key] = true
		if st.Uid < from || st.Uid-from >= Size || st.Gid < fromGID || st.Gid-fromGID >= Size {
			return fmt.Errorf("%s is owned by %d:%d, outside the ids %d-%d:%d-%d it must have to be shifted",
				path, st.Uid, st.Gid, from, uint64(from)+Size-1, fromGID, uint64(fromGID)+Size-1)
		}
		e := entry{path: path, uid: st.Uid, gid: st.Gid, mode: st.Mode}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			buf := make([]byte, 64)
			if n, err := unix.Lgetxattr(path, "security.capability", buf); err == nil {
				e.fcaps = buf[:n]
			}
		}
		todo = append(todo, e)
		return nil
	})
	if err != nil {
		return err
	}
	apply := func(e entry, uid, gid uint32) error {
		if err := unix.Lchown(e.path, int(uid), int(gid)); err != nil {
			return err
		}
		if e.mode&unix.S_IFMT == unix.S_IFREG {
			if e.mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
				if err := unix.Chmod(e.path, e.mode&07777); err != nil {
					return err
				}
			}
			if e.fcaps != nil {
				if err := unix.Lsetxattr(e.path, "security.capability", e.fcaps, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for i, e := range todo {
		if err := apply(e, e.uid-from+to, e.gid-fromGID+toGID); err != nil {
			errs := []error{fmt.Errorf("shift the owner of %s: %w", e.path, err)}
			for _, back := range todo[:i] {
				errs = append(errs, apply(back, back.uid, back.gid))
			}
			return errors.Join(errs...)
		}
	}
	return nil
}
