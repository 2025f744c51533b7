package container

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/revert"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// ErrNeedSave means a setting cannot change on a running VE and was given without --save.
var ErrNeedSave = errors.New("takes effect at the next start")

// SetOptions are the changes of one vectl set call. A nil or empty field is left alone.
type SetOptions struct {
	Save bool // persist in config.json (vzctl --save)

	Name        *string
	Description *string
	Monitor     *bool
	StopSignal  *string
	StopTimeout *int
	OnBoot      *bool
	BootOrder   *int
	// UserNS switches a stopped VE to a user namespace of its own (true) or back to a
	// privileged VE (false), converting its private data.
	UserNS *bool
	// Nesting lets a user-namespace VE run containers of its own, from its next start.
	Nesting *bool
	// Meminfo is vzctl's --meminfo: "none" turns the VE's /proc views off from its next
	// start, "privvmpages:1" (vzctl's default) on.
	Meminfo *string

	Hostname      *string
	IPAdd         []string // ADDR[/PREFIX]
	IPDel         []string // addresses, or "all"
	Nameservers   []string // addresses, or "inherit"
	SearchDomains []string // domains, or "inherit"
	NetIfAdd      []string // IFNAME[,bridge=BR][,mac=MAC][,host_ifname=NAME][,router=yes|no]
	NetIfDel      []string // interface names, or "all"

	// Disabled keeps the VE from starting unless forced (vzctl --disabled).
	Disabled *bool
	// Capabilities are NAME:on|off (vzctl --capability), Devices b|c:MAJOR:MINOR|all:ACCESS
	// (--devices), DevNodes NAME:ACCESS (--devnodes), Features NAME:on|off (--features); all
	// from the VE's next start.
	Capabilities []string
	Devices      []string
	DevNodes     []string
	Features     []string

	// ApplyConfig applies the resource parameters of a profile (vzctl --applyconfig);
	// Limits then sets single parameters: the fields set (resources.ParseLimits).
	ApplyConfig string
	Limits      resources.Limits
}

var ifnameRE = lazyRegexp(`^[a-z][a-z0-9_.-]{0,14}$`)

// parseNetIf reads vectl's --netif_add value:
// IFNAME[,bridge=BR][,mac=MAC][,host_ifname=NAME][,router=yes|no].
// Without bridge= the bridge of the only bridged pool is used.
func parseNetIf(nc *network.Config, s string) (store.NetIf, error) {
	parts := strings.Split(s, ",")
	nif := store.NetIf{Name: parts[0]}
	bad := func(why string) (store.NetIf, error) {
		return store.NetIf{}, fmt.Errorf("%w: netif %q: %s", ErrInvalidValue, s, why)
	}
	if !ifnameRE().MatchString(nif.Name) || nif.Name == "eth0" {
		return bad("the interface name must match [a-z][a-z0-9_.-]{0,14} (eth0 is the routed interface)")
	}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return bad("use key=value options: bridge, mac, host_ifname, router")
		case k == "router":
			switch v {
			case "yes":
				nif.Router = true
			case "no":
				nif.Router = false
			default:
				return bad("router must be yes or no")
			}
		case k == "bridge":
			nif.Bridge = v
		case k == "mac":
			hw, err := net.ParseMAC(v)
			if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
				return bad("mac must be a unicast Ethernet address")
			}
			nif.MAC = hw.String()
		case k == "host_ifname":
			if !ifnameRE().MatchString(v) {
				return bad("host_ifname must match [a-z][a-z0-9_.-]{0,14}")
			}
			nif.HostName = v
		default:
			return bad("unknown option " + k)
		}
	}
	var bridges []string
	for _, p := range nc.Pools {
		if p.Bridge != "" && !slices.Contains(bridges, p.Bridge) {
			bridges = append(bridges, p.Bridge)
		}
	}
	switch {
	case nif.Bridge == "" && len(bridges) == 1:
		nif.Bridge = bridges[0]
	case nif.Bridge == "":
		return bad(fmt.Sprintf("give bridge=NAME (bridged pools: %v)", bridges))
	case !slices.Contains(bridges, nif.Bridge):
		return bad(fmt.Sprintf("bridge %s has no address pool in %s", nif.Bridge, network.DefaultConfigPath))
	}
	return nif, nil
}

