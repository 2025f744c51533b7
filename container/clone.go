package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/revert"
	"github.com/vectl/vectl/template"
)

// CloneOptions describe a clone (vectl clone SRC NEWID).
type CloneOptions struct {
	Source, ID string
	Snapshot   string   // clone this snapshot of Source instead of its current state
	Name       string   // the clone's name ("" for none: never the source's)
	Hostname   string   // the clone's host name (default: its id)
	IPs        []string // the clone's addresses (none by default: never the source's)
}

// Clone makes a new VE from a stopped VE or one of its snapshots. On the overlay layout it
// shares the source's layers: a stopped source's upper directory becomes a layer both go on
// from, so the clone costs a rename whatever the data size. Copy and image VEs are copied.
// The clone gets its own machine-id, SSH host keys, host name, addresses and MACs, a range of
// ids of its own (a user-namespace VE), and the source's config otherwise.
func (m *Manager) Clone(ctx context.Context, o CloneOptions) (_ *Config, err error) {
	src, sl, err := m.lock(o.Source)
	if err != nil {
		return nil, err
	}
	defer sl.Unlock()
	scfg, err := m.loadComplete(src)
	if err != nil {
		return nil, err
	}
	if scfg.Layout == LayoutOverlay {
		if err := m.finishPending(scfg); err != nil {
			return nil, err
		}
	}
	base := ""
	if o.Snapshot != "" {
		uuid, err := NormalizeUUID(o.Snapshot)
		if err != nil {
			return nil, err
		}
		set, err := m.loadSnapshots(src)
		if err != nil {
			return nil, err
		}
		i := set.find(uuid)
		if i < 0 {
			return nil, fmt.Errorf("clone %s: %w %s (see vectl snapshot-list %s)", src, ErrNoSnapshot, uuid, src)
		}
		base = set.Snapshots[i].Layer
	} else if m.populated(src) {
		return nil, fmt.Errorf("clone %s: %w: stop it first, or clone one of its snapshots (vectl snapshot %s; clone --snapshot UUID)", src, ErrRunning, src)
	}
	copt := CreateOptions{ID: o.ID, OSTemplate: scfg.OSTemplate, Layout: scfg.Layout, Name: o.Name, Hostname: o.Hostname,
		Description: scfg.Description, IPs: o.IPs, Limits: scfg.Resources, UserNS: scfg.UserNS != nil, Nesting: scfg.Nesting}
	if copt.Hostname == "" && validateHostname(o.ID) == nil {
		copt.Hostname = o.ID
	}
	if err := m.validateCreate(&copt); err != nil {
		return nil, err
	}
	cfg, vlock, err := m.reserve(copt)
	if err != nil {
		return nil, err
	}
	defer vlock.Unlock()
	r := &revert.Reverter{}
	defer r.Fail(&err)
	r.Add(func() error { return m.removeVE(cfg.ID, vlock) })

	next := adoptConfig(scfg, cfg, false)
	next.OnBoot = false
	switch scfg.Layout {
	case LayoutOverlay:
		if o.Snapshot == "" {
			if base, err = m.cloneBase(ctx, scfg); err != nil {
				return nil, fmt.Errorf("clone %s: %w: %v", src, ErrSnapshot, err)
			}
		}
		next.Base = base
		if err := m.area(&next).Create(ctx, 0, 0); err != nil {
			return nil, fmt.Errorf("clone %s: %w", src, err)
		}
	default:
		if base != "" { // a copy or image VE's snapshot: its whole copy is copied
			err = os.MkdirAll(m.store.PrivateDir(next.ID), 0o700)
			if err == nil {
				err = m.copyBack(next.ID, scfg.Layout, m.layers().Tree(base))
			}
			if err != nil {
				return nil, fmt.Errorf("clone %s: %w: %v", src, ErrSnapshot, err)
			}
			next.Base = ""
		} else if err := m.copyPrivate(ctx, scfg, &next); err != nil {
			return nil, fmt.Errorf("clone %s: %w: %v", src, ErrSnapshot, err)
		}
	}
	next.NewIdentity = true
	if err := m.store.SaveConfig(&next); err != nil {
		return nil, err
	}
	if err := m.store.FinishCreate(next.ID); err != nil {
		return nil, err
	}
	if err := m.syncVZConf(&next, m.opts.Warn); err != nil {
		m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", next.ID, err))
	}
	return &next, nil
}

