package container

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/revert"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// CreateOptions describe a new VE.
type CreateOptions struct {
	ID          string
	OSTemplate  string
	Layout      string // LayoutOverlay (default) or LayoutCopy
	Hostname    string
	Name        string
	Description string
	// IPs, Nameservers and SearchDomains as vectl set takes them (--ipadd,
	// --nameserver, --searchdomain).
	IPs           []string
	Nameservers   []string
	SearchDomains []string
	// Config is a resource profile (vzctl --config); Limits set single resource
	// parameters on top of it (resources.ParseLimits).
	Config string
	Limits resources.Limits
	// UserNS gives the VE a user namespace of its own, with a range of host ids allocated
	// from root's ranges in /etc/subuid and /etc/subgid (or idmap.DefaultBase).
	UserNS bool
	// Nesting lets the VE run containers of its own (a user-namespace VE only).
	Nesting bool
}

// Create makes a new VE from an OS template without starting it. The id and name are
// reserved under the global lock, so of two concurrent creates of one id exactly one wins
// (the other gets ErrExist). If create is killed midway, the VE is left marked incomplete
// and Destroy removes it completely.
func (m *Manager) Create(ctx context.Context, o CreateOptions) (_ *Config, err error) {
	if o.OSTemplate == "" {
		return nil, fmt.Errorf("create %s: %w: pass --ostemplate NAME (see vectl template list)", o.ID, ErrNoTemplate)
	}
	if o.Layout == "" {
		o.Layout = LayoutOverlay
	}
	if o.Layout != LayoutOverlay && o.Layout != LayoutCopy && o.Layout != LayoutImage {
		return nil, fmt.Errorf("%w: layout %q: use overlay, copy or image", ErrInvalidValue, o.Layout)
	}
	if err := template.ValidateName(o.OSTemplate); err != nil {
		return nil, err
	}
	if err := validateDescription(o.Description); err != nil {
		return nil, err
	}
	if err := m.validateCreate(&o); err != nil {
		return nil, err
	}
	// overlayfs cannot hold another overlay's upper directory: vectl nested in a VE whose
	// root is an overlay.
	var fs unix.Statfs_t
	if o.Layout == LayoutOverlay && unix.Statfs(filepath.Dir(m.store.PrivateDir(o.ID)), &fs) == nil &&
		fs.Type == unix.OVERLAYFS_SUPER_MAGIC {
		return nil, fmt.Errorf("%w: the overlay layout needs %s on a filesystem that can hold an overlay's upper "+
			"directory, and it is on overlayfs (vectl inside a VE?): use --layout copy", ErrInvalidValue,
			filepath.Dir(m.store.PrivateDir(o.ID)))
	}

	cfg, vlock, err := m.reserve(o)
	if err != nil {
		return nil, err
	}
	defer vlock.Unlock()

	r := &revert.Reverter{}
	defer r.Fail(&err)
	r.Add(func() error { return m.removeVE(cfg.ID, vlock) })

	// A downloaded template is unpacked by the first VE made from it (outside the global
	// lock, which reserve took and released).
	if _, err := m.unpackedTemplate(ctx, o.OSTemplate); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	if err := m.populate(ctx, cfg); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	if err := m.store.FinishCreate(cfg.ID); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.ID, err)
	}
	if err := m.syncVZConf(cfg, m.opts.Warn); err != nil {
		m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", cfg.ID, err))
	}
	if w := ubcWarning(o.Limits); w != "" {
		m.opts.Warn(w)
	}
	return cfg, nil
}

