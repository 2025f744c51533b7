package network

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
)

// Network names of vectl's CNI attachments (libcni's cache is keyed by them).
const (
	venetNetwork  = "vectl-venet"
	bridgePrefix  = "vectl-br-"
	venetIfName   = "eth0"
	cniVersion    = "1.0.0"
	ignoreUnknown = "IgnoreUnknown"
)

// NetIf is a bridged interface of a VE (vectl set --netif_add), like OpenVZ's veth.
type NetIf struct {
	Name     string // interface name inside the VE (eth1, ...)
	Bridge   string // host bridge
	MAC      string // VE-side MAC; derived from the VE id and Name when empty
	HostName string // host-side interface name; the plugin's random veth name when empty
	// Router lets the VE send router advertisements, redirects and DHCP server messages on
	// the bridge (it is the bridge's router or DHCP server); otherwise they are dropped.
	Router bool
}

// VE is what the network layer needs to know about one VE.
type VE struct {
	ID     string
	NetNS  string         // path of the VE's pinned network namespace
	Addrs  []netip.Prefix // every address of the VE (routed and bridged)
	NetIfs []NetIf
}

// Network attaches VEs to the host's network with the CNI plugins and keeps vectl's own host
// state (firewall, pool routes, proxy neighbour entries) in line with them.
type Network struct {
	cfg      *Config
	cache    *libcni.CNIConfig                 // reads libcni's cache (no plugin is run)
	plugins  func() (*libcni.CNIConfig, error) // runs plugins: found on first use
	fw       *Firewall
	cacheDir string
	stateDir string
	hostDir  string
}

// Options configure a Network.
type Options struct {
	Config *Config
	// PluginDirs tells where the CNI plugin binaries are. It is called once, when a plugin
	// is first run: finding (or extracting) the embedded plugins is work that a live
	// address change, which runs no plugin, need not do.
	PluginDirs func() ([]string, error)
	CacheDir   string // libcni's result cache (under /run, so it is gone after a reboot like the VEs)
	StateDir   string // vectl's own volatile network state
	// HostStateDir holds the record of host settings vectl changed, shared by every vectl
	// instance on the host (DefaultHostStateDir when empty).
	HostStateDir string
	Table        string // nftables table name ("vectl")
}

// New returns a Network. It does not touch the host until a VE is attached.
func New(o Options) *Network {
	return &Network{
		cfg:   o.Config,
		cache: libcni.NewCNIConfigWithCacheDir(nil, o.CacheDir, nil),
		plugins: sync.OnceValues(func() (*libcni.CNIConfig, error) {
			dirs, err := o.PluginDirs()
			if err != nil {
				return nil, err
			}
			return libcni.NewCNIConfigWithCacheDir(dirs, o.CacheDir, pluginExec{&invoke.DefaultExec{
				RawExec:       &invoke.RawExec{Stderr: os.Stderr},
				PluginDecoder: version.PluginDecoder{},
			}}), nil
		}),
		fw:       NewFirewall(o.Table, -1),
		cacheDir: o.CacheDir,
		stateDir: o.StateDir,
		hostDir:  cmp.Or(o.HostStateDir, DefaultHostStateDir),
	}
}

// pluginExec runs CNI plugins as libcni does by default, with GOMAXPROCS=1 in their
// environment unless the administrator set GOMAXPROCS. The reference plugins are Go programs
// that live for a few milliseconds and do their work on one thread at a time (a delegated
// IPAM plugin inherits the variable): started with one P, a plugin's runtime starts fewer
// threads and GC workers; ptp's ADD and DEL, each with the static IPAM plugin, cost about 3
// ms less CPU each on the development machine.
type pluginExec struct{ *invoke.DefaultExec }

func (e pluginExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	return e.DefaultExec.ExecPlugin(ctx, path, stdin, oneProc(environ))
}

// oneProc returns environ with GOMAXPROCS=1 added when it does not set GOMAXPROCS.
func oneProc(environ []string) []string {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return environ
		}
	}
	return append(environ[:len(environ):len(environ)], "GOMAXPROCS=1")
}

// Config returns the node's network configuration.
func (n *Network) Config() *Config { return n.cfg }