// change is the outcome of applying SetOptions to a config: what changed, and what of it
// can be applied to a running VE.
type change struct {
	stored []string // settings that take effect at the next start
	live   []string // settings applied to a running VE at once
	ipAdd  []netip.Prefix
	ipDel  []netip.Prefix
	ipMask [][2]netip.Prefix // an address the VE keeps, with another prefix length: old, new
	nifAdd []store.NetIf
	nifDel []string
	userns *bool           // switch the VE's user namespace on or off
	limits bool            // cgroup limits changed
	disk   bool            // diskspace changed
	net    *network.Config // the node's network configuration, when addresses or interfaces change
}

// apply validates o and applies it to cfg (a copy), without side effects.
func (m *Manager) apply(cfg *Config, o SetOptions) (*change, error) {
	ch := &change{}
	if o.UserNS != nil && *o.UserNS != (cfg.UserNS != nil) {
		ch.userns = o.UserNS
		ch.stored = append(ch.stored, "userns")
	}
	if o.Name != nil {
		if *o.Name != "" {
			if err := validateName(*o.Name); err != nil {
				return nil, err
			}
			if owner, err := m.resolve(*o.Name); err == nil && owner != cfg.ID {
				return nil, fmt.Errorf("name %q: %w (VE %s)", *o.Name, ErrExist, owner)
			}
		}
		cfg.Name = *o.Name
		ch.stored = append(ch.stored, "name")
	}
	if o.Description != nil {
		if err := validateDescription(*o.Description); err != nil {
			return nil, err
		}
		cfg.Description = *o.Description
		ch.stored = append(ch.stored, "description")
	}
	if o.Monitor != nil {
		cfg.NoMonitor = !*o.Monitor
		ch.stored = append(ch.stored, "monitor")
	}
	if o.StopSignal != nil {
		if *o.StopSignal != "" {
			if _, _, err := stopSignalFor("", *o.StopSignal); err != nil {
				return nil, err
			}
		}
		cfg.StopSignal = *o.StopSignal
		ch.stored = append(ch.stored, "stop-signal")
	}
	if o.StopTimeout != nil {
		if *o.StopTimeout < 0 {
			return nil, fmt.Errorf("%w: stop timeout %d: use whole seconds, 0 for the default", ErrInvalidValue, *o.StopTimeout)
		}
		cfg.StopTimeout = *o.StopTimeout
		ch.stored = append(ch.stored, "stop-timeout")
	}
	if o.Nesting != nil {
		privileged := cfg.UserNS == nil
		if o.UserNS != nil {
			privileged = !*o.UserNS
		}
		if *o.Nesting && privileged {
			return nil, fmt.Errorf("%w: nesting needs a user namespace of the VE's own (set --userns yes --save first)", ErrInvalidValue)
		}
		cfg.Nesting = *o.Nesting
		ch.stored = append(ch.stored, "nesting")
	}
	if o.Meminfo != nil {
		switch *o.Meminfo {
		case "none":
			cfg.Meminfo = "none"
		case "privvmpages:1", "default":
			cfg.Meminfo = ""
		default:
			return nil, fmt.Errorf("%w: meminfo %q: use none (the host's /proc/meminfo) or privvmpages:1 (the VE's own, the default)", ErrInvalidValue, *o.Meminfo)
		}
		ch.stored = append(ch.stored, "meminfo")
	}
	if o.OnBoot != nil {
		cfg.OnBoot = *o.OnBoot
		ch.stored = append(ch.stored, "onboot")
	}
	if o.Disabled != nil {
		cfg.Disabled = *o.Disabled
		ch.stored = append(ch.stored, "disabled")
	}
	if err := applyVZSettings(cfg, o, ch); err != nil {
		return nil, err
	}
	if o.BootOrder != nil {
		cfg.BootOrder = *o.BootOrder
		ch.stored = append(ch.stored, "bootorder")
	}
	if o.Hostname != nil {
		if err := validateHostname(*o.Hostname); err != nil {
			return nil, err
		}
		cfg.Hostname = *o.Hostname
		ch.live = append(ch.live, "hostname")
	}
	if len(o.Nameservers) > 0 {
		ns := o.Nameservers
		if slices.Equal(ns, []string{"inherit"}) {
			ns, _ = hostResolv()
		}
		for _, s := range ns {
			if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%w: nameserver %q: use an IP address or inherit", ErrInvalidValue, s)
			}
		}
		cfg.Nameservers = ns
		ch.live = append(ch.live, "nameserver")
	}
	if len(o.SearchDomains) > 0 {
		sd := o.SearchDomains
		if slices.Equal(sd, []string{"inherit"}) {
			_, sd = hostResolv()
		}
		for _, d := range sd {
			if err := validateHostname(d); err != nil {
				return nil, fmt.Errorf("%w: search domain %q", ErrInvalidValue, d)
			}
		}
		cfg.SearchDomains = sd
		ch.live = append(ch.live, "searchdomain")
	}
	if o.ApplyConfig != "" {
		prof, err := resources.Profile(m.opts.ProfileDir, o.ApplyConfig, resources.ReadHost())
		if err != nil {
			return nil, err
		}
		if cfg.Layout != LayoutImage {
			prof.DiskSpace, prof.DiskInodes = nil, nil // a profile's disk size only concerns images
		}
		prof.DiskInodes = nil // fixed when an image is made
		before := cfg.Resources
		cfg.Resources.Merge(prof)
		explicit := o.Limits.Given()
		for _, name := range before.Changed(cfg.Resources) {
			if !slices.Contains(explicit, name) {
				ch.limit(name)
			}
		}
	}
	if err := setLimits(cfg, o.Limits, ch); err != nil {
		return nil, err
	}
	if ch.disk && cfg.Layout != LayoutImage {
		return nil, fmt.Errorf("%w: --diskspace needs the image layout (create the VE with --layout image): "+
			"the %s layout has no disk limit on this host's filesystem", ErrInvalidValue, cfg.Layout)
	}
	if len(o.IPAdd)+len(o.IPDel)+len(o.NetIfAdd)+len(o.NetIfDel) == 0 {
		return ch, nil
	}
	nc, err := m.netConfig()
	if err != nil {
		return nil, err
	}
	ch.net = nc
	cur, err := parseIPs(nc, cfg.IPs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", m.store.ConfigPath(cfg.ID), err)
	}
	for _, s := range o.IPDel {
		if s == "all" {
			ch.ipDel = append(ch.ipDel, cur...)
			cur = nil
			continue
		}
		a, err := netip.ParseAddr(strings.Split(s, "/")[0])
		if err != nil {
			return nil, fmt.Errorf("%w: address %q", ErrInvalidValue, s)
		}
		i := slices.IndexFunc(cur, func(p netip.Prefix) bool { return p.Addr() == a })
		if i < 0 {
			ch.ipDel = append(ch.ipDel, netip.PrefixFrom(a, a.BitLen())) // live-only address
			continue
		}
		ch.ipDel = append(ch.ipDel, cur[i])
		cur = slices.Delete(cur, i, i+1)
	}
	add, err := parseIPs(nc, o.IPAdd)
	if err != nil {
		return nil, err
	}
	for _, p := range add {
		switch i := slices.IndexFunc(cur, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }); {
		case i < 0:
			cur = append(cur, p)
			ch.ipAdd = append(ch.ipAdd, p)
		case cur[i].Bits() != p.Bits():
			// An address the VE has, with another netmask: vzctl's way to change it.
			ch.ipMask = append(ch.ipMask, [2]netip.Prefix{cur[i], p})
			cur[i] = p
		}
	}
	cfg.IPs = prefixStrings(cur)
	if len(o.IPAdd)+len(o.IPDel) > 0 {
		ch.live = append(ch.live, "ip")
	}
	for _, s := range o.NetIfDel {
		for _, n := range cfg.NetIfs {
			if s == "all" || n.Name == s {
				ch.nifDel = append(ch.nifDel, n.Name)
			}
		}
		if s != "all" && !slices.Contains(ch.nifDel, s) {
			return nil, fmt.Errorf("%w: the VE has no interface %s", ErrInvalidValue, s)
		}
		cfg.NetIfs = slices.DeleteFunc(cfg.NetIfs, func(n store.NetIf) bool { return slices.Contains(ch.nifDel, n.Name) })
	}
	for _, s := range o.NetIfAdd {
		nif, err := parseNetIf(nc, s)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(cfg.NetIfs, func(n store.NetIf) bool { return n.Name == nif.Name }) {
			return nil, fmt.Errorf("%w: the VE already has an interface %s", ErrInvalidValue, nif.Name)
		}
		cfg.NetIfs = append(cfg.NetIfs, nif)
		ch.nifAdd = append(ch.nifAdd, nif)
	}
	if len(o.NetIfAdd)+len(o.NetIfDel) > 0 {
		ch.live = append(ch.live, "netif")
	}
	// Every bridged address needs an interface on its bridge.
	for _, p := range cur {
		pool, _ := nc.PoolOf(p.Addr())
		if pool.Bridge != "" && !slices.ContainsFunc(cfg.NetIfs, func(n store.NetIf) bool { return n.Bridge == pool.Bridge }) {
			return nil, fmt.Errorf("%w: address %s belongs to bridge %s: add an interface on it (--netif_add NAME,bridge=%s)",
				ErrInvalidValue, p.Addr(), pool.Bridge, pool.Bridge)
		}
	}
	return ch, nil
}

