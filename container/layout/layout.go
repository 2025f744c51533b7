// Package layout owns the disk layouts of a VE's private area and how it becomes the VE's
// root: an overlay of the shared template tree and a private upper directory, a bind mount of
// a private copy, or a loop-mounted ext4 image (making, mounting, unmounting and resizing it,
// and its usage). It works on paths and sizes only: it knows nothing of VE configs, locks,
// processes or cgroups, and must not import package container. Templates reach it as an
// unpacked tree (Area.Lower) and package template's safe copy and extraction.
package layout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// The layouts of a private area.
const (
	Overlay = "overlay" // shared read-only template tree + private upper directory
	Copy    = "copy"    // full private copy of the template
	Image   = "image"   // ext4 image file, loop-mounted: hard disk-space and inode limits
)

// Errors of this package; container maps them to its exit codes.
var (
	// ErrMount means the root could not be mounted (exit 50).
	ErrMount = errors.New("mount failed")
	// ErrDiskSpace means a disk size cannot be met or changed as asked (exit 46).
	ErrDiskSpace = errors.New("not enough disk space")
	// ErrInUse means the change needs the root unmounted, so the VE stopped (exit 32).
	ErrInUse = errors.New("VE is running")
)

// Area is one VE's private area and the directory its root is mounted on.
type Area struct {
	ID       string // the VE's id, for messages
	Layout   string // Overlay, Copy or Image
	Private  string // the private area: upper+work, rootfs, or root.img
	Root     string // the mount point
	Template string // the template's name, for messages
	Lower    string // the template's unpacked tree (the overlay's lower layer)

	// Owner, for a VE with a user namespace, are the host ids of its root: the owner of an
	// overlay's upper directory (the merged root takes it from there).
	Owner *[2]uint32
	// Userns, for a VE with a user namespace, is its pinned user namespace: Mount shows the
	// template's tree (overlay), the private copy (copy) or the image's filesystem (image)
	// through an idmapped mount of it, so that what host root owns the VE's root owns.
	Userns string

	// Layers are the overlay's lower layers above the template, top first: the VE's
	// snapshots and the source VE of a clone.
	Layers []LayerDir
	// ReadOnly mounts the overlay without the upper directory (a snapshot's tree).
	ReadOnly bool
}

// Create makes a new VE's private area (which must not exist) from the template's tree:
// an empty upper directory with the tree's mode (the merged root takes it from there) and
// a work directory; a full copy; or an image of size bytes (with inodes of them, when not
// 0) holding a copy. On error the caller removes the private area.
func (a Area) Create(ctx context.Context, size, inodes int64) error {
	if err := os.Mkdir(a.Private, 0o700); err != nil {
		return err
	}
	switch a.Layout {
	case Overlay:
		st, err := os.Stat(a.Lower)
		if err != nil {
			return fmt.Errorf("template %s: %w", a.Template, err)
		}
		upper := filepath.Join(a.Private, "upper")
		if err := os.Mkdir(upper, st.Mode().Perm()); err != nil {
			return err
		}
		if err := os.Chmod(upper, st.Mode().Perm()); err != nil {
			return err
		}
		if a.Owner != nil {
			if err := os.Chown(upper, int(a.Owner[0]), int(a.Owner[1])); err != nil {
				return err
			}
		}
		return os.Mkdir(filepath.Join(a.Private, "work"), 0o700)
	case Copy:
		return template.CopyTree(ctx, a.Lower, filepath.Join(a.Private, "rootfs"))
	case Image:
		return a.MakeImage(ctx, size, inodes, func(root string) error {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(template.Pack(pw, a.Lower)) }()
			if err := template.Extract(pr, root); err != nil {
				pr.CloseWithError(err)
				return fmt.Errorf("copy the template into the image: %w", err)
			}
			return nil
		})
	}
	return fmt.Errorf("unknown layout %q", a.Layout)
}

// ImagePath is the image file of an Image area.
func (a Area) ImagePath() string { return filepath.Join(a.Private, "root.img") }

