package network

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// DefaultFirewallName is the name of vectl's nftables tables on a production host.
const DefaultFirewallName = "vectl"

// ErrNotInstalled means that vectl's tables are missing: EnsureBase has not run in this
// network namespace, or Delete removed them. Ports are never added without the base chains,
// because a VE started then would run unfiltered without anyone noticing.
var ErrNotInstalled = errors.New("firewall tables not installed")

// ErrNoPort means that the bridge port has no filter to change.
var ErrNoPort = errors.New("port has no filter")

// Names inside vectl's tables. The bridge table reaches a port's chain through a verdict
// map keyed by ifname rather than one jump rule per port: adding and removing a port is then
// a set element operation, which needs no rule handle and cannot leave duplicate jumps.
const (
	setRoutedPorts  = "ve_ports"
	setBridges      = "ve_bridges"
	mapPortChains   = "port_chains"
	chainPrerouting = "prerouting"
	chainForward    = "forward"

	// Priorities of the base chains: RPF before conntrack (-200) so that spoofed packets
	// create no conntrack entries, and the bridge filter after the CNI bridge plugin's
	// macspoofchk chain (bridge nat prerouting, -300).
	prioInetPrerouting   = -300
	prioInetForward      = 0
	prioBridgePrerouting = -250
)

// Ethernet types matched in the bridge family.
const (
	etherTypeIPv4   = 0x0800
	etherTypeARP    = 0x0806
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8
)

const (
	icmpv6RouterAdvert   = 134
	icmpv6NeighborAdvert = 136
	icmpv6Redirect       = 137
	// nameMax keeps every table, chain and set name within the 32 bytes (with the NUL) that
	// kernels before 4.14 accept.
	nameMax = 31
)

// Firewall manages vectl's own nftables tables and nothing else: "inet <Name>" holds the
// strict reverse-path filter for routed VEs and the optional forwarding limit, and
// "bridge <Name>" holds one anti-spoofing chain per bridged VE port. Every method sends at
// most one nftables batch, which the kernel applies atomically, so concurrent vectl
// processes never see (or leave) a half-applied change.
type Firewall struct {
	// Name is the name of both tables: DefaultFirewallName in production, a private name in
	// tests.
	Name string
	// NetNS is an open file descriptor of the network namespace to work in, such as one of
	// /run/netns/NAME; 0 or a negative value means the namespace of the calling thread. fd 0
	// is standard input, never a namespace, so 0 is safe to treat as "current". Firewall
	// never closes it.
	NetNS int

	// dial replaces the netlink socket in unit tests.
	dial nltest.Func
}

// NewFirewall returns a Firewall for the tables called name in the network namespace
// referred to by netnsFd (0 or negative: the current one).
func NewFirewall(name string, netnsFd int) *Firewall {
	return &Firewall{Name: name, NetNS: netnsFd}
}

// BridgePort describes a VE's host-side veth on a bridge and what the VE may send from it.
type BridgePort struct {
	// IfName is the host-side interface (the bridge port).
	IfName string
	// MAC is the VE interface's address; frames and ARP packets from any other are dropped.
	MAC net.HardwareAddr
	// IPv4 and IPv6 are the VE's addresses. 0.0.0.0 (DHCP, ARP probes), :: (DAD) and the
	// link-local address derived from MAC (LinkLocal) are always allowed in addition.
	IPv4, IPv6 []netip.Addr
	// Router lets the VE act as the bridge's router or DHCP server: send router
	// advertisements and redirects, and DHCPv4 and DHCPv6 server messages. Off, these are
	// dropped (the RA guard and DHCP snooping of switches).
	Router bool
}

// LinkLocal is the IPv6 link-local address the kernel gives an interface with this MAC
// (modified EUI-64, RFC 4291 appendix A): the only link-local source a bridged VE may use.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	if len(mac) == 6 {
		a[8], a[9], a[10] = mac[0]^0x02, mac[1], mac[2]
		a[11], a[12] = 0xff, 0xfe
		a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	}
	return netip.AddrFrom16(a)
}