// SetResult is what one set call did. set's text and its --json output are both rendered
// from it.
type SetResult struct {
	ID string `json:"id"`
	// Live are the settings applied to the running VE at once.
	Live []string `json:"live"`
	// Stored are the settings that take effect at the next start.
	Stored []string `json:"stored"`
	// Saved tells whether the VE's config.json was written (--save).
	Saved bool `json:"saved"`
	// Running tells whether the VE was running.
	Running bool `json:"running"`
}

// String is set's one-line report.
func (r *SetResult) String() string {
	switch {
	case !r.Saved:
		return "applied " + strings.Join(r.Live, ", ") + " to the running VE; not saved (add --save to keep after a restart)"
	case r.Running && len(r.Live) > 0:
		return "applied and saved " + strings.Join(append(slices.Clone(r.Live), r.Stored...), ", ")
	}
	return "saved " + strings.Join(append(slices.Clone(r.Stored), r.Live...), ", ")
}

// Set changes a VE's settings, as vzctl set: settings that can change live (host name, DNS,
// limits, addresses, interfaces) are applied to a running VE at once; Save persists them.
// Settings that take effect at the next start need Save. It is all or nothing: when a step
// fails, the steps already applied to the running VE are undone, the config stays as it
// was, and the error names what was attempted.
func (m *Manager) Set(ctx context.Context, ref string, o SetOptions) (*SetResult, error) {
	id, l, err := m.lock(ref)
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return nil, err
	}
	orig := *cfg
	ch, err := m.apply(cfg, o)
	if err != nil {
		return nil, fmt.Errorf("set %s: %w", id, err)
	}
	if len(ch.stored)+len(ch.live) == 0 {
		return nil, fmt.Errorf("set %s: %w: nothing to set", id, ErrInvalidValue)
	}
	running := m.populated(id)
	if ch.userns != nil {
		if running || layout.Mounted(m.store.RootDir(id)) {
			return nil, fmt.Errorf("set %s: --userns: %w: stop it (and unmount it) first", id, ErrRunning)
		}
	}
	if !o.Save && (!running || len(ch.stored) > 0) {
		what := append(append([]string(nil), ch.stored...), ch.live...)
		if running {
			what = ch.stored
		}
		return nil, fmt.Errorf("set %s: %s %w: add --save", id, strings.Join(what, ", "), ErrNeedSave)
	}
	if len(ch.ipAdd) > 0 || ch.userns != nil {
		glock, err := m.store.LockGlobal(m.opts.LockTimeout)
		if err != nil {
			return nil, err
		}
		defer glock.Unlock()
		if err := m.checkIPsFree(id, ch.ipAdd); err != nil {
			return nil, fmt.Errorf("set %s: %w", id, err)
		}
		if ch.userns != nil && *ch.userns {
			if cfg.UserNS, err = m.allocateIDs(); err != nil {
				return nil, fmt.Errorf("set %s: %w", id, err)
			}
			if err := m.store.ClaimIDMap(id, *cfg.UserNS); err != nil {
				return nil, fmt.Errorf("set %s: %w", id, err)
			}
		} else if ch.userns != nil {
			cfg.UserNS = nil
			cfg.Nesting = false // a privileged VE never nests
		}
	}
	res := &SetResult{ID: id, Live: append([]string{}, ch.live...), Stored: append([]string{}, ch.stored...),
		Saved: o.Save, Running: running}
	err = func() (err error) {
		var r revert.Reverter
		defer r.Fail(&err)
		if running && len(ch.live) > 0 {
			if err := m.applyLive(ctx, &orig, cfg, ch, &r); err != nil {
				return err
			}
		}
		if ch.userns != nil {
			if err := m.convertUserNS(&orig, cfg, &r); err != nil {
				return err
			}
		}
		if ch.disk && (running || o.Save) {
			// The last live step: an image that grew stays grown if saving fails.
			if err := m.resizeImage(ctx, cfg, *cfg.Resources.DiskSpace); err != nil {
				return err
			}
		}
		if o.Save {
			if err := m.store.SaveConfig(cfg); err != nil {
				return err
			}
			if err := m.syncVZConf(cfg, m.opts.Warn); err != nil {
				m.opts.Warn(fmt.Sprintf("VE %s: vzctl config not written: %v", cfg.ID, err))
			}
		}
		return nil
	}()
	if ch.userns != nil {
		// A range the VE did not take, or gave up, goes back to the pool.
		if err != nil && cfg.UserNS != nil {
			m.store.ReleaseIDMap(*cfg.UserNS)
		}
		if err == nil && orig.UserNS != nil {
			m.store.ReleaseIDMap(*orig.UserNS)
		}
	}
	if err != nil {
		what := strings.Join(append(slices.Clone(ch.live), ch.stored...), ", ")
		return nil, fmt.Errorf("set %s (%s): %w; nothing was changed", id, what, err)
	}
	for _, w := range []string{ubcWarning(o.Limits), featureWarning(o)} {
		if w != "" {
			m.opts.Warn(w)
		}
	}
	return res, nil
}

