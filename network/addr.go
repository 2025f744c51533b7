package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// poolRouteMetric is the metric of the unreachable routes vectl installs for its address
// pools: any more specific route (a running VE's /32, a bridge's subnet) wins, and traffic
// to a VE address that is not up never follows the host's default route off the machine.
const poolRouteMetric = 4000

// inNetns opens a netlink handle inside the network namespace pinned at path. It speaks
// rtnetlink only (links, addresses, routes, neighbours): without a family list the handle
// would also open XFRM and netfilter sockets, each with a round trip into the namespace.
func inNetns(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", path, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

// unlink starts deleting interface ifname in the network namespace pinned at netnsPath (a
// VE's end of a veth: the kernel deletes the host's end with it) and returns once the
// namespace no longer finds it, with the function that waits for the deletion to finish. The
// kernel's deletion waits for RCU grace periods (30 to 40 ms on the machine of 2026-12-06),
// which now pass while CNI DEL runs the VE's plugin and its IPAM plugin (two programs, about
// as long); the plugin finds the interface gone, which DEL tolerates (ptp and bridge delete it
// otherwise, after their IPAM plugin's DEL, and a stop waited for both in turn). Nothing is
// done when the interface is gone already.
// look is a handle in that namespace, which unlink uses to find the interface and to watch
// it go; the deletion has a socket of its own.
func unlink(look *netlink.Handle, netnsPath, ifname string) func() error {
	none := func() error { return nil }
	l, err := look.LinkByName(ifname)
	if err != nil {
		return none
	}
	h, err := inNetns(netnsPath) // the deletion holds its socket until it is done
	if err != nil {
		return none
	}
	done := make(chan error, 1)
	go func() {
		defer h.Close()
		err := h.LinkDel(l)
		if errors.Is(err, unix.ENODEV) {
			err = nil
		}
		if err != nil {
			err = fmt.Errorf("delete %s in the VE: %w", ifname, err)
		}
		done <- err
	}()
	finished := func(err error) func() error { return func() error { return err } }
	for {
		select {
		case err := <-done:
			return finished(err)
		default:
		}
		_, err := look.LinkByIndex(l.Attrs().Index)
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			break
		}
		if err != nil {
			return finished(<-done) // cannot tell: the plugin runs once the deletion is done
		}
		time.Sleep(100 * time.Microsecond)
	}
	var derr error
	waited := false
	return func() error {
		if !waited {
			derr, waited = <-done, true
		}
		return derr
	}
}

// hostPeer returns the host-side name of the veth whose VE side is ifname: a veth's
// IFLA_LINK is its peer's index in the other namespace.
func hostPeer(netnsPath, ifname string) (string, error) {
	h, err := inNetns(netnsPath)
	if err != nil {
		return "", err
	}
	defer h.Close()
	return hostPeerIn(h, ifname)
}

// hostPeerIn is hostPeer through a handle in the VE's namespace.
func hostPeerIn(h *netlink.Handle, ifname string) (string, error) {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return "", fmt.Errorf("%s in the VE: %w", ifname, err)
	}
	peer, err := netlink.LinkByIndex(l.Attrs().ParentIndex)
	if err != nil {
		return "", fmt.Errorf("host side of %s: %w", ifname, err)
	}
	return peer.Attrs().Name, nil
}

func renameLink(from, to string) error {
	l, err := netlink.LinkByName(from)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return err
	}
	if err := netlink.LinkSetName(l, to); err != nil {
		return fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return netlink.LinkSetUp(l)
}

func hostBits(a netip.Addr) int {
	if a.Is4() {
		return 32
	}
	return 128
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addrFlags(a netip.Addr) int {
	if a.Is6() {
		return unix.IFA_F_NODAD
	}
	return 0
}

// settleDAD makes the IPv6 addresses of a host-side interface usable at once: duplicate
// address detection keeps a new veth's gateway and link-local addresses "tentative" for about
// two seconds after the plugin made them, during which the host cannot talk to the VE over
// IPv6. The addresses are vectl's own (the gateway is on every VE's veth by design), so DAD
// is turned off on the interface and tentative addresses are added again without it.
func settleDAD(ifname string) error {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/accept_dad", []byte("0"), 0)
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	as, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V6) })
	if err != nil {
		return err
	}
	for _, a := range as {
		if a.Flags&unix.IFA_F_TENTATIVE == 0 {
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("settle %s on %s: %w", a.IPNet, ifname, err)
		}
		na := &netlink.Addr{IPNet: a.IPNet, Flags: unix.IFA_F_NODAD, Scope: a.Scope}
		if err := netlink.AddrReplace(l, na); err != nil {
			return fmt.Errorf("settle %s on %s: %w", a.IPNet, ifname, err)
		}
	}
	return nil
}