// EnsureBase creates vectl's tables, sets and base chains if they are missing and resets
// the base chains' rules; ports already added keep their filters, because their state lives
// in sets and port chains that EnsureBase leaves alone. It is safe to call at every VE start
// and from concurrent processes.
//
// The inet forward chain always keeps this instance's VEs apart from other vectl instances'
// (isolationExprs). With limitForward it also drops every packet whose input and output
// interfaces are both neither this instance's (a routed VE port, a bridge added with
// AddBridge) nor any vectl's (LinkGroup): vectl turns on the host-global forwarding sysctls
// for its VEs, and when forwarding was off before, the host must not start routing for
// anyone else. Calling EnsureBase with limitForward false removes that rule again.
func (f *Firewall) EnsureBase(limitForward bool) error {
	if err := f.check(); err != nil {
		return err
	}
	// One socket for the reads of baseInPlace and the batch, instead of one per request.
	c, err := f.conn(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("ensure firewall %s: %w", f.Name, err)
	}
	defer c.CloseLasting()
	if f.baseInPlace(c, limitForward) {
		return nil
	}
	accept := nftables.ChainPolicyAccept

	inet := c.AddTable(f.inetTable())
	ports := f.ifnameSet(inet, setRoutedPorts)
	bridges := f.ifnameSet(inet, setBridges)
	if err := c.AddSet(ports, nil); err != nil {
		return fmt.Errorf("ensure firewall %s: %w", f.Name, err)
	}
	if err := c.AddSet(bridges, nil); err != nil {
		return fmt.Errorf("ensure firewall %s: %w", f.Name, err)
	}
	pre := c.AddChain(&nftables.Chain{
		Name: chainPrerouting, Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: prio(prioInetPrerouting), Policy: &accept,
	})
	// Flush and refill in the same batch: the rules are re-created exactly once however
	// often and by how many processes EnsureBase runs.
	c.FlushChain(pre)
	c.AddRule(&nftables.Rule{Table: inet, Chain: pre, Exprs: rpfExprs(ports), UserData: baseRuleTag})
	fwd := c.AddChain(&nftables.Chain{
		Name: chainForward, Table: inet, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: prio(prioInetForward), Policy: &accept,
	})
	c.FlushChain(fwd)
	for _, x := range forwardRules(ports, bridges, limitForward) {
		c.AddRule(&nftables.Rule{Table: inet, Chain: fwd, Exprs: x, UserData: baseRuleTag})
	}

	br := c.AddTable(f.bridgeTable())
	pm := portChainMap(br)
	if err := c.AddSet(pm, nil); err != nil {
		return fmt.Errorf("ensure firewall %s: %w", f.Name, err)
	}
	bpre := c.AddChain(&nftables.Chain{
		Name: chainPrerouting, Table: br, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: prio(prioBridgePrerouting), Policy: &accept,
	})
	c.FlushChain(bpre)
	c.AddRule(&nftables.Rule{Table: br, Chain: bpre, Exprs: []expr.Any{
		// iifname vmap @port_chains
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: pm.Name, SetID: pm.ID, IsDestRegSet: true, DestRegister: 0},
	}, UserData: baseRuleTag})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("ensure firewall %s: %w", f.Name, err)
	}
	return nil
}

// baseRuleTag marks the base chains' rules as written by this version of EnsureBase. Change
// it whenever those rules change, so that EnsureBase replaces an older vectl's rules. It is
// a rule comment in nft's user-data encoding (type 0, length, NUL-terminated text), so
// `nft list` shows it.
var baseRuleTag = ruleComment(baseRuleTagText + "2")

// baseRuleTagText begins the tag of every vectl version's base rules: other instances' tables
// are recognised by it (OtherInstances).
const baseRuleTagText = "vectl base v"

func ruleComment(s string) []byte {
	return append(append([]byte{0, byte(len(s) + 1)}, s...), 0)
}