// adoptConfig is the config of a VE made from another's (a clone, a restored backup): src's
// settings with what reserve gave the new VE as its identity (id, name, host name,
// addresses, range of ids, creation time) and no layers yet. Its bridged interfaces get
// MACs and host-side names derived from the new id, unless keepMACs (the same VE again).
func adoptConfig(src, reserved *Config, keepMACs bool) Config {
	next := *src
	next.ID, next.Name, next.Hostname, next.IPs = reserved.ID, reserved.Name, reserved.Hostname, reserved.IPs
	next.UserNS, next.Created, next.Base = reserved.UserNS, reserved.Created, ""
	next.NetIfs = nil
	for _, nif := range src.NetIfs {
		if !keepMACs {
			nif.MAC, nif.HostName = "", ""
		}
		next.NetIfs = append(next.NetIfs, nif)
	}
	return next
}

// validateCreate checks what Create checks of its options before reserving the id.
func (m *Manager) validateCreate(o *CreateOptions) error {
	if err := ValidateID(o.ID); err != nil {
		return err
	}
	if o.Name != "" {
		if err := validateName(o.Name); err != nil {
			return err
		}
	}
	if o.Hostname != "" {
		if err := validateHostname(o.Hostname); err != nil {
			return err
		}
	}
	return m.init()
}

// cloneBase returns the layer a clone of a stopped overlay VE goes on from: the source's
// upper directory becomes a layer (and the source goes on from it too) unless it is empty.
func (m *Manager) cloneBase(ctx context.Context, scfg *Config) (string, error) {
	upper := filepath.Join(m.store.PrivateDir(scfg.ID), "upper")
	if ents, err := os.ReadDir(upper); err == nil && len(ents) == 0 {
		return scfg.Base, nil
	}
	if layout.Mounted(m.store.RootDir(scfg.ID)) {
		if err := m.umountRoot(scfg.ID); err != nil {
			return "", err
		}
	}
	id, err := m.newLayer(ctx, scfg, false, nil, nil)
	if err != nil {
		return "", err
	}
	return id, nil
}

// copyPrivate copies a copy or image VE's private area for its clone (rsync keeps hard
// links, ACLs, xattrs and holes).
func (m *Manager) copyPrivate(ctx context.Context, scfg, cfg *Config) error {
	// The copy and image layouts keep the ids as the VE sees them: nothing to shift.
	src, dst := m.store.PrivateDir(scfg.ID), m.store.PrivateDir(cfg.ID)
	if err := layout.Unmount(m.store.RootDir(scfg.ID)); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "rsync", "-aHAX", "--numeric-ids", "--sparse", src+"/", dst+"/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("copy %s: %s", src, lastLine(out, err))
	}
	return nil
}

// newIdentity gives a clone, at its first start, its own machine-id and SSH host keys in its
// mounted root: the source's are never shared.
func (m *Manager) newIdentity(ctx context.Context, cfg *Config, root string) error {
	b := make([]byte, 16)
	rand.Read(b)
	mid := []byte(hex.EncodeToString(b) + "\n")
	for _, rel := range []string{"etc/machine-id", "var/lib/dbus/machine-id"} {
		if st, err := os.Lstat(filepath.Join(root, rel)); err == nil && st.Mode().IsRegular() {
			if err := template.WriteGuestFile(root, rel, mid, 0o444); err != nil {
				return fmt.Errorf("machine-id: %w", err)
			}
		}
	}
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*_key"))
	if len(keys) == 0 {
		return nil
	}
	tmp, err := os.MkdirTemp("", "vectl-hostkeys-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, k := range keys {
		typ := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(k), "ssh_host_"), "_key")
		rel := strings.TrimPrefix(k, root+"/")
		if typ == "dsa" {
			// OpenSSH no longer makes DSA keys: the clone gets none.
			if err := errors.Join(template.RemoveGuestFile(root, rel), template.RemoveGuestFile(root, rel+".pub")); err != nil {
				return err
			}
			continue
		}
		f := filepath.Join(tmp, typ)
		out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", typ, "-N", "", "-C", "root@"+cfg.Hostname, "-f", f).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh host key %s: %s", typ, lastLine(out, err))
		}
		for _, part := range []struct {
			suffix string
			mode   uint32
		}{{"", 0o600}, {".pub", 0o644}} {
			data, err := os.ReadFile(f + part.suffix)
			if err != nil {
				return err
			}
			if err := template.WriteGuestFile(root, rel+part.suffix, data, part.mode); err != nil {
				return fmt.Errorf("ssh host key %s: %w", typ, err)
			}
		}
	}
	return nil
}
