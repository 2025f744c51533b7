// Package idmap gives a VE its own user namespace: it allocates the VE's range of host uids
// and gids (from root's ranges in /etc/subuid and /etc/subgid, or the documented default
// base), creates and pins the VE's user namespace together with a network namespace owned by
// it, and makes idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP) through which a VE sees a
// tree owned by host root as its own, without a chown.
//
// It is a leaf: it knows no VE configuration, lock or process of vectl's; it must not import
// container, the runtime or the network.
package idmap

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Size is the number of uids and gids each VE gets: 0-65535 inside.
const Size = 65536

// DefaultBase and DefaultCount describe the ids vectl allocates from when /etc/subuid (or
// /etc/subgid) has no range for root: one billion ids from 10^9, far above the ids Debian's
// useradd gives users (1000-59999) and their subordinate ranges (from 100000).
const (
	DefaultBase  = 1_000_000_000
	DefaultCount = 1_000_000_000
)

// ErrNoRange means no free range of Size ids is left.
var ErrNoRange = errors.New("no free id range left for a user-namespace VE")

// Range is a span of host ids.
type Range struct{ Start, Count uint32 }

func (r Range) end() uint64 { return uint64(r.Start) + uint64(r.Count) }

func (r Range) overlaps(o Range) bool {
	return uint64(r.Start) < o.end() && uint64(o.Start) < r.end()
}

// SubRanges reads the ranges file (/etc/subuid or /etc/subgid) and returns root's ranges and
// everyone else's. A missing file is no ranges.
func SubRanges(path string) (root, others []Range, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Split(line, ":")
		if len(fs) != 3 {
			return nil, nil, fmt.Errorf("%s:%d: not NAME:START:COUNT", path, n)
		}
		start, err1 := strconv.ParseUint(fs[1], 10, 32)
		count, err2 := strconv.ParseUint(fs[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32-1 {
			return nil, nil, fmt.Errorf("%s:%d: bad range %s:%s", path, n, fs[1], fs[2])
		}
		r := Range{uint32(start), uint32(count)}
		if fs[0] == "root" || fs[0] == "0" {
			root = append(root, r)
		} else {
			others = append(others, r)
		}
	}
	return root, others, sc.Err()
}

// Unmapped returns the ids that the user namespace this process runs in does not map, read
// from its map file (/proc/self/uid_map or gid_map): none on a host, all but 65536 in a
// user-namespace VE. A VE's range must avoid them, or its map could not be written. A
// missing file (no user namespaces) is nothing unmapped.
func Unmapped(mapFile string) ([]Range, error) {
	data, err := os.ReadFile(mapFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var mapped []Range
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[0], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad line %q", mapFile, l)
		}
		mapped = append(mapped, Range{uint32(start), uint32(count)})
	}
	slices.SortFunc(mapped, func(a, b Range) int { return cmp.Compare(a.Start, b.Start) })
	var gaps []Range
	var next uint64
	for _, r := range mapped {
		if uint64(r.Start) > next {
			gaps = append(gaps, Range{uint32(next), uint32(uint64(r.Start) - next)})
		}
		next = max(next, r.end())
	}
	if next < 1<<32-1 {
		gaps = append(gaps, Range{uint32(next), uint32(1<<32 - 1 - next)})
	}
	return gaps, nil
}

// Allocate finds the lowest free block of Size ids in the pool file (/etc/subuid or
// /etc/subgid): within root's ranges when the file has any, otherwise in the default range,
// skipping other users' ranges. used are the ranges already given to VEs; unmapped are the
// ids this process's user namespace does not map (Unmapped), which are skipped too.
func Allocate(pool string, used, unmapped []Range) (uint32, error) {
	root, others, err := SubRanges(pool)
	if err != nil {
		return 0, err
	}
	avoid := used
	if len(root) == 0 {
		root = []Range{{DefaultBase, DefaultCount}}
		avoid = append(slices.Clone(used), others...)
	}
	avoid = append(avoid, unmapped...)
	for _, r := range root {
		for start := uint64(r.Start); start+Size <= r.end(); {
			cand := Range{uint32(start), Size}
			clash := -1
			for i, u := range avoid {
				if cand.overlaps(u) {
					clash = i
					break
				}
			}
			if clash < 0 {
				return cand.Start, nil
			}
			start = avoid[clash].end()
		}
	}
	if len(unmapped) > 0 {
		return 0, fmt.Errorf("%w: vectl runs in a user namespace (a VE?) that maps no free block of %d ids "+
			"in %s or the default range: create the VE with --userns no, or map more ids into this namespace "+
			"and give root a range of them in %s", ErrNoRange, Size, pool, pool)
	}
	if len(root) == 1 && root[0].Start == DefaultBase {
		return 0, fmt.Errorf("%w: the default range %d-%d is used up (give root a range in %s, %d ids per VE)",
			ErrNoRange, uint64(DefaultBase), uint64(DefaultBase)+DefaultCount-1, pool, Size)
	}
	return 0, fmt.Errorf("%w in root's ranges in %s: each VE needs %d ids; add a range for root there", ErrNoRange, pool, Size)
}