// baseInPlace reports whether the tables, sets and base chains exist with exactly the rules
// EnsureBase would write (tagged baseRuleTag, one per chain). Then EnsureBase sends nothing:
// replacing rules makes the kernel wait for an RCU grace period when the netlink socket
// closes (10-20 ms), which every VE start and every live address change would pay.
// Reading costs a few lookups; any doubt (an error, an unexpected answer) means no.
func (f *Firewall) baseInPlace(c *nftables.Conn, limitForward bool) bool {
	inet, br := f.inetTable(), f.bridgeTable()
	for _, s := range []struct {
		t    *nftables.Table
		name string
	}{{inet, setRoutedPorts}, {inet, setBridges}, {br, mapPortChains}} {
		if set, err := c.GetSetByName(s.t, s.name); err != nil || set == nil || set.Name != s.name {
			return false
		}
	}
	nForward := len(forwardRules(f.ifnameSet(inet, setRoutedPorts), f.ifnameSet(inet, setBridges), limitForward))
	for _, ch := range []struct {
		t     *nftables.Table
		name  string
		hook  *nftables.ChainHook
		rules int
	}{
		{inet, chainPrerouting, nftables.ChainHookPrerouting, 1},
		{inet, chainForward, nftables.ChainHookForward, nForward},
		{br, chainPrerouting, nftables.ChainHookPrerouting, 1},
	} {
		got, err := c.ListChain(ch.t, ch.name)
		if err != nil || got == nil || got.Name != ch.name || got.Hooknum == nil || *got.Hooknum != *ch.hook {
			return false
		}
		rules, err := c.GetRules(ch.t, &nftables.Chain{Name: ch.name, Table: ch.t})
		if err != nil || !tagged(rules, ch.rules) {
			return false
		}
	}
	return true
}

// tagged reports whether rules are exactly n rules written by this EnsureBase.
func tagged(rules []*nftables.Rule, n int) bool {
	if len(rules) != n {
		return false
	}
	for _, r := range rules {
		if !bytes.Equal(r.UserData, baseRuleTag) {
			return false
		}
	}
	return true
}

// AddRoutedPort puts a routed VE's host-side veth under the strict reverse-path filter: the
// VE may then only send from addresses the host routes back through that veth. Adding a
// port twice is not an error.
func (f *Firewall) AddRoutedPort(ifname string) error {
	return f.setMember(setRoutedPorts, ifname, true, "add routed port %s to firewall %s: %w")
}

// RemoveRoutedPort takes a routed VE's host veth out of the filter. A port, set or table
// that is already gone is not an error.
func (f *Firewall) RemoveRoutedPort(ifname string) error {
	return f.setMember(setRoutedPorts, ifname, false, "remove routed port %s from firewall %s: %w")
}

// AddBridge marks a bridge as vectl's, so that the forwarding limit lets traffic routed in
// or out of it pass. Adding a bridge twice is not an error.
func (f *Firewall) AddBridge(name string) error {
	return f.setMember(setBridges, name, true, "add bridge %s to firewall %s: %w")
}

// RemoveBridge unmarks a bridge. A bridge, set or table that is already gone is not an error.
func (f *Firewall) RemoveBridge(name string) error {
	return f.setMember(setBridges, name, false, "remove bridge %s from firewall %s: %w")
}

// setMember adds ifname to or removes it from one of the inet table's ifname sets. A
// single-message batch makes ENOENT unambiguous: the table, the set or (on removal) the
// element is missing.
func (f *Firewall) setMember(set, ifname string, add bool, errf string) error {
	if err := f.check(); err != nil {
		return err
	}
	if err := checkIfname(ifname); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	s := f.ifnameSet(f.inetTable(), set)
	elems := []nftables.SetElement{{Key: ifnameKey(ifname)}}
	if add {
		err = c.SetAddElements(s, elems)
	} else {
		err = c.SetDeleteElements(s, elems)
	}
	if err == nil {
		err = c.Flush()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT) && add:
		return fmt.Errorf(errf, ifname, f.Name, ErrNotInstalled)
	case errors.Is(err, unix.ENOENT):
		return nil
	}
	return fmt.Errorf(errf, ifname, f.Name, err)
}