// split sorts a VE's addresses into the routed ones (eth0) and the bridged ones by bridge.
func (n *Network) split(addrs []netip.Prefix) (routed []netip.Prefix, bridged map[string][]netip.Prefix, err error) {
	bridged = map[string][]netip.Prefix{}
	for _, a := range addrs {
		p, ok := n.cfg.PoolOf(a.Addr())
		if !ok {
			return nil, nil, fmt.Errorf("%w: address %s is outside the VE address pools", ErrInvalid, a)
		}
		if p.Bridge == "" {
			routed = append(routed, a)
		} else {
			bridged[p.Bridge] = append(bridged[p.Bridge], a)
		}
	}
	return routed, bridged, nil
}

// primaries picks the addresses ptp configures: the first IPv4 address, or the first IPv6
// address of a VE without IPv4. ptp takes one address per family, but with an IPv6 address
// its IPAM step waits for the address to leave the "tentative" state, in steps of 50 ms: DAD
// is off in the VE, yet the kernel clears the flag from a work queue on the CPU the plugin
// runs on, so the plugin's first look, right after it added the address, finds it still
// tentative in about one start in four (more on a busy node) and sleeps 50 ms. vectl adds
// the other addresses with netlink (addRouted): an IPv6 address with IFA_F_NODAD is never
// tentative, and the first of its family brings its gateway and default route with it.
func primaries(addrs []netip.Prefix) (prim, extra []netip.Prefix) {
	if len(addrs) == 0 {
		return nil, nil
	}
	i := max(slices.IndexFunc(addrs, func(a netip.Prefix) bool { return a.Addr().Is4() }), 0)
	return addrs[i : i+1 : i+1], append(slices.Clip(addrs[:i]), addrs[i+1:]...)
}

