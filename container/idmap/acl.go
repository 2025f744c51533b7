package idmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// A user-namespace VE's init looks its root up by the host path (root/<id>) with its own
// uid, so that uid must be able to search the directory holding the VE roots. That
// directory stays closed to every other host user (a privileged VE's setuid files are host
// root's): each running user-namespace VE's root gets a search-only entry in its POSIX ACL,
// as "setfacl -m u:UID:x DIR" would add.

// The posix_acl_xattr format: a version, then entries of a tag, permissions and an id.
const (
	aclXattr        = "system.posix_acl_access"
	aclDefaultXattr = "system.posix_acl_default"
	aclGroup        = 0x08
	aclVersion      = 2
	aclUserObj      = 0x01
	aclUser         = 0x02
	aclGroupObj     = 0x04
	aclMask         = 0x10
	aclOther        = 0x20
	aclExec         = 1
)

type aclEntry struct {
	tag  uint16
	perm uint16
	id   uint32
}

// GrantSearch lets uid search dir (add=true) or takes that away again (add=false). The
// read-modify-write of the ACL holds an exclusive flock on dir.
func GrantSearch(dir string, uid uint32, add bool) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("grant the VE's root access to %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	entries, err := readACL(fd, st.Mode)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	i := slices.IndexFunc(entries, func(e aclEntry) bool { return e.tag == aclUser && e.id == uid })
	switch {
	case add && i >= 0:
		return nil
	case add:
		entries = append(entries, aclEntry{aclUser, aclExec, uid})
	case i < 0:
		return nil
	default:
		entries = slices.Delete(entries, i, i+1)
	}
	if err := writeACL(fd, entries); err != nil {
		return fmt.Errorf("set the ACL of %s (the filesystem must support POSIX ACLs for user-namespace VEs): %w", dir, err)
	}
	return nil
}

// readACL returns the directory's named-user entries and its mode-derived ones.
func readACL(fd int, mode uint32) ([]aclEntry, error) {
	buf := make([]byte, 4096)
	n, err := unix.Fgetxattr(fd, aclXattr, buf)
	if errors.Is(err, unix.ENODATA) {
		return []aclEntry{{aclUserObj, uint16(mode>>6) & 7, 0}, {aclGroupObj, uint16(mode>>3) & 7, 0},
			{aclOther, uint16(mode) & 7, 0}}, nil
	}
	if err != nil {
		return nil, err
	}
	if n < 4 || (n-4)%8 != 0 || binary.LittleEndian.Uint32(buf) != aclVersion {
		return nil, errors.New("unreadable POSIX ACL")
	}
	var out []aclEntry
	for p := 4; p < n; p += 8 {
		e := aclEntry{binary.LittleEndian.Uint16(buf[p:]), binary.LittleEndian.Uint16(buf[p+2:]), binary.LittleEndian.Uint32(buf[p+4:])}
		if e.tag != aclMask {
			out = append(out, e)
		}
	}
	return out, nil
}

// writeACL writes entries back sorted as the kernel wants them, with a mask that grants the
// named entries what they have (group_obj's permissions included).
func writeACL(fd int, entries []aclEntry) error {
	var mask uint16
	named := false
	for _, e := range entries {
		if e.tag == aclUser || e.tag == aclGroupObj || e.tag == aclGroup {
			mask |= e.perm
		}
		if e.tag == aclUser || e.tag == aclGroup {
			named = true
		}
	}
	if named {
		entries = append(entries, aclEntry{aclMask, mask, 0})
	}
	slices.SortFunc(entries, func(a, b aclEntry) int {
		if a.tag != b.tag {
			return int(a.tag) - int(b.tag)
		}
		return int(int64(a.id) - int64(b.id))
	})
	buf := binary.LittleEndian.AppendUint32(nil, aclVersion)
	for _, e := range entries {
		id := e.id
		if e.tag != aclUser && e.tag != aclGroup {
			id = 0xffffffff // ACL_UNDEFINED_ID
		}
		buf = binary.LittleEndian.AppendUint16(buf, e.tag)
		buf = binary.LittleEndian.AppendUint16(buf, e.perm)
		buf = binary.LittleEndian.AppendUint32(buf, id)
	}
	return unix.Fsetxattr(fd, aclXattr, buf, 0)
}