// HasRoutedPort reports whether ifname is under the reverse-path filter. A missing table
// means it is not.
func (f *Firewall) HasRoutedPort(ifname string) (bool, error) {
	if err := f.check(); err != nil {
		return false, err
	}
	c, err := f.conn()
	if err != nil {
		return false, fmt.Errorf("look up routed port %s in firewall %s: %w", ifname, f.Name, err)
	}
	s, err := c.GetSetByName(f.inetTable(), setRoutedPorts)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up routed port %s in firewall %s: %w", ifname, f.Name, err)
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		return false, fmt.Errorf("look up routed port %s in firewall %s: %w", ifname, f.Name, err)
	}
	key := ifnameKey(ifname)
	for _, e := range elems {
		if bytes.Equal(bytes.TrimRight(e.Key, "\x00"), bytes.TrimRight(key, "\x00")) {
			return true, nil
		}
	}
	return false, nil
}

// AddBridgePort installs the anti-spoofing filter of a bridged VE's port: frames from the
// port must carry p.MAC, ARP packets must claim p.MAC and one of p.IPv4, IPv4 and IPv6
// packets must come from the port's addresses (its own link-local one included, no other),
// and neighbour advertisements may only be about them. VLAN-tagged frames are dropped, and
// unless p.Router router advertisements, redirects and DHCP server messages too. If the
// port already has a filter it is replaced, in the same batch.
func (f *Firewall) AddBridgePort(p BridgePort) error {
	if err := f.check(); err != nil {
		return err
	}
	errf := "add bridge port %s to firewall %s: %w"
	n, err := bridgePortNames(p.IfName)
	if err != nil {
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	if err := checkMAC(p.MAC); err != nil {
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	e4, e6, err := portAddrElements(p.IPv4, append(slices.Clone(p.IPv6), LinkLocal(p.MAC)))
	if err != nil {
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	// The table is deliberately not created here (see ErrNotInstalled); every object below
	// is created if missing and emptied if present, so that the batch fully replaces an
	// earlier filter of the port.
	br := f.bridgeTable()
	s4, s6 := portSets(br, n)
	for _, s := range []struct {
		set   *nftables.Set
		elems []nftables.SetElement
	}{{s4, e4}, {s6, e6}} {
		if err := c.AddSet(s.set, nil); err != nil {
			return fmt.Errorf(errf, p.IfName, f.Name, err)
		}
		c.FlushSet(s.set)
		if err := c.SetAddElements(s.set, s.elems); err != nil {
			return fmt.Errorf(errf, p.IfName, f.Name, err)
		}
	}
	ch := c.AddChain(&nftables.Chain{Name: n.chain, Table: br})
	c.FlushChain(ch)
	for _, exprs := range portRules(p.MAC, s4, s6, p.Router) {
		c.AddRule(&nftables.Rule{Table: br, Chain: ch, Exprs: exprs})
	}
	if err := c.SetAddElements(portChainMap(br), []nftables.SetElement{portJump(p.IfName, n)}); err != nil {
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			err = ErrNotInstalled
		}
		return fmt.Errorf(errf, p.IfName, f.Name, err)
	}
	return nil
}

// SetBridgePortAddrs replaces the addresses a bridged VE may use (p.IPv4, p.IPv6 and the
// link-local address of p.MAC), for example after an IP was added to or removed from the
// running VE. The change is atomic: no packet sees an empty set.
func (f *Firewall) SetBridgePortAddrs(p BridgePort) error {
	if err := f.check(); err != nil {
		return err
	}
	errf := "set addresses of bridge port %s in firewall %s: %w"
	ifname := p.IfName
	n, err := bridgePortNames(ifname)
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	if err := checkMAC(p.MAC); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	e4, e6, err := portAddrElements(p.IPv4, append(slices.Clone(p.IPv6), LinkLocal(p.MAC)))
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	s4, s6 := portSets(f.bridgeTable(), n)
	c.FlushSet(s4)
	if err := c.SetAddElements(s4, e4); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	c.FlushSet(s6)
	if err := c.SetAddElements(s6, e6); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	err = c.Flush()
	if errors.Is(err, unix.ENOENT) {
		err = ErrNoPort
		if ok, terr := f.hasTable(nftables.TableFamilyBridge); terr == nil && !ok {
			err = ErrNotInstalled
		}
	}
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	return nil
}

// RemoveBridgePort removes a port's filter: its map entry, chain and address sets. A port
// without a filter, or a missing table, is not an error.
func (f *Firewall) RemoveBridgePort(ifname string) error {
	if err := f.check(); err != nil {
		return err
	}
	errf := "remove bridge port %s from firewall %s: %w"
	n, err := bridgePortNames(ifname)
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	// nftables has no "delete if present" before the kernel's DESTROY messages, which this
	// library cannot send. So create every object (a no-op when it exists) and delete it in
	// the same batch: the batch succeeds whether or not the port had a filter, and it never
	// races with a concurrent AddBridgePort. The order matters: the map entry holds a
	// reference to the chain, and the chain's rules hold references to the sets.
	br := f.bridgeTable()
	s4, s6 := portSets(br, n)
	pm := portChainMap(br)
	for _, s := range []*nftables.Set{s4, s6} {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf(errf, ifname, f.Name, err)
		}
	}
	ch := c.AddChain(&nftables.Chain{Name: n.chain, Table: br})
	jump := portJump(ifname, n)
	if err := c.SetAddElements(pm, []nftables.SetElement{jump}); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	if err := c.SetDeleteElements(pm, []nftables.SetElement{{Key: jump.Key}}); err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	c.DelChain(ch)
	c.DelSet(s4)
	c.DelSet(s6)
	err = c.Flush()
	if errors.Is(err, unix.ENOENT) {
		// Only the table (or its map) can be missing here; a missing table has no filter.
		if ok, terr := f.hasTable(nftables.TableFamilyBridge); terr == nil && !ok {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf(errf, ifname, f.Name, err)
	}
	return nil
}

// Delete removes both of vectl's tables with everything in them. Missing tables are not an
// error.
func (f *Firewall) Delete() error {
	if err := f.check(); err != nil {
		return err
	}
	c, err := f.conn()
	if err != nil {
		return fmt.Errorf("delete firewall %s: %w", f.Name, err)
	}
	// Adding an existing table is a no-op, so add-then-delete removes a table whether or not
	// it exists, in one atomic batch.
	for _, t := range []*nftables.Table{f.inetTable(), f.bridgeTable()} {
		c.AddTable(t)
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete firewall %s: %w", f.Name, err)
	}
	return nil
}

func (f *Firewall) check() error {
	if err := checkTableName(f.Name); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}

func (f *Firewall) conn(opts ...nftables.ConnOption) (*nftables.Conn, error) {
	if f.NetNS > 0 {
		opts = append(opts, nftables.WithNetNSFd(f.NetNS))
	}
	if f.dial != nil {
		opts = append(opts, nftables.WithTestDial(f.dial))
	}
	return nftables.New(opts...)
}

// Tables lists which of the instance's two tables exist ("inet vectl", "bridge vectl").
func (f *Firewall) Tables() ([]string, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	var out []string
	for _, fam := range []struct {
		f    nftables.TableFamily
		name string
	}{{nftables.TableFamilyINet, "inet"}, {nftables.TableFamilyBridge, "bridge"}} {
		ok, err := f.hasTable(fam.f)
		if err != nil {
			return nil, fmt.Errorf("firewall %s: %w", f.Name, err)
		}
		if ok {
			out = append(out, fam.name+" "+f.Name)
		}
	}
	return out, nil
}

// OtherInstances names the other vectl instances whose tables are in the namespace: inet
// tables other than this one whose prerouting chain holds a rule tagged by some version of
// EnsureBase.
func (f *Firewall) OtherInstances() ([]string, error) {
	c, err := f.conn()
	if err != nil {
		return nil, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	var out []string
	for _, t := range ts {
		if t.Name == f.Name {
			continue
		}
		rules, err := c.GetRules(t, &nftables.Chain{Name: chainPrerouting, Table: t})
		if err != nil {
			continue // no such chain: not vectl's
		}
		for _, r := range rules {
			if bytes.Contains(r.UserData, []byte(baseRuleTagText)) {
				out = append(out, t.Name)
				break
			}
		}
	}
	return out, nil
}

// hasTable tells a missing table apart from other missing objects after an ENOENT.
func (f *Firewall) hasTable(family nftables.TableFamily) (bool, error) {
	c, err := f.conn()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(family)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == f.Name {
			return true, nil
		}
	}
	return false, nil
}

func (f *Firewall) inetTable() *nftables.Table {
	return &nftables.Table{Name: f.Name, Family: nftables.TableFamilyINet}
}

func (f *Firewall) bridgeTable() *nftables.Table {
	return &nftables.Table{Name: f.Name, Family: nftables.TableFamilyBridge}
}

// ifnameSet and portChainMap mark their keys as host byte order, as nft itself does for
// ifname: without that, "nft list" shows every element as "".
func (f *Firewall) ifnameSet(t *nftables.Table, name string) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIFName,
		KeyByteOrder: binaryutil.NativeEndian}
}

