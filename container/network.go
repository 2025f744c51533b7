package container

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/network/cniplugins"
	"github.com/vectl/vectl/template"
)

// ErrIPInUse means an address is already used by another VE (exit 78, as vzctl).
var ErrIPInUse = errors.New("IP address already in use")

// net returns the network layer, configured from the node's network.json.
func (m *Manager) net() (*network.Network, error) {
	cfg, err := network.LoadConfig(m.opts.NetworkConfig)
	if err != nil {
		return nil, err
	}
	return m.netFrom(cfg), nil
}

// netFrom returns the network layer for a network configuration already loaded.
func (m *Manager) netFrom(cfg *network.Config) *network.Network {
	dirs := func() ([]string, error) {
		dir := m.opts.CNIPath
		if dir == "" {
			var err error
			if dir, err = cniplugins.Dir(filepath.Join(m.opts.Root, "cni-bin")); err != nil {
				return nil, err
			}
		}
		return filepath.SplitList(dir), nil
	}
	return network.New(network.Options{
		Config:     cfg,
		PluginDirs: dirs,
		CacheDir:   filepath.Join(m.opts.RunDir, "cni"),
		StateDir:   filepath.Join(m.opts.RunDir, "net"),
		Table:      m.opts.FirewallTable,
	})
}

// netConfig loads only the node's network configuration (for validating addresses).
func (m *Manager) netConfig() (*network.Config, error) {
	return network.LoadConfig(m.opts.NetworkConfig)
}

// parseIPs validates addresses as --ipadd takes them and returns them normalised.
func parseIPs(nc *network.Config, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		p, err := nc.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(out, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
			out = append(out, p)
		}
	}
	return out, nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func netIfs(cfg *Config) []network.NetIf {
	out := make([]network.NetIf, len(cfg.NetIfs))
	for i, n := range cfg.NetIfs {
		out[i] = network.NetIf{Name: n.Name, Bridge: n.Bridge, MAC: n.MAC, HostName: n.HostName, Router: n.Router}
	}
	return out
}

// veNet describes a VE to the network layer.
func (m *Manager) veNet(cfg *Config, ips []netip.Prefix) network.VE {
	return network.VE{ID: cfg.ID, NetNS: m.netnsPath(cfg.ID), Addrs: ips, NetIfs: netIfs(cfg)}
}

// checkIPsFree refuses addresses another VE has configured or uses live. The caller holds
// the global lock.
func (m *Manager) checkIPsFree(id string, ips []netip.Prefix) error {
	if len(ips) == 0 {
		return nil
	}
	ids, err := m.store.IDs()
	if err != nil {
		return err
	}
	for _, other := range ids {
		if other == id {
			continue
		}
		var used []netip.Addr
		if c, err := m.store.LoadConfig(other); err == nil {
			for _, s := range c.IPs {
				if p, err := netip.ParsePrefix(s); err == nil {
					used = append(used, p.Addr())
				}
			}
		}
		if m.populated(other) {
			if live, err := network.Addrs(m.netnsPath(other)); err == nil {
				for _, ps := range live {
					for _, p := range ps {
						used = append(used, p.Addr())
					}
				}
			}
		}
		for _, p := range ips {
			if slices.Contains(used, p.Addr()) {
				return fmt.Errorf("%s: %w by VE %s", p.Addr(), ErrIPInUse, other)
			}
		}
	}
	return nil
}

// attachCNI gives a starting VE its addresses and interfaces (CNI ADD) in its network
// namespace and on the host, after the attachments of VEs that died without a teardown are
// removed; prepare runs it (and writeGuestNet) before the VE's init runs.
func (m *Manager) attachCNI(ctx context.Context, cfg *Config) error {
	n, err := m.net()
	if err != nil {
		return err
	}
	// Attachments of VEs that died without teardown (a crash, a host reboot) go first.
	if err := n.GC(ctx, m.claimStale); err != nil {
		return fmt.Errorf("network gc: %w", err)
	}
	ips, err := parseIPs(n.Config(), cfg.IPs)
	if err != nil {
		return err
	}
	return n.Attach(ctx, m.veNet(cfg, ips))
}

// detachNetwork undoes attachCNI; the VE's network namespace must still be pinned.
func (m *Manager) detachNetwork(ctx context.Context, id string) error {
	if _, err := os.Stat(filepath.Join(m.opts.RunDir, "cni")); errors.Is(err, os.ErrNotExist) {
		return nil // nothing was ever attached on this host since boot
	}
	n, err := m.net()
	if err != nil {
		return err
	}
	return errors.Join(n.Detach(ctx, id, m.netnsPath(id)), n.GC(ctx, func(other string) (func(), bool) {
		if other == id {
			return nil, false // detached above, under our lock
		}
		return m.claimStale(other)
	}))
}