// reserve checks that the id and name are free and the template exists, then records the
// new VE as incomplete, all under the global lock. It returns with the VE's lock held.
func (m *Manager) reserve(o CreateOptions) (*Config, *store.Lock, error) {
	glock, err := m.store.LockGlobal(m.opts.LockTimeout)
	if err != nil {
		return nil, nil, err
	}
	defer glock.Unlock()

	if m.store.Exists(o.ID) {
		return nil, nil, fmt.Errorf("VE %s %w", o.ID, ErrExist)
	}
	if o.Name != "" {
		if owner, err := m.resolve(o.Name); err == nil {
			return nil, nil, fmt.Errorf("name %q: %w (VE %s)", o.Name, ErrExist, owner)
		}
	}
	if _, err := m.templates.Get(o.OSTemplate); err != nil {
		return nil, nil, err
	}
	var ips []string
	if len(o.IPs) > 0 {
		nc, err := m.netConfig()
		if err != nil {
			return nil, nil, err
		}
		parsed, err := parseIPs(nc, o.IPs)
		if err != nil {
			return nil, nil, err
		}
		if err := m.checkIPsFree(o.ID, parsed); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", o.ID, err)
		}
		ips = prefixStrings(parsed)
	}
	probe := &Config{ID: o.ID, Layout: o.Layout}
	if err := m.createLimits(probe, o); err != nil {
		return nil, nil, err
	}
	if o.Nesting && !o.UserNS {
		return nil, nil, fmt.Errorf("%w: nesting needs a user namespace of the VE's own (--userns yes): "+
			"a privileged VE's root would manage the host's cgroups", ErrInvalidValue)
	}
	var userns *store.IDMap
	if o.UserNS {
		if userns, err = m.allocateIDs(); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", o.ID, err)
		}
	}
	vlock, err := m.store.LockVE(o.ID, m.opts.LockTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("VE %s: %w", o.ID, err)
	}
	cfg := &Config{
		ID:          o.ID,
		Name:        o.Name,
		Description: o.Description,
		Hostname:    o.Hostname,
		OSTemplate:  o.OSTemplate,
		Layout:      o.Layout,
		Created:     time.Now().UTC().Truncate(time.Second),

		IPs:           ips,
		Nameservers:   probe.Nameservers,
		SearchDomains: probe.SearchDomains,
		Resources:     probe.Resources,
		UserNS:        userns,
		Nesting:       o.Nesting,
	}
	// The range is claimed first: a create killed in between leaves an index entry whose VE
	// does not exist, which the next allocation drops, never a VE whose range is unclaimed.
	if userns != nil {
		if err := m.store.ClaimIDMap(cfg.ID, *userns); err != nil {
			vlock.Unlock()
			return nil, nil, fmt.Errorf("create %s: %w", o.ID, err)
		}
	}
	if err := m.store.Reserve(cfg); err != nil {
		vlock.Unlock()
		os.RemoveAll(m.store.VEDir(o.ID))
		if userns != nil {
			m.store.ReleaseIDMap(*userns)
		}
		return nil, nil, fmt.Errorf("create %s: %w", o.ID, err)
	}
	return cfg, vlock, nil
}

// createLimits checks and fills in the DNS and resource settings of a new VE: a profile,
// then single parameters over it, as vectl set would check them. diskinodes can only be
// chosen here, and disk limits need the image layout.
func (m *Manager) createLimits(probe *Config, o CreateOptions) error {
	if _, err := m.apply(probe, SetOptions{Nameservers: o.Nameservers, SearchDomains: o.SearchDomains,
		ApplyConfig: o.Config}); err != nil {
		return err
	}
	limits := o.Limits
	inodes := limits.DiskInodes
	limits.DiskInodes = nil
	if err := setLimits(probe, limits, &change{}); err != nil {
		return err
	}
	if inodes != nil {
		probe.Resources.DiskInodes = inodes
	}
	if o.Layout != LayoutImage && (o.Limits.DiskSpace != nil || inodes != nil) {
		return fmt.Errorf("%w: --diskspace and --diskinodes need the image layout (--layout image): "+
			"the %s layout has no disk limit on this host's filesystem", ErrInvalidValue, o.Layout)
	}
	if ds := probe.Resources.DiskSpace; o.Layout == LayoutImage && (ds == nil || *ds == resources.Unlimited) {
		return fmt.Errorf("%w: the image layout needs --diskspace (the size of the VE's disk)", ErrInvalidValue)
	}
	return nil
}