func portChainMap(t *nftables.Table) *nftables.Set {
	return &nftables.Set{Table: t, Name: mapPortChains, IsMap: true,
		KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian, DataType: nftables.TypeVerdict}
}

func portSets(t *nftables.Table, n portNames) (v4, v6 *nftables.Set) {
	v4 = &nftables.Set{Table: t, Name: n.v4, KeyType: nftables.TypeIPAddr, Interval: true}
	v6 = &nftables.Set{Table: t, Name: n.v6, KeyType: nftables.TypeIP6Addr, Interval: true}
	return v4, v6
}

func portJump(ifname string, n portNames) nftables.SetElement {
	return nftables.SetElement{Key: ifnameKey(ifname),
		VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: n.chain}}
}

func prio(p int32) *nftables.ChainPriority {
	return nftables.ChainPriorityRef(nftables.ChainPriority(p))
}

// rpfExprs is "iifname @ve_ports fib saddr . iif oif missing counter drop": a packet from a
// routed VE port is dropped unless the route back to its source leaves through that same
// port. It covers IPv4 and IPv6 in one rule, and addresses added to a running VE pass as
// soon as their host route exists.
func rpfExprs(ports *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
		&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, FlagPRESENT: true, ResultOIF: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// LinkGroup is the interface group (IFLA_GROUP, "ip link show group 30309") of every host
// interface any vectl makes for a VE: routed veths, bridge ports and the pools' bridges.
// Each vectl instance (--firewall-table) has its own forwarding limit, and with br_netfilter
// loaded another instance's bridged traffic passes through it too: the group lets every
// instance tell vectl's interfaces from the host's other ones without knowing the others'
// sets. 30309 is "ve" in ASCII.
const LinkGroup uint32 = 0x7665

// forwardRules are the rules of the inet forward chain, in order: the isolation of this
// instance's VEs from other instances' and, with limit, the forwarding limit.
func forwardRules(ports, bridges *nftables.Set, limit bool) [][]expr.Any {
	rules := isolationExprs(ports, bridges)
	if limit {
		rules = append(rules, limitForwardExprs(ports, bridges))
	}
	return rules
}

// isolationExprs drop what is forwarded between one of this instance's interfaces (a routed
// port or a bridge in its sets) and another vectl instance's (an interface of LinkGroup in
// none of this instance's sets), in both directions: "iifgroup 30309 iifname != @ve_ports
// iifname != @ve_bridges oifname @ve_ports counter drop" and its three siblings. Two vectl
// roots on one host are two nodes: their VEs reach each other no more than through a router
// between nodes would allow, which here is not at all.
func isolationExprs(ports, bridges *nftables.Set) [][]expr.Any {
	var rules [][]expr.Any
	dirs := []struct{ other, mine expr.MetaKey }{
		{expr.MetaKeyIIFGROUP, expr.MetaKeyOIFNAME},
		{expr.MetaKeyOIFGROUP, expr.MetaKeyIIFNAME},
	}
	for _, d := range dirs {
		otherName := expr.MetaKeyIIFNAME
		if d.other == expr.MetaKeyOIFGROUP {
			otherName = expr.MetaKeyOIFNAME
		}
		for _, mine := range []*nftables.Set{ports, bridges} {
			x := []expr.Any{
				&expr.Meta{Key: d.other, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(LinkGroup)},
			}
			for _, s := range []*nftables.Set{ports, bridges} {
				x = append(x,
					&expr.Meta{Key: otherName, Register: 1},
					&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true})
			}
			x = append(x,
				&expr.Meta{Key: d.mine, Register: 1},
				&expr.Lookup{SourceRegister: 1, SetName: mine.Name, SetID: mine.ID},
				&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
			rules = append(rules, x)
		}
	}
	return rules
}

// limitForwardExprs is "iifname != @ve_ports oifname != @ve_ports iifname != @ve_bridges
// oifname != @ve_bridges iifgroup != 30309 oifgroup != 30309 counter drop". It only ever
// drops: it never accepts what another table's forward chain would drop.
func limitForwardExprs(ports, bridges *nftables.Set) []expr.Any {
	var x []expr.Any
	for _, s := range []*nftables.Set{ports, bridges} {
		for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
			x = append(x,
				&expr.Meta{Key: key, Register: 1},
				&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true})
		}
	}
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFGROUP, expr.MetaKeyOIFGROUP} {
		x = append(x,
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(LinkGroup)})
	}
	return append(x, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
}