// applyLive applies the live part of a change to a running VE, each step through the
// network layer, the cgroups or rooted writes into the VE's root, and registers each step's
// undo with r: removals first, then additions.
func (m *Manager) applyLive(ctx context.Context, old, cfg *Config, ch *change, r *revert.Reverter) error {
	root := m.store.RootDir(cfg.ID)
	if slices.Contains(ch.live, "hostname") {
		undo, err := snapshotGuestFiles(root, "/etc/hostname", "/etc/hosts")
		if err != nil {
			return err
		}
		pid, err := m.initPid(cfg.ID)
		if err != nil {
			return err
		}
		r.Add(undo)
		if err := writeHostname(root, cfg.Hostname, cfg.IPs); err != nil {
			return err
		}
		if err := setHostnameLive(pid, cfg.Hostname); err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		r.Add(func() error { return setHostnameLive(pid, cmp.Or(old.Hostname, cfg.ID)) })
	}
	if slices.Contains(ch.live, "nameserver") || slices.Contains(ch.live, "searchdomain") {
		undo, err := snapshotGuestFiles(root, "/etc/resolv.conf")
		if err != nil {
			return err
		}
		r.Add(undo)
		if err := writeResolvConf(root, cfg.Nameservers, cfg.SearchDomains); err != nil {
			return err
		}
	}
	if ch.limits {
		if err := m.setLive(cfg, old.Resources); err != nil {
			return err
		}
		r.Add(func() error { return m.setLive(old, cfg.Resources) })
	}
	if len(ch.ipAdd)+len(ch.ipDel)+len(ch.ipMask)+len(ch.nifAdd)+len(ch.nifDel) == 0 {
		return nil
	}
	n := m.netFrom(ch.net)
	nc := ch.net
	ips, err := parseIPs(nc, cfg.IPs)
	if err != nil {
		return err
	}
	oldIPs, err := parseIPs(nc, old.IPs)
	if err != nil {
		return err
	}
	ve, oldVE := m.veNet(cfg, ips), m.veNet(old, oldIPs)
	for _, a := range ch.ipDel {
		if err := n.DelAddr(ctx, m.veNet(old, nil), a); err != nil {
			return err
		}
		r.Add(func() error { return n.AddAddr(context.WithoutCancel(ctx), oldVE, a) })
	}
	for _, name := range ch.nifDel {
		i := slices.IndexFunc(old.NetIfs, func(x store.NetIf) bool { return x.Name == name })
		if err := n.DelNetIf(ctx, cfg.ID, ve.NetNS, name); err != nil {
			return err
		}
		if i >= 0 {
			nif := netIfs(&Config{NetIfs: []store.NetIf{old.NetIfs[i]}})[0]
			r.Add(func() error { return n.AddNetIf(context.WithoutCancel(ctx), oldVE, nif) })
		}
	}
	for _, nif := range ch.nifAdd {
		if err := n.AddNetIf(ctx, ve, netIfs(&Config{NetIfs: []store.NetIf{nif}})[0]); err != nil {
			return fmt.Errorf("interface %s: %w", nif.Name, err)
		}
		r.Add(func() error { return n.DelNetIf(context.WithoutCancel(ctx), cfg.ID, ve.NetNS, nif.Name) })
	}
	for _, pair := range ch.ipMask {
		if err := n.SetPrefix(ve, pair[0], pair[1]); err != nil {
			return err
		}
		r.Add(func() error { return n.SetPrefix(oldVE, pair[1], pair[0]) })
	}
	for _, a := range ch.ipAdd {
		if pool, _ := nc.PoolOf(a.Addr()); pool.Bridge != "" && slices.ContainsFunc(ch.nifAdd, func(x store.NetIf) bool {
			return x.Bridge == pool.Bridge
		}) {
			continue // attached with its new interface just now
		}
		if err := n.AddAddr(ctx, ve, a); err != nil {
			return fmt.Errorf("address %s: %w", a.Addr(), err)
		}
		r.Add(func() error { return n.DelAddr(context.WithoutCancel(ctx), ve, a) })
	}
	return nil
}

