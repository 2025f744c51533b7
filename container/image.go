package container

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

	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// LayoutImage keeps a VE's root in an ext4 image file of the VE's private area, loop-mounted:
// its size and inode count are hard limits (like OpenVZ's ploop).
const LayoutImage = "image"

func (m *Manager) imagePath(id string) string {
	return filepath.Join(m.store.PrivateDir(id), "root.img")
}

// runTool runs a host tool (e2fsprogs) and turns its failure into an error with its output.
func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// createImage makes a VE's disk image: a sparse file of the disk space, an ext4 filesystem
// with the inode count asked for, and the template's tree copied in through the same safe
// extraction as templates.
func (m *Manager) createImage(ctx context.Context, cfg *Config) (err error) {
	l := cfg.Resources
	if l.DiskSpace == nil || *l.DiskSpace == resources.Unlimited {
		return fmt.Errorf("%w: the image layout needs --diskspace (the size of the VE's disk)", ErrInvalidValue)
	}
	img := m.imagePath(cfg.ID)
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(*l.DiskSpace)
	f.Close()
	if err != nil {
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1"}
	if l.DiskInodes != nil && *l.DiskInodes != resources.Unlimited {
		args = append(args, "-N", strconv.FormatInt(*l.DiskInodes, 10))
	}
	if err := runTool(ctx, "mkfs.ext4", append(args, img)...); err != nil {
		return err
	}
	if err := m.mountRoot(cfg); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, m.umountRoot(cfg.ID)) }()
	root := m.store.RootDir(cfg.ID)
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(template.Pack(pw, m.templates.LowerDir(cfg.OSTemplate))) }()
	if err := template.Extract(pr, root); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("copy the template into the image: %w", err)
	}
	return nil
}

// mountImage attaches a VE's image to a free loop device (released automatically at
// unmount) and mounts it on root.
func mountImage(img, root string) error {
	f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
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
		err = unix.Mount(dev, root, "ext4", 0, "")
		// Closing our descriptor leaves the device to the mount; with AUTOCLEAR it detaches
		// at unmount, or now if the mount failed.
		lf.Close()
		return err
	}
}

// imageDevice returns the loop device a mounted VE image is on.
func (m *Manager) imageDevice(id string) (string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(m.store.RootDir(id)))
	if err != nil || len(ms) == 0 {
		return "", fmt.Errorf("the disk image of VE %s is not mounted", id)
	}
	return ms[0].Source, nil
}

// resizeImage changes a VE's disk space. A mounted image can only grow (online, with
// resize2fs); shrinking needs the VE stopped and fails if the data does not fit.
func (m *Manager) resizeImage(ctx context.Context, cfg *Config, size int64) error {
	img := m.imagePath(cfg.ID)
	st, err := os.Stat(img)
	if err != nil {
		return err
	}
	kib := strconv.FormatInt(size/resources.KiB, 10) + "K"
	if m.rootMountedNow(cfg.ID) {
		if size < st.Size() {
			return fmt.Errorf("%w: shrinking the disk of a mounted VE: stop it (and umount) first", ErrRunning)
		}
		// ext4 grows online only for a caller with CAP_SYS_RESOURCE (ext4_resize_begin);
		// without it, say so before touching anything.
		if !hasCap(unix.CAP_SYS_RESOURCE) {
			return fmt.Errorf("%w: growing a mounted ext4 image needs CAP_SYS_RESOURCE, which vectl lacks on this host: "+
				"stop the VE and run set --diskspace --save again (it then grows offline)", ErrRunning)
		}
		dev, err := m.imageDevice(cfg.ID)
		if err != nil {
			return err
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

// hasCap reports whether vectl has a capability in its effective set.
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

func (m *Manager) rootMountedNow(id string) bool {
	ok, err := mountinfo.Mounted(m.store.RootDir(id))
	return err == nil && ok
}

// DiskUsage is the used and total space and inodes of a VE's image filesystem.
type DiskUsage struct {
	Used, Total, InodesUsed, InodesTotal int64
}

// diskUsage reads it with statfs when the image is mounted.
func (m *Manager) diskUsage(cfg *Config) (DiskUsage, bool) {
	if cfg.Layout != LayoutImage || !m.rootMountedNow(cfg.ID) {
		return DiskUsage{}, false
	}
	var s unix.Statfs_t
	if unix.Statfs(m.store.RootDir(cfg.ID), &s) != nil {
		return DiskUsage{}, false
	}
	bs := int64(s.Bsize)
	return DiskUsage{
		Used: (int64(s.Blocks) - int64(s.Bfree)) * bs, Total: int64(s.Blocks) * bs,
		InodesUsed: int64(s.Files) - int64(s.Ffree), InodesTotal: int64(s.Files),
	}, true
}
