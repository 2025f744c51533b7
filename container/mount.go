package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount mounts a VE's root filesystem at root/<id> (vzctl mount). Mounting a mounted VE is
// a no-op.
func (m *Manager) Mount(ref string) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	cfg, err := m.loadComplete(id)
	if err != nil {
		return err
	}
	if err := m.mountRoot(cfg); err != nil {
		return fmt.Errorf("mount %s: %w", id, err)
	}
	return nil
}

// Umount unmounts a stopped VE's root filesystem (vzctl umount).
func (m *Manager) Umount(ref string) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	st := m.observe(id)
	if st.Running {
		return fmt.Errorf("umount %s: %w: stop it first", id, ErrRunning)
	}
	if err := m.umountRoot(id); err != nil {
		return fmt.Errorf("umount %s: %w", id, err)
	}
	return nil
}

// loadComplete loads a VE's config and refuses a VE whose create never finished.
func (m *Manager) loadComplete(id string) (*Config, error) {
	if m.store.Incomplete(id) {
		return nil, fmt.Errorf("%s: %w: destroy it and create it again", id, ErrIncomplete)
	}
	return m.store.LoadConfig(id)
}

// mountRoot mounts the VE's root according to its layout.
func (m *Manager) mountRoot(cfg *Config) error {
	root := m.store.RootDir(cfg.ID)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	if mounted, err := mountinfo.Mounted(root); err != nil {
		return err
	} else if mounted {
		return nil
	}
	priv := m.store.PrivateDir(cfg.ID)
	var err error
	switch cfg.Layout {
	case LayoutOverlay:
		lower := m.templates.LowerDir(cfg.OSTemplate)
		if _, serr := os.Stat(lower); serr != nil {
			return fmt.Errorf("%w: template %s: %v", ErrMount, cfg.OSTemplate, serr)
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
			lower, filepath.Join(priv, "upper"), filepath.Join(priv, "work"))
		err = unix.Mount("overlay", root, "overlay", 0, opts)
	case LayoutCopy:
		err = unix.Mount(filepath.Join(priv, "rootfs"), root, "", unix.MS_BIND, "")
	case LayoutImage:
		err = mountImage(m.imagePath(cfg.ID), root)
	default:
		return fmt.Errorf("%w: unknown layout %q", ErrMount, cfg.Layout)
	}
	if err != nil {
		if _, serr := os.Stat(priv); errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("%w: private area %s is missing", ErrMount, priv)
		}
		return fmt.Errorf("%w: %s layout at %s: %v", ErrMount, cfg.Layout, root, err)
	}
	return nil
}

// umountRoot unmounts root/<id> if it is mounted.
func (m *Manager) umountRoot(id string) error {
	root := m.store.RootDir(id)
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

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
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

// mountedRoots returns the set of VE ids whose root is mounted, from one read of mountinfo.
func (m *Manager) mountedRoots() (map[string]bool, error) {
	base := m.store.RootDir("")
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