// claimStale is network GC's test of whether a VE's CNI attachments are stale: the VE does
// not run and no other vectl holds its lock (a start holds it from before the attachment
// until the init runs, a stop until the detachment is done). The lock is held until the
// returned release, so that no start of the VE attaches it while GC deletes.
func (m *Manager) claimStale(id string) (func(), bool) {
	if m.populated(id) {
		return nil, false
	}
	l, err := m.store.LockVE(id, 0)
	if err != nil {
		return nil, false
	}
	if m.populated(id) {
		l.Unlock()
		return nil, false
	}
	return func() {
		if m.store.Exists(id) {
			l.Unlock()
		} else {
			l.Remove() // a destroyed VE: do not leave a lock file behind
			l.Unlock()
		}
	}, true
}

// writeGuestNet writes the VE's host name (/etc/hostname, its /etc/hosts line) and DNS
// settings (/etc/resolv.conf) into its root, with rooted opens: a guest's symlinks cannot
// redirect the writes to the host.
func (m *Manager) writeGuestNet(cfg *Config, root string) error {
	if cfg.Hostname != "" {
		if err := writeHostname(root, cfg.Hostname, cfg.IPs); err != nil {
			return err
		}
	}
	if len(cfg.Nameservers) > 0 || len(cfg.SearchDomains) > 0 {
		return writeResolvConf(root, cfg.Nameservers, cfg.SearchDomains)
	}
	return nil
}

const hostsMark = "# vectl"

// guestHostname returns the host name a starting VE gets in its UTS namespace, and makes
// /etc/hostname in its root say the same before its init reads it (an init that finds
// another name there tries to set it, which a privileged VE may not do): the configured
// name (writeGuestNet writes it); else a name the VE gave itself in /etc/hostname; else the
// VE's id, written there (and in /etc/hosts). What the template's own /etc/hostname says
// (debootstrap leaves the build host's name there; vectl's builds "localhost") is not the
// VE's choice: the id replaces it.
func guestHostname(cfg *Config, id, root, templateRoot string) (string, error) {
	if cfg.Hostname != "" {
		return cfg.Hostname, nil
	}
	own, err := hostnameIn(root)
	if err != nil {
		return "", fmt.Errorf("hostname: %w", err)
	}
	if own != "" && own != "localhost" && validateHostname(own) == nil && own != id {
		if tmpl, err := hostnameIn(templateRoot); err != nil || own != tmpl {
			return own, nil
		}
	}
	// Best effort: a root without /etc, or with no room left, still starts, under the id.
	if own != id {
		_ = writeHostname(root, id, cfg.IPs)
	}
	return id, nil
}

// hostnameIn returns the first line of /etc/hostname in the tree at root ("" if none).
func hostnameIn(root string) (string, error) {
	if root == "" {
		return "", os.ErrNotExist
	}
	data, err := template.ReadGuestFile(root, "/etc/hostname")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	return strings.TrimSpace(line), nil
}

func writeHostname(root, hostname string, ips []string) error {
	if err := template.WriteGuestFile(root, "/etc/hostname", []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	old, err := template.ReadGuestFile(root, "/etc/hosts")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hosts: %w", err)
	}
	addr := "127.0.1.1"
	for _, s := range ips {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
			addr = p.Addr().String()
			break
		}
	}
	names := hostname
	if short, _, ok := strings.Cut(hostname, "."); ok {
		names += " " + short
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		if !strings.HasSuffix(l, hostsMark) && l != "" {
			lines = append(lines, l)
		}
	}
	lines = append(lines, fmt.Sprintf("%s\t%s\t%s", addr, names, hostsMark))
	return template.WriteGuestFile(root, "/etc/hosts", []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// writeResolvConf replaces the nameserver and search lines of the VE's resolv.conf and
// keeps its other lines (options, comments).
func writeResolvConf(root string, ns, search []string) error {
	old, err := template.ReadGuestFile(root, "/etc/resolv.conf")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("resolv.conf: %w", err)
	}
	var keep, servers, domains []string
	for _, l := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[0] == "nameserver":
			servers = append(servers, l)
		case len(f) > 1 && (f[0] == "search" || f[0] == "domain"):
			domains = append(domains, l)
		case l != "":
			keep = append(keep, l)
		}
	}
	if len(ns) > 0 {
		servers = nil
		for _, s := range ns {
			servers = append(servers, "nameserver "+s)
		}
	}
	if len(search) > 0 {
		domains = []string{"search " + strings.Join(search, " ")}
	}
	out := append(append(keep, domains...), servers...)
	return template.WriteGuestFile(root, "/etc/resolv.conf", []byte(strings.Join(out, "\n")+"\n"), 0o644)
}

// hostResolv returns the host's nameservers and search domains (for "inherit").
func hostResolv() (ns, search []string) {
	data, _ := os.ReadFile("/etc/resolv.conf")
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) > 1 && f[0] == "nameserver":
			ns = append(ns, f[1])
		case len(f) > 1 && f[0] == "search":
			search = f[1:]
		}
	}
	return ns, search
}

// setHostnameLive sets the host name inside a running VE's UTS namespace (the VE itself
// has no CAP_SYS_ADMIN to do so).
func setHostnameLive(pid int, hostname string) error {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/uts", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread stays in the VE's namespace and dies
		errc <- func() error {
			if err := unix.Setns(fd, unix.CLONE_NEWUTS); err != nil {
				return err
			}
			return unix.Sethostname([]byte(hostname))
		}()
	}()
	return <-errc
}