// populate fills a new VE's private area according to its layout.
func (m *Manager) populate(ctx context.Context, cfg *Config) error {
	var size, inodes int64
	if cfg.Layout == LayoutImage {
		l := cfg.Resources
		if l.DiskSpace == nil || *l.DiskSpace == resources.Unlimited {
			return fmt.Errorf("%w: the image layout needs --diskspace (the size of the VE's disk)", ErrInvalidValue)
		}
		size = *l.DiskSpace
		if l.DiskInodes != nil && *l.DiskInodes != resources.Unlimited {
			inodes = *l.DiskInodes
		}
	}
	return m.area(cfg).Create(ctx, size, inodes)
}

// removeVE deletes everything a VE has on disk: its root mount, private area, config and
// lock file. Every step accepts "already gone", so it finishes an interrupted create or
// destroy. The caller holds the VE's lock l.
func (m *Manager) removeVE(id string, l *store.Lock) error {
	var errs []error
	if err := layout.Unmount(m.store.RootDir(id)); err != nil {
		return err // never delete through a mount that is still there
	}
	root := m.store.RootDir(id)
	if err := removeIfExists(root); err != nil {
		errs = append(errs, err)
	}
	priv := m.store.PrivateDir(id)
	if err := layout.Unstage(priv); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if mounts, err := layout.MountsUnder(priv); err != nil {
		return errors.Join(append(errs, fmt.Errorf("private area %s: %w", priv, err))...)
	} else if len(mounts) > 0 {
		return errors.Join(append(errs, fmt.Errorf("private area %s still has mounts %v", priv, mounts))...)
	}
	if err := os.RemoveAll(priv); err != nil {
		errs = append(errs, err)
	}
	if err := removeIfExists(m.consoleLog(id)); err != nil {
		errs = append(errs, err)
	}
	if err := m.removeVZConf(id); err != nil {
		errs = append(errs, err)
	}
	if cfg, err := m.store.LoadConfig(id); err == nil && cfg.UserNS != nil {
		for _, dir := range append([]string{m.opts.Root, m.store.RootDir("")}, m.restoreSearchDirs(id)...) {
			if err := idmap.GrantSearch(dir, cfg.UserNS.UID, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if err := m.store.ReleaseIDMap(*cfg.UserNS); err != nil {
			errs = append(errs, err)
		}
	}
	// The config goes last: until then a failed destroy can be run again.
	if err := os.RemoveAll(m.store.VEDir(id)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		errs = append(errs, l.Remove())
	}
	return errors.Join(errs...)
}

// Where user-namespace VEs take their host ids from.
var subUIDFile, subGIDFile = "/etc/subuid", "/etc/subgid"

// allocateIDs finds a free range of host uids and gids for a new user-namespace VE: one no
// other VE of this root has (the store's index of held ranges). The caller holds the global
// lock and claims the range (store.ClaimIDMap) once the VE's config exists.
func (m *Manager) allocateIDs() (*store.IDMap, error) {
	held, err := m.store.IDMaps()
	if err != nil {
		return nil, fmt.Errorf("allocate ids: %w", err)
	}
	var uids, gids []idmap.Range
	for _, u := range held {
		uids = append(uids, idmap.Range{Start: u.UID, Count: u.Size})
		gids = append(gids, idmap.Range{Start: u.GID, Count: u.Size})
	}
	noUIDs, err := idmap.Unmapped("/proc/self/uid_map")
	if err != nil {
		return nil, err
	}
	noGIDs, err := idmap.Unmapped("/proc/self/gid_map")
	if err != nil {
		return nil, err
	}
	uid, err := idmap.Allocate(subUIDFile, uids, noUIDs)
	if err != nil {
		return nil, err
	}
	gid, err := idmap.Allocate(subGIDFile, gids, noGIDs)
	if err != nil {
		return nil, err
	}
	return &store.IDMap{UID: uid, GID: gid, Size: idmap.Size}, nil
}