// portRules are the rules of one bridge port's chain, in order. Each protocol check is
// guarded by the Ethernet type, and tagged frames are dropped first: the kernel moves a
// VLAN tag out of the frame before the bridge hook, "ether type" then reads 0x8100 and the
// ARP/IP checks would not apply, yet a priority-tagged (VLAN 0) frame is still delivered to
// the host and to other VEs as if it were untagged.
func portRules(mac net.HardwareAddr, v4, v6 *nftables.Set, router bool) [][]expr.Any {
	drop := func(x ...expr.Any) []expr.Any {
		return append(x, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	notIn := func(s *nftables.Set) *expr.Lookup {
		return &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true}
	}
	rules := [][]expr.Any{
		// ether type 8021q drop; ether type 8021ad drop
		drop(etherType(etherType8021Q)...),
		drop(etherType(etherType8021AD)...),
		// ether saddr != MAC drop
		drop(
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: slices.Clone(mac)},
		),
		// arp saddr ether != MAC drop (sender hardware address)
		drop(append(etherType(etherTypeARP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: slices.Clone(mac)},
		)...),
		// arp saddr ip != @v4 drop (sender protocol address)
		drop(append(etherType(etherTypeARP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
			notIn(v4),
		)...),
		// ip saddr != @v4 drop
		drop(append(etherType(etherTypeIPv4),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			notIn(v4),
		)...),
		// ip6 saddr != @v6 drop
		drop(append(etherType(etherTypeIPv6),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
			notIn(v6),
		)...),
		// meta l4proto icmpv6 icmpv6 type nd-neighbor-advert @th,64,128 != @v6 drop: the NA
		// target address, read raw because nft 1.0.6 has no "icmpv6 taddr". l4proto (not
		// "ip6 nexthdr") finds ICMPv6 behind extension headers too.
		drop(append(etherType(etherTypeIPv6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{icmpv6NeighborAdvert}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16},
			notIn(v6),
		)...),
	}
	if router {
		return rules
	}
	// What only the bridge's router or DHCP server sends (RA guard, DHCP snooping):
	// icmpv6 type nd-router-advert drop; icmpv6 type nd-redirect drop;
	// ip udp sport 67 drop (DHCPv4 server and relay); ip6 udp sport 547 drop (DHCPv6).
	for _, typ := range []byte{icmpv6RouterAdvert, icmpv6Redirect} {
		rules = append(rules, drop(append(etherType(etherTypeIPv6),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{typ}},
		)...))
	}
	for _, d := range []struct {
		ether uint16
		port  uint16
	}{{etherTypeIPv4, 67}, {etherTypeIPv6, 547}} {
		rules = append(rules, drop(append(etherType(d.ether),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, d.port)},
		)...))
	}
	return rules
}