// Pin creates a user namespace mapping 0-65535 to uid..uid+65535 and gid..gid+65535 and keeps
// it by bind-mounting it on the file userns (which must not exist). On error nothing is left.
func Pin(userns string, uid, gid uint32) error {
	h, err := Hold(userns, uid, gid)
	if err != nil {
		return err
	}
	h.Close()
	return nil
}

// PinMap pins on userns a user namespace in which the host ids fromUID.. and fromGID..
// (Size of each) are toUID.. and toGID..: an idmapped mount through it shows files owned by
// fromUID+N as owned by toUID+N (a layer of one VE's range seen by a VE of another).
func PinMap(userns string, fromUID, toUID, fromGID, toGID uint32) error {
	h, err := hold(userns, fromUID, toUID, fromGID, toGID)
	if err != nil {
		return err
	}
	h.Close()
	return nil
}

// Holder keeps a user namespace that Hold pinned alive for more: PinNet gives it a network
// namespace. Close lets it go (the pins stay).
type Holder struct {
	pid  int
	end  int    // the socket that asks the holder for a network namespace; closing it ends it
	reap func() // waits for the holder's end and frees its stack
}

// Hold is Pin that keeps the namespace's holder for PinNet: a network namespace is made
// apart from the user namespace, so that its creation (a few milliseconds of the kernel's)
// can run beside other work once the user namespace exists.
func Hold(userns string, uid, gid uint32) (*Holder, error) {
	return hold(userns, 0, uid, 0, gid)
}

func hold(userns string, insideUID, uid, insideGID, gid uint32) (h *Holder, err error) {
	if err := os.MkdirAll(filepath.Dir(userns), 0o755); err != nil {
		return nil, err
	}
	pid, end, reap, err := holdNS(unix.CLONE_NEWUSER)
	if err != nil {
		return nil, fmt.Errorf("create the VE's user namespace: %w", err)
	}
	h = &Holder{pid: pid, end: end, reap: reap}
	defer func() {
		if err != nil {
			h.Close()
			h = nil
		}
	}()
	// setgroups stays allowed: the VE's root needs it, and the maps are written by host root.
	for _, m := range []struct {
		file        string
		inside, out uint32
	}{{"uid_map", insideUID, uid}, {"gid_map", insideGID, gid}} {
		line := fmt.Sprintf("%d %d %d\n", m.inside, m.out, Size)
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/%s", pid, m.file), []byte(line), 0); err != nil {
			return nil, fmt.Errorf("create the VE's user namespace: %w", err)
		}
	}
	if err := h.pin(userns, "user"); err != nil {
		return nil, err
	}
	return h, nil
}

// PinNet creates a network namespace owned by the held user namespace and pins it on the file
// netns (which must not exist). On error nothing is left.
func (h *Holder) PinNet(netns string) error {
	if err := os.MkdirAll(filepath.Dir(netns), 0o755); err != nil {
		return err
	}
	if err := netRequest(h.end); err != nil {
		return fmt.Errorf("create the VE's network namespace: %w", err)
	}
	return h.pin(netns, "net")
}

// pin bind-mounts the holder's namespace ns ("user", "net") on file.
func (h *Holder) pin(file, ns string) error {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("pin the VE's %s namespace: %w", ns, err)
	}
	f.Close()
	src := fmt.Sprintf("/proc/%d/ns/%s", h.pid, ns)
	if err := unix.Mount(src, file, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(file)
		return fmt.Errorf("pin the VE's %s namespace on %s: %w", ns, file, err)
	}
	return nil
}

// Close ends the holder; the namespaces live on through their pins.
func (h *Holder) Close() {
	if h == nil || h.end < 0 {
		return
	}
	unix.Close(h.end) // the holder exits
	h.end = -1
	go h.reap()
}

// Unpin releases a namespace pinned on path; a missing one is not an error.
func Unpin(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	return nil
}

// Bind makes an idmapped copy of the tree at src (recursively) on dst, seen through the user
// namespace pinned on userns: files owned by host uid N appear owned by the namespace's
// N-th id (host root's files belong to the VE's root). src must be on a filesystem that
// supports idmapped mounts (ext4, xfs, btrfs, tmpfs, overlayfs as a whole does not).
func Bind(src, dst, userns string) error {
	ns, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	defer unix.Close(ns)
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open_tree: %w", src, err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("idmapped mount of %s: mount_setattr: %w (the filesystem may not support idmapped mounts)", src, err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("idmapped mount of %s on %s: move_mount: %w", src, dst, err)
	}
	return nil
}