type ipamAddress struct {
	Address string `json:"address"`
	Gateway string `json:"gateway,omitempty"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

type ipam struct {
	Type      string        `json:"type"`
	Addresses []ipamAddress `json:"addresses"`
	Routes    []ipamRoute   `json:"routes,omitempty"`
}

// ipamFor builds static IPAM for addresses, with default routes for their families if
// defaultRoute.
func (n *Network) ipamFor(addrs []netip.Prefix, defaultRoute bool) *ipam {
	if len(addrs) == 0 {
		return nil
	}
	im := &ipam{Type: "static"}
	var r4, r6 bool
	for _, a := range addrs {
		p, _ := n.cfg.PoolOf(a.Addr())
		im.Addresses = append(im.Addresses, ipamAddress{Address: a.String(), Gateway: p.Gateway.String()})
		r4, r6 = r4 || a.Addr().Is4(), r6 || a.Addr().Is6()
	}
	if defaultRoute && r4 {
		im.Routes = append(im.Routes, ipamRoute{Dst: "0.0.0.0/0"})
	}
	if defaultRoute && r6 {
		im.Routes = append(im.Routes, ipamRoute{Dst: "::/0"})
	}
	return im
}

func (n *Network) venetConf(prim []netip.Prefix) ([]byte, error) {
	return json.Marshal(map[string]any{
		"cniVersion": cniVersion,
		"name":       venetNetwork,
		"plugins": []map[string]any{{
			"type": "ptp",
			"mtu":  n.cfg.MTU,
			"ipam": n.ipamFor(prim, true),
		}},
	})
}

func (n *Network) bridgeConf(bridge string, addrs []netip.Prefix, defaultRoute bool) ([]byte, error) {
	var isolated bool
	for _, p := range n.cfg.Pools {
		if p.Bridge == bridge && p.Isolated {
			isolated = true
		}
	}
	plugin := map[string]any{
		"type":          "bridge",
		"bridge":        bridge,
		"isGateway":     true,
		"ipMasq":        false,
		"hairpinMode":   false,
		"macspoofchk":   true,
		"portIsolation": isolated,
		"mtu":           n.cfg.MTU,
		"capabilities":  map[string]bool{"mac": true},
	}
	if im := n.ipamFor(addrs, defaultRoute); im != nil {
		plugin["ipam"] = im
	}
	return json.Marshal(map[string]any{
		"cniVersion": cniVersion,
		"name":       bridgePrefix + bridge,
		"plugins":    []map[string]any{plugin},
	})
}

// MAC derives a stable, locally administered MAC for a VE interface, so that an interface
// keeps its MAC across restarts (neighbour caches stay valid).
func MAC(id, ifname string) string {
	h := sha256.Sum256([]byte(id + "/" + ifname))
	h[0] = h[0]&0xfe | 0x02
	return net.HardwareAddr(h[:6]).String()
}

// Attach gives a running VE's network namespace its interfaces and addresses: eth0 through
// ptp for routed addresses, one interface per bridged netif through the bridge plugin, extra
// addresses with netlink, and vectl's firewall ports and proxy neighbour entries. On failure
// everything attached so far is detached again (libcni does not roll back).
func (n *Network) Attach(ctx context.Context, ve VE) (err error) {
	routed, bridged, err := n.split(ve.Addrs)
	if err != nil {
		return err
	}
	if len(routed) == 0 && len(ve.NetIfs) == 0 {
		return nil
	}
	for b := range bridged {
		if !hasNetIf(ve.NetIfs, b) {
			return fmt.Errorf("%w: addresses %v belong to bridge %s but the VE has no interface on it (vectl set --netif_add)",
				ErrInvalid, bridged[b], b)
		}
	}
	if err := n.ensureHost(true); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Detach(context.WithoutCancel(ctx), ve.ID, ve.NetNS))
		}
	}()
	if len(routed) > 0 {
		prim, extra := primaries(routed)
		host, err := n.attachVenet(ctx, ve, prim)
		if err != nil {
			return err
		}
		if err := n.addRouted(ve.NetNS, host, extra); err != nil {
			return err
		}
	}
	for i, nif := range ve.NetIfs {
		defRoute := len(routed) == 0 && i == firstWithAddrs(ve.NetIfs, bridged)
		if err := n.attachNetIf(ctx, ve, nif, bridged[nif.Bridge], defRoute); err != nil {
			return err
		}
	}
	return n.proxyAll(ve.Addrs, true)
}

// attachNetIf attaches one bridged interface with its addresses and its firewall port.
func (n *Network) attachNetIf(ctx context.Context, ve VE, nif NetIf, addrs []netip.Prefix, defRoute bool) error {
	conf, err := n.bridgeConf(nif.Bridge, addrs, defRoute)
	if err != nil {
		return err
	}
	mac := nif.MAC
	if mac == "" {
		mac = MAC(ve.ID, nif.Name)
	}
	_, err = netlink.LinkByName(nif.Bridge)
	bridgeWasThere := err == nil
	if err := n.add(ctx, conf, ve, nif.Name, map[string]any{"mac": mac}); err != nil {
		return err
	}
	if !bridgeWasThere {
		if err := n.recordBridge(nif.Bridge); err != nil {
			return err
		}
	}
	host, err := hostPeer(ve.NetNS, nif.Name)
	if err != nil {
		return err
	}
	if nif.HostName != "" && nif.HostName != host {
		if err := renameLink(host, nif.HostName); err != nil {
			return err
		}
		host = nif.HostName
	}
	if err := settleDAD(nif.Bridge); err != nil {
		return err
	}
	if err := n.fw.AddBridge(nif.Bridge); err != nil {
		return err
	}
	if err := n.fw.AddBridgePort(bridgePort(host, mac, addrs, nif.Router)); err != nil {
		return err
	}
	// Into the group only once in this instance's sets: in between, its own isolation
	// rules would take the interface for another instance's.
	if err := markLink(nif.Bridge); err != nil {
		return err
	}
	return markLink(host)
}

// AddNetIf attaches a bridged interface to a running VE, with the VE's addresses of that
// bridge's pool. On failure it is detached again.
func (n *Network) AddNetIf(ctx context.Context, ve VE, nif NetIf) error {
	_, bridged, err := n.split(ve.Addrs)
	if err != nil {
		return err
	}
	if err := n.ensureHost(true); err != nil {
		return err
	}
	if err := n.attachNetIf(ctx, ve, nif, bridged[nif.Bridge], false); err != nil {
		return errors.Join(err, n.DelNetIf(context.WithoutCancel(ctx), ve.ID, ve.NetNS, nif.Name))
	}
	return n.proxyAll(bridged[nif.Bridge], true)
}

// DelNetIf detaches one interface of a running VE. A missing interface is not an error.
func (n *Network) DelNetIf(ctx context.Context, id, netns, ifname string) error {
	atts, err := n.cache.GetCachedAttachments(id)
	if err != nil {
		return fmt.Errorf("cni cache: %w", err)
	}
	var errs []error
	for _, att := range atts {
		if att.IfName != ifname {
			continue
		}
		if live, err := Addrs(netns); err == nil {
			errs = append(errs, n.proxyAll(live[ifname], false))
		}
		if host, err := hostPeer(netns, ifname); err == nil {
			errs = append(errs, n.fw.RemoveBridgePort(host))
		}
		errs = append(errs, n.del(ctx, att, netns))
	}
	return errors.Join(errs...)
}

func hasNetIf(nifs []NetIf, bridge string) bool {
	for _, n := range nifs {
		if n.Bridge == bridge {
			return true
		}
	}
	return false
}

func firstWithAddrs(nifs []NetIf, bridged map[string][]netip.Prefix) int {
	for i, n := range nifs {
		if len(bridged[n.Bridge]) > 0 {
			return i
		}
	}
	return -1
}

func bridgePort(host, mac string, addrs []netip.Prefix, router bool) BridgePort {
	hw, _ := net.ParseMAC(mac)
	p := BridgePort{IfName: host, MAC: hw, Router: router}
	for _, a := range addrs {
		if a.Addr().Is4() {
			p.IPv4 = append(p.IPv4, a.Addr())
		} else {
			p.IPv6 = append(p.IPv6, a.Addr())
		}
	}
	return p
}

// attachVenet attaches the VE's routed eth0 with ptp for its primary addresses (one per
// family), settles their DAD and puts the host side under the firewall. It returns the
// host-side veth.
func (n *Network) attachVenet(ctx context.Context, ve VE, prim []netip.Prefix) (string, error) {
	conf, err := n.venetConf(prim)
	if err != nil {
		return "", err
	}
	if err := n.add(ctx, conf, ve, venetIfName, nil); err != nil {
		return "", err
	}
	host, err := hostPeer(ve.NetNS, venetIfName)
	if err != nil {
		return "", err
	}
	if err := settleDAD(host); err != nil {
		return "", err
	}
	if err := n.fw.AddRoutedPort(host); err != nil {
		return "", err
	}
	return host, markLink(host)
}

func (n *Network) add(ctx context.Context, conf []byte, ve VE, ifname string, caps map[string]any) error {
	list, err := libcni.NetworkConfFromBytes(conf)
	if err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    ve.ID,
		NetNS:          ve.NetNS,
		IfName:         ifname,
		Args:           [][2]string{{ignoreUnknown, "1"}},
		CapabilityArgs: caps,
	}
	lib, err := n.plugins()
	if err != nil {
		return err
	}
	if _, err := lib.AddNetworkList(ctx, list, rt); err != nil {
		// libcni keeps nothing of a failed ADD, but the plugin may have left a veth:
		// DEL with the same list cleans it up.
		_ = lib.DelNetworkList(context.WithoutCancel(ctx), list, rt)
		return fmt.Errorf("cni add %s (%s): %w", ifname, list.Name, err)
	}
	return nil
}

// Detach removes a VE's CNI attachments, with the VE's network namespace still pinned at
// netns (the bridge plugin leaks its nftables chains otherwise), and vectl's firewall ports
// and proxy entries. It uses the configs libcni cached at ADD time. Detaching a VE that has
// nothing attached is not an error.
func (n *Network) Detach(ctx context.Context, id, netns string) error {
	atts, err := n.cache.GetCachedAttachments(id)
	if err != nil {
		return fmt.Errorf("cni cache: %w", err)
	}
	var errs []error
	// One handle in the VE's namespace for its addresses, the host ends and the deletions
	// (none when the namespace is gone: DEL does what is left).
	look, lerr := inNetns(netns)
	if lerr == nil {
		defer look.Close()
		if _, live, err := addrsIn(look); err == nil {
			errs = append(errs, n.proxyAll(allPrefixes(live), false))
		}
	}
	for _, att := range atts {
		unlinked := func() error { return nil }
		if lerr == nil {
			if host, err := hostPeerIn(look, att.IfName); err == nil {
				if att.Network == venetNetwork {
					errs = append(errs, n.fw.RemoveRoutedPort(host))
				} else {
					errs = append(errs, n.fw.RemoveBridgePort(host))
				}
			}
			unlinked = unlink(look, netns, att.IfName)
		}
		errs = append(errs, n.del(ctx, att, netns), unlinked())
	}
	errs = append(errs, n.dropUnreadable(id))
	return errors.Join(errs...)
}

// dropUnreadable removes the libcni cache files of container id that libcni cannot read
// back: libcni writes one with os.WriteFile (create and truncate, then write), so a vectl
// killed in between leaves it empty or cut short, and GetCachedAttachments skips such a
// file without a word: it would stay for good, and Detach would not see it. Its ADD had
// completed; the interfaces it made go with the VE's network namespace, and vectl's own
// firewall port and proxy entries, added after it, were not. The caller holds the VE's lock,
// so no start of id is writing one now. Files are matched as libcni matches them ("-ID-" in
// the name).
func (n *Network) dropUnreadable(id string) error {
	dir := filepath.Join(n.cacheDir, "results")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("cni cache: %w", err)
	}
	part := "-" + id + "-"
	var errs []error
	for _, e := range ents {
		name := e.Name()
		if pos := strings.Index(name, part); pos <= 0 || pos+len(part) >= len(name) {
			continue
		}
		path := filepath.Join(dir, name)
		if data, err := os.ReadFile(path); err != nil || json.Valid(data) {
			continue // a record (Detach has deleted it, or it is another VE's), or gone
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cni cache: %w", err))
		}
	}
	return errors.Join(errs...)
}

// del runs CNI DEL for a cached attachment. When the namespace is gone (a crash, a host
// reboot) a fresh empty one stands in, so that plugins still clean their host side.
func (n *Network) del(ctx context.Context, att *libcni.NetworkAttachment, netns string) error {
	list, err := libcni.NetworkConfFromBytes(att.Config)
	if err != nil {
		return fmt.Errorf("cached cni config of %s: %w", att.ContainerID, err)
	}
	if _, err := os.Stat(netns); err != nil {
		// The name is unique to this vectl: a stale pin of a killed vectl may still be
		// mounted at another.
		tmp := filepath.Join(n.stateDir, fmt.Sprintf("gc-netns-%s-%d", att.ContainerID, os.Getpid()))
		if err := PinNetns(tmp); err != nil {
			return err
		}
		defer UnpinNetns(tmp)
		netns = tmp
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    att.ContainerID,
		NetNS:          netns,
		IfName:         att.IfName,
		Args:           att.CniArgs,
		CapabilityArgs: att.CapabilityArgs,
	}
	lib, err := n.plugins()
	if err != nil {
		return err
	}
	if err := lib.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("cni del %s %s: %w", att.ContainerID, att.IfName, err)
	}
	return nil
}

// GC detaches cached CNI attachments of VEs that no longer run (after a crash or a host
// reboot without teardown). claim is asked about each VE id with attachments: it returns
// ok when the id's attachments are stale and may be deleted, and a release to call once
// they are; a VE that runs, or that another vectl is starting or stopping, is not claimed.
func (n *Network) GC(ctx context.Context, claim func(id string) (release func(), ok bool)) error {
	atts, err := n.cache.GetCachedAttachments("")
	if err != nil {
		return fmt.Errorf("cni cache: %w", err)
	}
	byID := map[string][]*libcni.NetworkAttachment{}
	var ids []string
	for _, att := range atts {
		if byID[att.ContainerID] == nil {
			ids = append(ids, att.ContainerID)
		}
		byID[att.ContainerID] = append(byID[att.ContainerID], att)
	}
	var errs []error
	for _, id := range ids {
		release, ok := claim(id)
		if !ok {
			continue
		}
		for _, att := range byID[id] {
			errs = append(errs, n.del(ctx, att, att.NetNS))
		}
		release()
	}
	return errors.Join(errs...)
}

func allPrefixes(m map[string][]netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, ps := range m {
		out = append(out, ps...)
	}
	return out
}