// snapshotGuestFiles reads files inside a VE's root (rooted, as the guest sees them) and
// returns what puts them back as they were: the same content, or no file.
func snapshotGuestFiles(root string, rels ...string) (func() error, error) {
	type saved struct {
		rel    string
		data   []byte
		exists bool
	}
	var files []saved
	for _, rel := range rels {
		data, err := template.ReadGuestFile(root, rel)
		switch {
		case errors.Is(err, os.ErrNotExist):
			files = append(files, saved{rel: rel})
		case err != nil:
			return nil, err
		default:
			files = append(files, saved{rel: rel, data: data, exists: true})
		}
	}
	return func() error {
		var errs []error
		for _, f := range files {
			if f.exists {
				errs = append(errs, template.WriteGuestFile(root, f.rel, f.data, 0o644))
			} else {
				errs = append(errs, template.RemoveGuestFile(root, f.rel))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// convertUserNS converts a stopped VE's private data between privileged (old) and its own
// user namespace (cfg) and registers the undo. Only an overlay's upper directory holds host
// ids: the copy and image layouts keep the ids as the VE sees them and are shown through an
// idmapped mount. The VE's root gets (or loses) its search right on the roots' directory.
func (m *Manager) convertUserNS(old, cfg *Config, r *revert.Reverter) error {
	var from, fromGID, to, toGID uint32
	if u := old.UserNS; u != nil {
		from, fromGID = u.UID, u.GID
	}
	if u := cfg.UserNS; u != nil {
		to, toGID = u.UID, u.GID
	}
	if cfg.Layout == LayoutOverlay {
		upper := filepath.Join(m.store.PrivateDir(cfg.ID), "upper")
		if err := idmap.Shift(upper, from, fromGID, to, toGID); err != nil {
			return fmt.Errorf("%w: convert the private area: %w", ErrInvalidValue, err)
		}
		r.Add(func() error { return idmap.Shift(upper, to, toGID, from, fromGID) })
	}
	if u := old.UserNS; u != nil {
		for _, dir := range []string{m.opts.Root, m.store.RootDir("")} {
			if err := idmap.GrantSearch(dir, u.UID, false); err != nil {
				return err
			}
		}
	}
	return nil
}