// addRouted adds further addresses to a routed VE: each address on eth0 inside the VE and a
// host route to it through the VE's own veth (what ptp does for its one address per family).
// The namespaces are entered once for all of them.
func (n *Network) addRouted(netnsPath, host string, as []netip.Prefix) error {
	if len(as) == 0 {
		return nil
	}
	h, err := inNetns(netnsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	eth, err := h.LinkByName(venetIfName)
	if err != nil {
		return err
	}
	hh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer hh.Close()
	hl, err := hh.LinkByName(host)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := n.addRoutedIn(netnsPath, h, hh, eth, hl, a); err != nil {
			return err
		}
	}
	return nil
}

// addRoutedIn is addRouted with netlink handles in the VE (h) and on the host (hh), the VE's
// eth0 and the host's veth at hand; netnsPath is the VE's pinned network namespace.
func (n *Network) addRoutedIn(netnsPath string, h, hh *netlink.Handle, eth, hl netlink.Link, a netip.Prefix) error {
	host := hl.Attrs().Name
	if !hasFamily(h, eth, a.Addr().Is4()) {
		// The first address of a family on a running VE: give eth0 that family's gateway
		// and default route, as ptp does at ADD time, and for IPv6 keep its addresses when
		// the link goes down, as ptp does for the interfaces it gives IPv6 (IPv4 addresses
		// are always kept).
		if a.Addr().Is6() {
			if err := keepAddrOnDown(netnsPath, eth.Attrs().Name); err != nil {
				return err
			}
		}
		p, _ := n.cfg.PoolOf(a.Addr())
		gw := netip.PrefixFrom(p.Gateway, hostBits(p.Gateway))
		if err := hh.AddrReplace(hl, &netlink.Addr{IPNet: ipNet(gw), Flags: addrFlags(p.Gateway)}); err != nil {
			return fmt.Errorf("gateway %s on %s: %w", gw, host, err)
		}
		if err := h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(gw), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to the gateway in the VE: %w", err)
		}
		def := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if a.Addr().Is6() {
			def = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		if err := h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: ipNet(def), Gw: p.Gateway.AsSlice()}); err != nil {
			return fmt.Errorf("default route in the VE: %w", err)
		}
	}
	one := netip.PrefixFrom(a.Addr(), hostBits(a.Addr()))
	if err := h.AddrReplace(eth, &netlink.Addr{IPNet: ipNet(one), Flags: addrFlags(a.Addr())}); err != nil {
		return fmt.Errorf("address %s in the VE: %w", a.Addr(), err)
	}
	if err := hh.RouteReplace(&netlink.Route{LinkIndex: hl.Attrs().Index, Dst: ipNet(one), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("host route to %s: %w", a.Addr(), err)
	}
	return nil
}

// keepAddrOnDown sets net.ipv6.conf.IFNAME.keep_addr_on_down in the network namespace
// pinned at netnsPath.
func keepAddrOnDown(netnsPath, ifname string) error {
	return ifSysctlOn(netnsPath, "ipv6", ifname, "keep_addr_on_down", "keep the IPv6 addresses of %s when it goes down")
}

// promoteSecondaries sets net.ipv4.conf.IFNAME.promote_secondaries in the network namespace
// pinned at netnsPath: when the first address of a subnet goes, the kernel then keeps the
// others of that subnet (without it, it removes them with it).
func promoteSecondaries(netnsPath, ifname string) error {
	return ifSysctlOn(netnsPath, "ipv4", ifname, "promote_secondaries", "keep the other IPv4 addresses of %s when one goes")
}

// ifSysctlOn turns on net.FAMILY.conf.IFNAME.KEY in the network namespace pinned at
// netnsPath; what (with %s for the interface) says what for in an error.
func ifSysctlOn(netnsPath, family, ifname, key, what string) error {
	err := doInNetns(netnsPath, func() error {
		return os.WriteFile("/proc/sys/net/"+family+"/conf/"+ifname+"/"+key, []byte("1"), 0)
	})
	if err != nil {
		return fmt.Errorf(what+": %w", ifname, err)
	}
	return nil
}