// etherType matches the frame's Ethernet type ("ether type X").
func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, t)},
	}
}

// portNames are the names of one bridge port's chain and address sets.
type portNames struct {
	chain, v4, v6 string
}

// bridgePortNames derives a port's chain and set names from its ifname. Ifnames made of
// characters nft identifiers allow are kept readable ("port-veth1a2b"); others, which nft
// could print but not parse back, are hashed ("port_<hex>"). The different separator keeps
// the two forms from ever colliding. All names fit in nameMax.
func bridgePortNames(ifname string) (portNames, error) {
	if err := checkIfname(ifname); err != nil {
		return portNames{}, err
	}
	base := "port-" + ifname
	if strings.ContainsFunc(ifname, func(r rune) bool { return !isIdentChar(r) }) {
		sum := sha256.Sum256([]byte(ifname))
		base = "port_" + hex.EncodeToString(sum[:])[:15]
	}
	return portNames{chain: base, v4: base + "-v4", v6: base + "-v6"}, nil
}

func isIdentChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		r == '_' || r == '-' || r == '.'
}

// checkIfname applies the kernel's rules for interface names (dev_valid_name).
func checkIfname(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) >= unix.IFNAMSIZ:
		return fmt.Errorf("interface name %q longer than %d bytes", name, unix.IFNAMSIZ-1)
	case name == "." || name == "..":
		return fmt.Errorf("invalid interface name %q", name)
	case strings.ContainsAny(name, "/:\x00 \t\n\v\f\r"):
		return fmt.Errorf("invalid interface name %q", name)
	}
	return nil
}