// Mount mounts the area on a.Root according to its layout. Mounting a mounted root is a
// no-op.
func (a Area) Mount() error {
	if err := os.MkdirAll(a.Root, 0o755); err != nil {
		return err
	}
	if mounted, err := mountinfo.Mounted(a.Root); err != nil {
		return err
	} else if mounted {
		return nil
	}
	var err error
	switch a.Layout {
	case Overlay:
		if len(a.Layers) > 0 || a.ReadOnly {
			err = a.mountLayered()
			break
		}
		if _, serr := os.Stat(a.Lower); serr != nil {
			return fmt.Errorf("%w: template %s: %v", ErrMount, a.Template, serr)
		}
		err = a.staged(a.Lower, idmap.Bind, func(lower string) error {
			opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
				lower, filepath.Join(a.Private, "upper"), filepath.Join(a.Private, "work"))
			return unix.Mount("overlay", a.Root, "overlay", 0, opts)
		})
	case Copy:
		rootfs := filepath.Join(a.Private, "rootfs")
		if a.Userns != "" {
			err = idmap.Bind(rootfs, a.Root, a.Userns)
		} else {
			err = unix.Mount(rootfs, a.Root, "", unix.MS_BIND, "")
		}
	case Image:
		if a.Userns == "" {
			err = mountImage(a.ImagePath(), a.Root)
			break
		}
		err = a.staged(a.ImagePath(), func(img, dst, _ string) error { return mountImage(img, dst) }, func(fs string) error {
			return idmap.Bind(fs, a.Root, a.Userns)
		})
	default:
		return fmt.Errorf("%w: unknown layout %q", ErrMount, a.Layout)
	}
	if err != nil {
		if _, serr := os.Stat(a.Private); errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("%w: private area %s is missing", ErrMount, a.Private)
		}
		return fmt.Errorf("%w: %s layout at %s: %v", ErrMount, a.Layout, a.Root, err)
	}
	return nil
}

// staged mounts src on a staging directory in the private area with stage (given a.Userns),
// runs use with it, and detaches the staging mount again: the mount use makes keeps its own
// reference (overlayfs clones its layers, an idmapped copy is a mount of its own). Without a
// user namespace, use gets src itself unless stage must mount it.
func (a Area) staged(src string, stage func(src, dst, userns string) error, use func(string) error) error {
	if a.Userns == "" && a.Layout == Overlay {
		return use(src)
	}
	if err := Unstage(a.Private); err != nil { // what a killed mount left
		return err
	}
	dir := filepath.Join(a.Private, "stage")
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	defer os.Remove(dir)
	if err := stage(src, dir, a.Userns); err != nil {
		return err
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return use(dir)
}

// Unstage detaches a staging mount that a killed Mount left in the private area priv
// (see staged); none is not an error.
func Unstage(priv string) error {
	dir := filepath.Join(priv, "stage")
	// A killed staged() leaves its mount on the stage directory itself: detach that (and
	// anything stacked on it) before looking inside, or the entries read would be the
	// staged tree's own (a template's files), not the stage's.
	for {
		err := unix.Unmount(dir, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	// A layered mount's stage holds a mount (or a pinned namespace) per entry.
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Unmount unmounts root if it is mounted; a missing or unmounted root is not an error.
func Unmount(root string) error {
	mounted, err := mountinfo.Mounted(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if !mounted {
		return nil
	}
	if err := unix.Unmount(root, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("%s is busy: a process on the host uses it", root)
		}
		return fmt.Errorf("unmount %s: %w", root, err)
	}
	return nil
}

// Mounted reports whether something is mounted on root now.
func Mounted(root string) bool {
	ok, err := mountinfo.Mounted(root)
	return err == nil && ok
}

// MountsUnder lists the mount points at or below dir.
func MountsUnder(dir string) ([]string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, mi := range ms {
		out = append(out, mi.Mountpoint)
	}
	return out, nil
}

// MountedBelow returns the names of base's direct subdirectories that are mount points,
// from one read of mountinfo (the VEs whose roots are mounted).
func MountedBelow(base string) (map[string]bool, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(base))
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(ms))
	for _, mi := range ms {
		rel, err := filepath.Rel(base, mi.Mountpoint)
		if err == nil && rel != "." && !strings.Contains(rel, "/") {
			set[rel] = true
		}
	}
	return set, nil
}

// runTool runs a host tool (e2fsprogs) and turns its failure into an error with its output.
func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// MakeImage makes an Image area's disk: a sparse file of size bytes with an ext4 filesystem
// (inodes of them, when not 0), mounted on a.Root while fill puts the VE's files in, then
// unmounted again.
func (a Area) MakeImage(ctx context.Context, size, inodes int64, fill func(root string) error) (err error) {
	img := a.ImagePath()
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1"}
	if inodes > 0 {
		args = append(args, "-N", strconv.FormatInt(inodes, 10))
	}
	if err := runTool(ctx, "mkfs.ext4", append(args, img)...); err != nil {
		return err
	}
	if err := a.Mount(); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, Unmount(a.Root)) }()
	if err := os.Chmod(a.Root, 0o755); err != nil {
		return err
	}
	return fill(a.Root)
}