func hasFamily(h *netlink.Handle, l netlink.Link, v4 bool) bool {
	fam := netlink.FAMILY_V6
	if v4 {
		fam = netlink.FAMILY_V4
	}
	as, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, fam) })
	if err != nil {
		return false
	}
	for _, a := range as {
		if a.Scope == int(netlink.SCOPE_UNIVERSE) {
			return true
		}
	}
	return false
}

// Addrs lists the global addresses inside a VE's network namespace by interface: the VE's
// live addresses, whatever its config says.
func Addrs(netnsPath string) (map[string][]netip.Prefix, error) {
	h, err := inNetns(netnsPath)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	_, out, err := addrsIn(h)
	return out, err
}

// addrsIn is Addrs through a handle in the VE's namespace; it also returns the VE's links.
func addrsIn(h *netlink.Handle) ([]netlink.Link, map[string][]netip.Prefix, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]netip.Prefix{}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, nil, err
		}
		for _, a := range as {
			if a.Scope != int(netlink.SCOPE_UNIVERSE) {
				continue
			}
			addr, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			bits, _ := a.Mask.Size()
			out[l.Attrs().Name] = append(out[l.Attrs().Name], netip.PrefixFrom(addr.Unmap(), bits))
		}
	}
	return links, out, nil
}

// AddAddr adds an address to a running VE at once: on eth0 for a routed pool (attaching eth0
// first if the VE had no routed address), on the VE's interface of the bridge for a bridged
// pool, with the host route, firewall and proxy entries that go with it.
func (n *Network) AddAddr(ctx context.Context, ve VE, a netip.Prefix) error {
	p, ok := n.cfg.PoolOf(a.Addr())
	if !ok {
		return fmt.Errorf("%w: address %s is outside the VE address pools", ErrInvalid, a)
	}
	if p.Bridge != "" {
		if err := n.ensureHost(true); err != nil {
			return err
		}
		h, l, nif, err := onBridge(ve, p.Bridge, a)
		if err != nil {
			return err
		}
		defer h.Close()
		if err := h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(a), Flags: addrFlags(a.Addr())}); err != nil {
			return fmt.Errorf("address %s on %s in the VE: %w", a, nif.Name, err)
		}
		if err := n.syncBridgePort(ve, nif); err != nil {
			return err
		}
		return n.proxyAll([]netip.Prefix{a}, true)
	}
	h, err := inNetns(ve.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	if eth, err := h.LinkByName(venetIfName); err == nil {
		// eth0 is attached and under the firewall since the VE started: a further address
		// needs no firewall change (the reverse-path filter follows the host route).
		hh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer hh.Close()
		if err := n.ensureHostWith(hh, false); err != nil {
			return err
		}
		hl, err := hh.LinkByIndex(eth.Attrs().ParentIndex)
		if err != nil {
			return fmt.Errorf("host side of %s: %w", venetIfName, err)
		}
		if err := n.addRoutedIn(ve.NetNS, h, hh, eth, hl, a); err != nil {
			return err
		}
		return n.proxyAll([]netip.Prefix{a}, true)
	}
	// No routed interface yet: this address becomes ptp's primary.
	if err := n.ensureHost(true); err != nil {
		return err
	}
	if _, err := n.attachVenet(ctx, ve, []netip.Prefix{a}); err != nil {
		return err
	}
	return n.proxyAll([]netip.Prefix{a}, true)
}

// DelAddr removes an address from a running VE at once. An address the VE does not have
// is not an error.
func (n *Network) DelAddr(ctx context.Context, ve VE, a netip.Prefix) error {
	h, err := inNetns(ve.NetNS)
	if err != nil {
		return err
	}
	defer h.Close()
	links, live, err := addrsIn(h)
	if err != nil {
		return err
	}
	var errs []error
	errs = append(errs, n.proxyAll([]netip.Prefix{a}, false))
	for _, l := range links {
		ifname := l.Attrs().Name
		for _, p := range live[ifname] {
			if p.Addr() != a.Addr() {
				continue
			}
			if ifname != venetIfName && p.Addr().Is4() {
				if err := promoteSecondaries(ve.NetNS, ifname); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			if err := h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
				errs = append(errs, fmt.Errorf("remove %s from %s in the VE: %w", p, ifname, err))
			}
			if ifname == venetIfName {
				one := netip.PrefixFrom(a.Addr(), hostBits(a.Addr()))
				// A veth's IFLA_LINK is its peer's index on the host.
				err := netlink.RouteDel(&netlink.Route{LinkIndex: l.Attrs().ParentIndex, Dst: ipNet(one), Scope: netlink.SCOPE_LINK})
				if err != nil && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("host route to %s: %w", a.Addr(), err))
				}
			} else if nif, ok := netIfNamed(ve.NetIfs, ifname); ok {
				errs = append(errs, n.syncBridgePort(ve, nif))
			}
		}
	}
	return errors.Join(errs...)
}

