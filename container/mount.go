package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/layout"
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

// area describes a VE's private area and root mount to package layout.
func (m *Manager) area(cfg *Config) layout.Area {
	a := layout.Area{ID: cfg.ID, Layout: cfg.Layout, Private: m.store.PrivateDir(cfg.ID), Root: m.store.RootDir(cfg.ID),
		Template: cfg.OSTemplate, Lower: m.templates.LowerDir(cfg.OSTemplate)}
	if u := cfg.UserNS; u != nil {
		a.Owner = &[2]uint32{u.UID, u.GID}
	}
	return a
}

// mountRoot mounts the VE's root according to its layout. A user-namespace VE's root is
// seen through its pinned user namespace; a stopped one (vectl mount) gets a user namespace
// of the same map for the time of the mount.
func (m *Manager) mountRoot(cfg *Config) error {
	a := m.area(cfg)
	if cfg.Layout == LayoutOverlay && !layout.Mounted(a.Root) {
		if err := m.finishPending(cfg); err != nil {
			return err
		}
		layers, err := m.layerDirs(cfg.Base)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrMount, err)
		}
		a.Layers = layers
	}
	u := cfg.UserNS
	if u == nil || layout.Mounted(a.Root) {
		return a.Mount()
	}
	a.Userns = m.runFile(cfg.ID, usernsFile)
	if _, err := os.Stat(a.Userns); err != nil {
		a.Userns = filepath.Join(m.opts.RunDir, "mount-userns-"+cfg.ID)
		if err := idmap.Pin(a.Userns, u.UID, u.GID); err != nil {
			return err
		}
		defer idmap.Unpin(a.Userns)
	}
	return a.Mount()
}

// umountRoot unmounts root/<id> if it is mounted, and a staging mount a killed mount left.
func (m *Manager) umountRoot(id string) error {
	return errors.Join(layout.Unmount(m.store.RootDir(id)), layout.Unstage(m.store.PrivateDir(id)))
}

// mountedRoots returns the set of VE ids whose root is mounted, from one read of mountinfo.
func (m *Manager) mountedRoots() (map[string]bool, error) {
	return layout.MountedBelow(m.store.RootDir(""))
}