// checkTableName keeps table names to what nft prints and parses back.
func checkTableName(name string) error {
	if name == "" || len(name) > nameMax || strings.ContainsFunc(name, func(r rune) bool { return !isIdentChar(r) }) {
		return fmt.Errorf("invalid table name %q", name)
	}
	return nil
}

// ifnameKey is an ifname as nftables stores it: IFNAMSIZ bytes, zero-padded.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// checkMAC accepts only what an Ethernet interface can have as its own address.
func checkMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("MAC address %q is not a 6-byte Ethernet address", mac.String())
	case mac[0]&1 != 0:
		return fmt.Errorf("MAC address %s is a multicast address", mac)
	case bytes.Equal(mac, make([]byte, 6)):
		return fmt.Errorf("MAC address %s is all zeros", mac)
	}
	return nil
}

// alwaysV4 and alwaysV6 are allowed on every bridge port: the unspecified source of DHCP
// and ARP probes, and of IPv6 DAD and MLD. Of link-local IPv6 only the port's own address
// (LinkLocal of its MAC) is: another VE's would let a VE speak, and answer neighbour
// solicitations, in that VE's name.
var (
	alwaysV4 = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")}
	alwaysV6 = []netip.Prefix{netip.MustParsePrefix("::/128")}
)

// portAddrElements builds the interval set elements of a port's address sets.
func portAddrElements(v4, v6 []netip.Addr) (e4, e6 []nftables.SetElement, err error) {
	p4 := slices.Clone(alwaysV4)
	for _, a := range v4 {
		a = a.Unmap()
		if !a.Is4() {
			return nil, nil, fmt.Errorf("%v is not an IPv4 address", a)
		}
		p4 = append(p4, netip.PrefixFrom(a, 32))
	}
	p6 := slices.Clone(alwaysV6)
	for _, a := range v6 {
		if !a.Is6() || a.Is4In6() {
			return nil, nil, fmt.Errorf("%v is not an IPv6 address", a)
		}
		p6 = append(p6, netip.PrefixFrom(a.WithZone(""), 128))
	}
	return intervalElements(mergeRanges(p4)), intervalElements(mergeRanges(p6)), nil
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct {
	first, last netip.Addr
}

// mergeRanges turns prefixes of one family into sorted ranges that neither overlap nor
// touch: the kernel rejects overlapping intervals, and a VE address inside fe80::/10 or
// listed twice must not make the whole batch fail.
func mergeRanges(ps []netip.Prefix) []addrRange {
	rs := make([]addrRange, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		rs = append(rs, addrRange{p.Addr(), prefixEnd(p)})
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	var out []addrRange
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			next := cur.last.Next() // invalid when cur.last is the family's last address
			if !next.IsValid() || r.first.Compare(next) <= 0 {
				if r.last.Compare(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// prefixEnd is the highest address in p.
func prefixEnd(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// intervalElements encodes ranges the way nftables interval sets store them: a start
// element and an "interval end" element one past the range's last address, which is left
// out when the range reaches the end of the address space.
func intervalElements(rs []addrRange) []nftables.SetElement {
	var out []nftables.SetElement
	for _, r := range rs {
		out = append(out, nftables.SetElement{Key: r.first.AsSlice()})
		if end := r.last.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}