// SetPrefix gives an address a running VE has another prefix length (vzctl's --ipadd of an
// address the VE has, with another netmask). A routed address is a host address in the VE
// whatever its prefix: nothing changes live. A bridged IPv4 address is added with its new
// prefix before its old entry goes (the kernel keeps one entry per prefix length), so the VE
// never loses it, nor the others of the old subnet (promoteSecondaries); an IPv6 one is removed and added again (the kernel keeps one entry per
// address and a replace leaves its prefix length as it was).
func (n *Network) SetPrefix(ve VE, from, to netip.Prefix) error {
	p, ok := n.cfg.PoolOf(to.Addr())
	if !ok {
		return fmt.Errorf("%w: address %s is outside the VE address pools", ErrInvalid, to)
	}
	if p.Bridge == "" || from.Bits() == to.Bits() {
		return nil
	}
	h, l, nif, err := onBridge(ve, p.Bridge, to)
	if err != nil {
		return err
	}
	defer h.Close()
	add := func() error {
		if err := h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(to), Flags: addrFlags(to.Addr())}); err != nil {
			return fmt.Errorf("address %s on %s in the VE: %w", to, nif.Name, err)
		}
		return nil
	}
	if to.Addr().Is4() {
		if err := add(); err != nil {
			return err
		}
		if err := promoteSecondaries(ve.NetNS, nif.Name); err != nil {
			return err
		}
	}
	if err := h.AddrDel(l, &netlink.Addr{IPNet: ipNet(from)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s in the VE: %w", from, nif.Name, err)
	}
	if to.Addr().Is6() {
		return add()
	}
	return nil
}

// onBridge opens the network namespace of a running VE and finds its interface on bridge,
// the one a bridged address a stands on. The caller closes the handle.
func onBridge(ve VE, bridge string, a netip.Prefix) (*netlink.Handle, netlink.Link, NetIf, error) {
	nif, ok := netIfOn(ve.NetIfs, bridge)
	if !ok {
		return nil, nil, NetIf{}, fmt.Errorf("%w: address %s belongs to bridge %s but the VE has no interface on it (vectl set --netif_add)", ErrInvalid, a, bridge)
	}
	h, err := inNetns(ve.NetNS)
	if err != nil {
		return nil, nil, NetIf{}, err
	}
	l, err := h.LinkByName(nif.Name)
	if err != nil {
		h.Close()
		return nil, nil, NetIf{}, err
	}
	return h, l, nif, nil
}

// syncBridgePort sets the addresses a bridged port may send from to its live addresses.
func (n *Network) syncBridgePort(ve VE, nif NetIf) error {
	host, err := hostPeer(ve.NetNS, nif.Name)
	if err != nil {
		return err
	}
	live, err := Addrs(ve.NetNS)
	if err != nil {
		return err
	}
	mac := nif.MAC
	if mac == "" {
		mac = MAC(ve.ID, nif.Name)
	}
	return n.fw.SetBridgePortAddrs(bridgePort(host, mac, live[nif.Name], nif.Router))
}

func netIfOn(nifs []NetIf, bridge string) (NetIf, bool) {
	for _, n := range nifs {
		if n.Bridge == bridge {
			return n, true
		}
	}
	return NetIf{}, false
}

func netIfNamed(nifs []NetIf, name string) (NetIf, bool) {
	for _, n := range nifs {
		if n.Name == name {
			return n, true
		}
	}
	return NetIf{}, false
}

