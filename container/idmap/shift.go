package idmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Shift moves the owners of every file below dir (dir included, symlinks themselves, hard
// links once, overlay whiteouts never) from the id range starting at from (uid) and fromGID to the one starting at to
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
		acls     map[string][]byte // POSIX ACLs, whose named entries hold ids too
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
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			return nil // an overlay whiteout: made by host root, whose owner nobody sees
		}
		if st.Uid < from || st.Uid-from >= Size || st.Gid < fromGID || st.Gid-fromGID >= Size {
			return fmt.Errorf("%s is owned by %d:%d, outside the ids %d-%d:%d-%d it must have to be shifted",
				path, st.Uid, st.Gid, from, uint64(from)+Size-1, fromGID, uint64(fromGID)+Size-1)
		}
		e := entry{path: path, uid: st.Uid, gid: st.Gid, mode: st.Mode}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			for _, name := range []string{aclXattr, aclDefaultXattr} {
				buf := make([]byte, 4096)
				if n, err := unix.Lgetxattr(path, name, buf); err == nil {
					if e.acls == nil {
						e.acls = map[string][]byte{}
					}
					e.acls[name] = buf[:n]
				}
			}
		}
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
	apply := func(e entry, uid, gid uint32, forward bool) error {
		if err := unix.Lchown(e.path, int(uid), int(gid)); err != nil {
			return err
		}
		for name, acl := range e.acls {
			if forward {
				acl = shiftACL(acl, from, fromGID, to, toGID)
			}
			if err := unix.Lsetxattr(e.path, name, acl, 0); err != nil {
				return err
			}
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
		if err := apply(e, e.uid-from+to, e.gid-fromGID+toGID, true); err != nil {
			errs := []error{fmt.Errorf("shift the owner of %s: %w", e.path, err)}
			for _, back := range todo[:i] {
				errs = append(errs, apply(back, back.uid, back.gid, false))
			}
			return errors.Join(errs...)
		}
	}
	return nil
}

// shiftACL returns a POSIX ACL (posix_acl_xattr format) with the ids of its named user and
// group entries moved from the range at from (fromGID) to the one at to (toGID); ids outside
// the range stay.
func shiftACL(acl []byte, from, fromGID, to, toGID uint32) []byte {
	out := append([]byte(nil), acl...)
	for p := 4; p+8 <= len(out); p += 8 {
		tag, id := binary.LittleEndian.Uint16(out[p:]), binary.LittleEndian.Uint32(out[p+4:])
		switch {
		case tag == aclUser && id >= from && id-from < Size:
			binary.LittleEndian.PutUint32(out[p+4:], id-from+to)
		case tag == aclGroup && id >= fromGID && id-fromGID < Size:
			binary.LittleEndian.PutUint32(out[p+4:], id-fromGID+toGID)
		}
	}
	return out
}