// MountImageReadOnly loop-mounts an image read-only on root (a snapshot's).
func MountImageReadOnly(img, root string) error {
	if err := mountImageFlags(img, root, true); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMount, img, err)
	}
	return nil
}

// mountImage attaches a VE's image to a free loop device (released automatically at
// unmount) and mounts it on root.
func mountImage(img, root string) error { return mountImageFlags(img, root, false) }

func mountImageFlags(img, root string, readOnly bool) error {
	mode, mflags, data := os.O_RDWR, uintptr(0), ""
	if readOnly {
		mode, mflags, data = os.O_RDONLY, unix.MS_RDONLY, "norecovery" // a snapshot's image is never written
	}
	f, err := os.OpenFile(img, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		cfg := &unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		if readOnly {
			cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		copy(cfg.Info.File_name[:], img)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), cfg)
		if errors.Is(err, unix.EBUSY) && attempt < 20 {
			lf.Close() // another process took it meanwhile
			continue
		}
		if err != nil {
			lf.Close()
			return fmt.Errorf("attach %s to %s: %w", img, dev, err)
		}
		err = unix.Mount(dev, root, "ext4", mflags, data)
		// Closing our descriptor leaves the device to the mount; with AUTOCLEAR it detaches
		// at unmount, or now if the mount failed.
		lf.Close()
		return err
	}
}

// Device returns the device mounted on root (the loop device of a mounted image).
func Device(root string) (string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(root))
	if err != nil || len(ms) == 0 {
		return "", fmt.Errorf("%s is not mounted", root)
	}
	return ms[0].Source, nil
}

// Resize changes an Image area's disk size. A mounted image can only grow (online, with
// resize2fs); shrinking needs it unmounted and fails if the data does not fit.
func (a Area) Resize(ctx context.Context, size int64) error {
	img := a.ImagePath()
	st, err := os.Stat(img)
	if err != nil {
		return err
	}
	kib := strconv.FormatInt(size/resources.KiB, 10) + "K"
	if Mounted(a.Root) {
		if size < st.Size() {
			return fmt.Errorf("%w: shrinking the disk of a mounted VE: stop it (and umount) first", ErrInUse)
		}
		// ext4 grows online only for a caller with CAP_SYS_RESOURCE (ext4_resize_begin);
		// without it, say so before touching anything.
		if !hasCap(unix.CAP_SYS_RESOURCE) {
			return fmt.Errorf("%w: growing a mounted ext4 image needs CAP_SYS_RESOURCE, which vectl lacks on this host: "+
				"stop the VE and run set --diskspace --save again (it then grows offline)", ErrInUse)
		}
		dev, err := Device(a.Root)
		if err != nil {
			return fmt.Errorf("the disk image of VE %s is not mounted", a.ID)
		}
		if err := os.Truncate(img, size); err != nil {
			return err
		}
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		err = unix.IoctlSetInt(int(lf.Fd()), unix.LOOP_SET_CAPACITY, 0)
		lf.Close()
		if err != nil {
			return fmt.Errorf("loop capacity: %w", err)
		}
		return runTool(ctx, "resize2fs", dev, kib)
	}
	// e2fsck exits 1 when it fixed something, which is fine before a resize.
	if err := runTool(ctx, "e2fsck", "-f", "-y", img); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			return err
		}
	}
	if size > st.Size() {
		if err := os.Truncate(img, size); err != nil {
			return err
		}
		return runTool(ctx, "resize2fs", img, kib)
	}
	if err := runTool(ctx, "resize2fs", img, kib); err != nil {
		return fmt.Errorf("%w: the VE's data does not fit in %s: %v", ErrDiskSpace, resources.FormatSize(size), err)
	}
	return os.Truncate(img, size)
}

// hasCap reports whether this process has a capability in its effective set.
func hasCap(c int) bool {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<uint(c)) != 0
		}
	}
	return false
}

// Usage is the used and total space and inodes of a filesystem.
type Usage struct {
	Used, Total, InodesUsed, InodesTotal int64
}

// DiskUsage reads the usage of the filesystem mounted on root with statfs; false when
// nothing is mounted there.
func DiskUsage(root string) (Usage, bool) {
	if !Mounted(root) {
		return Usage{}, false
	}
	var s unix.Statfs_t
	if unix.Statfs(root, &s) != nil {
		return Usage{}, false
	}
	bs := int64(s.Bsize)
	return Usage{
		Used: (int64(s.Blocks) - int64(s.Bfree)) * bs, Total: int64(s.Blocks) * bs,
		InodesUsed: int64(s.Files) - int64(s.Ffree), InodesTotal: int64(s.Files),
	}, true
}