// proxyAll adds (or removes) proxy ARP/NDP entries for addresses on the configured
// neighbour devices, so that LAN hosts can reach VE addresses of the LAN's subnet.
func (n *Network) proxyAll(addrs []netip.Prefix, add bool) error {
	var errs []error
	for _, dev := range n.cfg.NeighbourDevs {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			errs = append(errs, fmt.Errorf("neighbour device %s: %w", dev, err))
			continue
		}
		for _, a := range addrs {
			fam := netlink.FAMILY_V4
			if a.Addr().Is6() {
				fam = netlink.FAMILY_V6
			}
			nb := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, Flags: netlink.NTF_PROXY, IP: a.Addr().AsSlice()}
			if add {
				err = netlink.NeighSet(nb)
			} else if err = netlink.NeighDel(nb); errors.Is(err, unix.ENOENT) {
				err = nil
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("proxy entry %s on %s: %w", a.Addr(), dev, err))
			}
		}
	}
	return errors.Join(errs...)
}

// ensureHost puts the host-wide pieces in place, idempotently: the pools' unreachable
// routes, IP forwarding for the pools' families, vectl's firewall tables and proxy NDP on
// the neighbour devices. When forwarding was off before vectl turned it on, vectl's
// firewall only lets VE traffic be forwarded.
//
// firewall asks for vectl's firewall tables to be checked (and made) too: at every attach.
// Without it they are checked only if this call turned forwarding on, which needs the
// forwarding limit; a further address on an attached interface needs nothing else of them.
func (n *Network) ensureHost(firewall bool) error {
	hh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer hh.Close()
	return n.ensureHostWith(hh, firewall)
}

// ensureHostWith is ensureHost through the host netlink handle hh.
func (n *Network) ensureHostWith(hh *netlink.Handle, firewall bool) error {
	var v4, v6 bool
	for _, p := range n.cfg.Pools {
		v4, v6 = v4 || p.Subnet.Addr().Is4(), v6 || p.Subnet.Addr().Is6()
		r := &netlink.Route{Dst: ipNet(p.Subnet), Type: unix.RTN_UNREACHABLE, Priority: poolRouteMetric}
		if p.Subnet.Addr().Is6() {
			r.Family = netlink.FAMILY_V6
		}
		if err := hh.RouteReplace(r); err != nil {
			return fmt.Errorf("unreachable route for pool %s: %w", p.Subnet, err)
		}
	}
	limit := false
	var enable []string
	for _, f := range []struct {
		on     bool
		sysctl string
		marker string
	}{
		{v4, sysctlForward4, "forwarding-v4-by-vectl"},
		{v6, sysctlForward6, "forwarding-v6-by-vectl"},
	} {
		if !f.on {
			continue
		}
		cur, err := os.ReadFile(f.sysctl)
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(cur)) == "0" {
			enable = append(enable, f.sysctl)
			limit = true
			continue
		}
		// Forwarding was turned on by a vectl (recorded, or by a vectl before the host
		// record existed, which left a marker in its run directory) rather than by the admin.
		// One family's record settles the limit: the record is read at most once per call.
		if !limit && n.vectlChanged(f.sysctl) {
			limit = true
		} else if marker := filepath.Join(n.stateDir, f.marker); fileExists(marker) {
			if err := n.adoptMarker(f.sysctl, marker); err != nil {
				return err
			}
			limit = true
		}
	}
	// The forwarding limit goes in before forwarding is turned on.
	if firewall || len(enable) > 0 {
		if err := n.fw.EnsureBase(limit); err != nil {
			return err
		}
	}
	for _, sysctl := range enable {
		if err := n.setSysctl(sysctl, "1"); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	for _, dev := range n.cfg.NeighbourDevs {
		if v6 {
			p := "/proc/sys/net/ipv6/conf/" + dev + "/proxy_ndp"
			if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == "1" {
				continue
			}
			if err := n.setSysctl(p, "1"); err != nil {
				return fmt.Errorf("proxy_ndp on %s: %w", dev, err)
			}
		}
	}
	return nil
}

// The forwarding sysctls vectl turns on for its pools' families.
const (
	sysctlForward4 = "/proc/sys/net/ipv4/ip_forward"
	sysctlForward6 = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// retryDump runs a netlink dump again while the kernel reports it was interrupted by a
// concurrent change (NLM_F_DUMP_INTR: "results may be incomplete or inconsistent"), as
// happens on the host while other VEs start; the CNI plugins do the same (netlinksafe).
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	var (
		out []T
		err error
	)
	for range 10 {
		out, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("netlink dump kept being interrupted: %w", err)
}
