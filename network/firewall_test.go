package network

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// These tests need neither root nor a kernel: netlink is replaced by a recorder. The
// behaviour against a real kernel is tested in integration/firewall_test.go.

func TestBridgePortNames(t *testing.T) {
	tests := []struct {
		ifname string
		chain  string // "" means hashed: "port_" and 15 hex digits
	}{
		{"veth0", "port-veth0"},
		{"veth1a2b3c4d", "port-veth1a2b3c4d"},
		{"vethabcdefghijk", "port-vethabcdefghijk"}, // 15 bytes, the longest ifname
		{"eth0.100", "port-eth0.100"},
		{"br_x-y", "port-br_x-y"},
		{"ve@1", ""},
		{"vé", ""},
		{"ve+1", ""},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		n, err := bridgePortNames(tt.ifname)
		if err != nil {
			t.Errorf("bridgePortNames(%q): %v", tt.ifname, err)
			continue
		}
		if tt.chain != "" && n.chain != tt.chain {
			t.Errorf("bridgePortNames(%q).chain = %q, want %q", tt.ifname, n.chain, tt.chain)
		}
		if tt.chain == "" && (!strings.HasPrefix(n.chain, "port_") || len(n.chain) != len("port_")+15) {
			t.Errorf("bridgePortNames(%q).chain = %q, want port_ and 15 hex digits", tt.ifname, n.chain)
		}
		if n.v4 != n.chain+"-v4" || n.v6 != n.chain+"-v6" {
			t.Errorf("bridgePortNames(%q) = %+v: set names do not follow the chain", tt.ifname, n)
		}
		for _, name := range []string{n.chain, n.v4, n.v6} {
			if len(name) > nameMax {
				t.Errorf("bridgePortNames(%q): %q is longer than %d bytes", tt.ifname, name, nameMax)
			}
			if strings.ContainsFunc(name, func(r rune) bool { return !isIdentChar(r) }) {
				t.Errorf("bridgePortNames(%q): %q is not an nft identifier", tt.ifname, name)
			}
		}
		if other, ok := seen[n.chain]; ok {
			t.Errorf("%q and %q share chain %q", tt.ifname, other, n.chain)
		}
		seen[n.chain] = tt.ifname
	}
	again, _ := bridgePortNames("ve@1")
	if first, _ := bridgePortNames("ve@1"); again != first {
		t.Errorf("hashed names are not stable: %+v, %+v", first, again)
	}
}

func TestCheckIfname(t *testing.T) {
	for _, bad := range []string{"", "vethabcdefghijkl", ".", "..", "a/b", "a:b", "a b", "a\tb", "a\x00"} {
		if err := checkIfname(bad); err == nil {
			t.Errorf("checkIfname(%q) accepted an invalid name", bad)
		}
		if _, err := bridgePortNames(bad); err == nil {
			t.Errorf("bridgePortNames(%q) accepted an invalid name", bad)
		}
	}
	for _, good := range []string{"v", "eth0", "vethabcdefghijk", "ve@1", "a.b"} {
		if err := checkIfname(good); err != nil {
			t.Errorf("checkIfname(%q): %v", good, err)
		}
	}
}

func TestCheckMAC(t *testing.T) {
	tests := []struct {
		mac  net.HardwareAddr
		want string // part of the error; "" means valid
	}{
		{net.HardwareAddr{2, 0, 0x0a, 0xc4, 6, 0x0b}, ""},
		{net.HardwareAddr{0xfe, 0, 0, 0, 0, 1}, ""},
		{nil, "not a 6-byte"},
		{net.HardwareAddr{2, 0, 0, 0, 0}, "not a 6-byte"},
		{net.HardwareAddr{2, 0, 0, 0, 0, 0, 0, 1}, "not a 6-byte"},
		{net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, "multicast"},
		{net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "multicast"},
		{net.HardwareAddr{0, 0, 0, 0, 0, 0}, "all zeros"},
	}
	for _, tt := range tests {
		err := checkMAC(tt.mac)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkMAC(%v): %v", tt.mac, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("checkMAC(%v) = %v, want an error with %q", tt.mac, err, tt.want)
		}
	}
}

// fwElems shows set elements readably: "a" starts an interval, "<b" ends it before b.
func fwElems(es []nftables.SetElement) []string {
	var out []string
	for _, e := range es {
		a, _ := netip.AddrFromSlice(e.Key)
		if e.IntervalEnd {
			out = append(out, "<"+a.String())
		} else {
			out = append(out, a.String())
		}
	}
	return out
}

func TestPortAddrElements(t *testing.T) {
	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	tests := []struct {
		name   string
		v4, v6 []netip.Addr
		e4, e6 []string
	}{{
		// Link-local IPv6 is not implicit any more: only the port's own (issue 23).
		name: "only the implicit addresses",
		e4:   []string{"0.0.0.0", "<0.0.0.1"},
		e6:   []string{"::", "<::1"},
	}, {
		name: "single addresses",
		v4:   addrs("10.196.6.11"),
		v6:   addrs("fd96:6::11"),
		e4:   []string{"0.0.0.0", "<0.0.0.1", "10.196.6.11", "<10.196.6.12"},
		e6:   []string{"::", "<::1", "fd96:6::11", "<fd96:6::12"},
	}, {
		name: "unsorted, duplicate and adjacent addresses merge",
		v4:   addrs("10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.1", "0.0.0.1"),
		v6:   addrs("::1", "fd00::2", "fd00::1"),
		e4:   []string{"0.0.0.0", "<0.0.0.2", "10.0.0.1", "<10.0.0.4"},
		e6:   []string{"::", "<::2", "fd00::1", "<fd00::3"},
	}, {
		name: "link-local addresses, zones dropped, and fe80::/10's edges",
		v6:   addrs("fe80::1", "fe80::1%eth0", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::"),
		e4:   []string{"0.0.0.0", "<0.0.0.1"},
		e6:   []string{"::", "<::1", "fe80::1", "<fe80::2", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "<fec0::1"},
	}, {
		name: "IPv4-mapped IPv4 and the top of the address space",
		v4:   addrs("::ffff:10.0.0.1", "255.255.255.255"),
		v6:   addrs("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
		e4:   []string{"0.0.0.0", "<0.0.0.1", "10.0.0.1", "<10.0.0.2", "255.255.255.255"},
		e6:   []string{"::", "<::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
	}}
	for _, tt := range tests {
		e4, e6, err := portAddrElements(tt.v4, tt.v6)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := fwElems(e4); !slices.Equal(got, tt.e4) {
			t.Errorf("%s: IPv4 elements %v, want %v", tt.name, got, tt.e4)
		}
		if got := fwElems(e6); !slices.Equal(got, tt.e6) {
			t.Errorf("%s: IPv6 elements %v, want %v", tt.name, got, tt.e6)
		}
		for _, e := range e4 {
			if len(e.Key) != 4 {
				t.Errorf("%s: IPv4 key %x is not 4 bytes", tt.name, e.Key)
			}
		}
		for _, e := range e6 {
			if len(e.Key) != 16 {
				t.Errorf("%s: IPv6 key %x is not 16 bytes", tt.name, e.Key)
			}
		}
	}

	for _, bad := range []struct{ v4, v6 []netip.Addr }{
		{v4: addrs("fd00::1")},
		{v6: addrs("10.0.0.1")},
		{v6: addrs("::ffff:10.0.0.1")},
		{v4: []netip.Addr{{}}},
		{v6: []netip.Addr{{}}},
	} {
		if _, _, err := portAddrElements(bad.v4, bad.v6); err == nil {
			t.Errorf("portAddrElements(%v, %v) accepted an address of the wrong family", bad.v4, bad.v6)
		}
	}
}

func TestMergeRanges(t *testing.T) {
	ps := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range s {
			out = append(out, netip.MustParsePrefix(p))
		}
		return out
	}
	tests := []struct {
		in   []netip.Prefix
		want []string
	}{
		{ps("10.0.0.0/8", "10.1.2.3/32"), []string{"10.0.0.0", "<11.0.0.0"}},
		{ps("10.0.0.0/24", "10.0.1.0/24"), []string{"10.0.0.0", "<10.0.2.0"}},
		{ps("10.0.0.0/24", "10.0.2.0/24"), []string{"10.0.0.0", "<10.0.1.0", "10.0.2.0", "<10.0.3.0"}},
		{ps("10.0.0.5/24"), []string{"10.0.0.0", "<10.0.1.0"}}, // host bits are masked
		{ps("0.0.0.0/0", "10.0.0.1/32"), []string{"0.0.0.0"}},  // no end after the last address
		{ps("::/0"), []string{"::"}},
	}
	for _, tt := range tests {
		if got := fwElems(intervalElements(mergeRanges(tt.in))); !slices.Equal(got, tt.want) {
			t.Errorf("mergeRanges(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestIfnameKey(t *testing.T) {
	k := ifnameKey("veth0")
	if len(k) != 16 || string(k[:5]) != "veth0" || slices.ContainsFunc(k[5:], func(b byte) bool { return b != 0 }) {
		t.Errorf("ifnameKey(veth0) = %q, want veth0 zero-padded to 16 bytes", k)
	}
}

func TestFirewallRejectsBadInput(t *testing.T) {
	rec := &fwRecorder{}
	for _, name := range []string{"", "has space", "semi;colon", strings.Repeat("x", 32)} {
		fw := NewFirewall(name, -1)
		fw.dial = rec.dial
		if err := fw.EnsureBase(false); err == nil {
			t.Errorf("EnsureBase with table name %q succeeded", name)
		}
	}
	fw := NewFirewall("vtest", -1)
	fw.dial = rec.dial
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for name, err := range map[string]error{
		"AddRoutedPort with a long name": fw.AddRoutedPort("vethabcdefghijkl"),
		"AddBridge with a slash":         fw.AddBridge("br/0"),
		"AddBridgePort without a MAC":    fw.AddBridgePort(BridgePort{IfName: "veth0"}),
		"AddBridgePort with a v6 in v4": fw.AddBridgePort(BridgePort{IfName: "veth0", MAC: mac,
			IPv4: []netip.Addr{netip.MustParseAddr("fd00::1")}}),
		"SetBridgePortAddrs with a v4 in v6": fw.SetBridgePortAddrs(BridgePort{IfName: "veth0", MAC: mac,
			IPv6: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}),
		"SetBridgePortAddrs without a MAC":    fw.SetBridgePortAddrs(BridgePort{IfName: "veth0"}),
		"RemoveBridgePort with an empty name": fw.RemoveBridgePort(""),
	} {
		if err == nil {
			t.Errorf("%s succeeded", name)
		} else if !strings.Contains(err.Error(), "vtest") {
			t.Errorf("%s: error %q does not name the firewall", name, err)
		}
	}
	if len(rec.batches) != 0 {
		t.Errorf("invalid input reached netlink: %d batches", len(rec.batches))
	}
}

// fwRecorder stands in for the kernel: it records every batch and answers with err, or
// acknowledges everything.
type fwRecorder struct {
	batches [][]netlink.Message
	err     error
}

func (r *fwRecorder) dial(req []netlink.Message) ([]netlink.Message, error) {
	if len(req) > 0 && req[0].Header.Type == netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN) {
		r.batches = append(r.batches, req)
	}
	if r.err != nil {
		return nil, r.err
	}
	return req, nil
}

// fwMsg is a recorded message: its nf_tables type and, for chain and rule messages, the
// family and chain name.
type fwMsg struct {
	typ    int
	family byte
	chain  string
}

func fwDecode(t *testing.T, batch []netlink.Message) []fwMsg {
	t.Helper()
	var out []fwMsg
	for _, m := range batch[1 : len(batch)-1] { // without BATCH_BEGIN and BATCH_END
		msg := fwMsg{typ: int(m.Header.Type) & 0xff, family: m.Data[0]}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		for ad.Next() {
			switch {
			case (msg.typ == unix.NFT_MSG_NEWCHAIN || msg.typ == unix.NFT_MSG_DELCHAIN) && ad.Type() == unix.NFTA_CHAIN_NAME,
				(msg.typ == unix.NFT_MSG_NEWRULE || msg.typ == unix.NFT_MSG_DELRULE) && ad.Type() == unix.NFTA_RULE_CHAIN:
				msg.chain = ad.String()
			}
		}
		out = append(out, msg)
	}
	return out
}

// TestFirewallOneBatch: every change is one batch, so the kernel applies it atomically.
func TestFirewallOneBatch(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	v4 := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	calls := map[string]func(*Firewall) error{
		"EnsureBase(false)": func(f *Firewall) error { return f.EnsureBase(false) },
		"EnsureBase(true)":  func(f *Firewall) error { return f.EnsureBase(true) },
		"AddRoutedPort":     func(f *Firewall) error { return f.AddRoutedPort("veth0") },
		"RemoveRoutedPort":  func(f *Firewall) error { return f.RemoveRoutedPort("veth0") },
		"AddBridge":         func(f *Firewall) error { return f.AddBridge("br0") },
		"RemoveBridge":      func(f *Firewall) error { return f.RemoveBridge("br0") },
		"AddBridgePort":     func(f *Firewall) error { return f.AddBridgePort(BridgePort{IfName: "veth0", MAC: mac, IPv4: v4}) },
		"SetBridgePortAddrs": func(f *Firewall) error {
			return f.SetBridgePortAddrs(BridgePort{IfName: "veth0", MAC: mac, IPv4: v4})
		},
		"RemoveBridgePort": func(f *Firewall) error { return f.RemoveBridgePort("veth0") },
		"Delete":           func(f *Firewall) error { return f.Delete() },
	}
	for name, call := range calls {
		rec := &fwRecorder{}
		fw := NewFirewall("vtest", -1)
		fw.dial = rec.dial
		if err := call(fw); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(rec.batches) != 1 {
			t.Errorf("%s sent %d batches, want 1", name, len(rec.batches))
		}
	}
}

// TestEnsureBaseKeepsPorts: EnsureBase rewrites only the base chains. Flushing a port's
// chain at every VE start would open a window without anti-spoofing for every other VE.
func TestEnsureBaseKeepsPorts(t *testing.T) {
	for _, limit := range []bool{false, true} {
		rec := &fwRecorder{}
		fw := NewFirewall("vtest", -1)
		fw.dial = rec.dial
		if err := fw.EnsureBase(limit); err != nil {
			t.Fatal(err)
		}
		var flushed, rules []string
		for _, m := range fwDecode(t, rec.batches[0]) {
			name := map[byte]string{unix.NFPROTO_INET: "inet ", unix.NFPROTO_BRIDGE: "bridge "}[m.family] + m.chain
			switch m.typ {
			case unix.NFT_MSG_DELRULE:
				flushed = append(flushed, name)
			case unix.NFT_MSG_NEWRULE:
				rules = append(rules, name)
			case unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELSET, unix.NFT_MSG_DELTABLE, unix.NFT_MSG_DELSETELEM:
				t.Errorf("EnsureBase(%v) deletes something (message type %d)", limit, m.typ)
			}
		}
		wantFlushed := []string{"inet prerouting", "inet forward", "bridge prerouting"}
		// The forward chain: four isolation rules (issue 14), then the limit.
		wantRules := []string{"inet prerouting", "inet forward", "inet forward", "inet forward", "inet forward", "bridge prerouting"}
		if limit {
			wantRules = slices.Insert(wantRules, 5, "inet forward")
		}
		if !slices.Equal(flushed, wantFlushed) {
			t.Errorf("EnsureBase(%v) flushes %v, want %v", limit, flushed, wantFlushed)
		}
		if !slices.Equal(rules, wantRules) {
			t.Errorf("EnsureBase(%v) adds rules to %v, want %v", limit, rules, wantRules)
		}
	}
}

// TestRemoveBridgePortOrder: the map entry goes before the chain it jumps to, and the chain
// (with the rules that use them) before the sets; the kernel refuses any other order.
func TestRemoveBridgePortOrder(t *testing.T) {
	rec := &fwRecorder{}
	fw := NewFirewall("vtest", -1)
	fw.dial = rec.dial
	if err := fw.RemoveBridgePort("veth0"); err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, m := range fwDecode(t, rec.batches[0]) {
		got = append(got, m.typ)
	}
	want := []int{unix.NFT_MSG_NEWSET, unix.NFT_MSG_NEWSET, unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_NEWSETELEM,
		unix.NFT_MSG_DELSETELEM, unix.NFT_MSG_DELCHAIN, unix.NFT_MSG_DELSET, unix.NFT_MSG_DELSET}
	if !slices.Equal(got, want) {
		t.Errorf("RemoveBridgePort sends message types %v, want %v", got, want)
	}
}

// TestSetMemberMissing: a missing table makes additions fail with ErrNotInstalled and
// removals succeed; other errors pass through.
func TestSetMemberMissing(t *testing.T) {
	fw := NewFirewall("vtest", -1)
	rec := &fwRecorder{err: unix.ENOENT}
	fw.dial = rec.dial
	if err := fw.AddRoutedPort("veth0"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("AddRoutedPort on ENOENT: %v, want ErrNotInstalled", err)
	}
	if err := fw.AddBridge("br0"); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("AddBridge on ENOENT: %v, want ErrNotInstalled", err)
	}
	if err := fw.RemoveRoutedPort("veth0"); err != nil {
		t.Errorf("RemoveRoutedPort on ENOENT: %v", err)
	}
	if err := fw.RemoveBridge("br0"); err != nil {
		t.Errorf("RemoveBridge on ENOENT: %v", err)
	}
	rec.err = unix.EPERM
	if err := fw.RemoveRoutedPort("veth0"); !errors.Is(err, unix.EPERM) {
		t.Errorf("RemoveRoutedPort on EPERM: %v, want EPERM", err)
	} else if !strings.Contains(err.Error(), "remove routed port veth0 from firewall vtest") {
		t.Errorf("error %q does not name the operation and the objects", err)
	}
}

// TestTagged: EnsureBase skips its batch only when a base chain holds exactly the rules it
// would write; an older vectl's untagged rules, a missing rule or an extra one make it
// rewrite the chain.
func TestTagged(t *testing.T) {
	ours := &nftables.Rule{UserData: baseRuleTag}
	old := &nftables.Rule{UserData: ruleComment("vectl base v0")}
	for _, c := range []struct {
		rules []*nftables.Rule
		n     int
		want  bool
	}{
		{nil, 0, true},
		{[]*nftables.Rule{ours}, 1, true},
		{nil, 1, false},
		{[]*nftables.Rule{ours}, 0, false},
		{[]*nftables.Rule{old}, 1, false},
		{[]*nftables.Rule{{}}, 1, false},
		{[]*nftables.Rule{ours, ours}, 1, false},
	} {
		if got := tagged(c.rules, c.n); got != c.want {
			t.Errorf("tagged(%d rules, %d) = %v, want %v", len(c.rules), c.n, got, c.want)
		}
	}
}

// TestLinkLocal (issue 23): the link-local address a bridged VE may use is the one the
// kernel derives from its MAC.
func TestLinkLocal(t *testing.T) {
	for mac, want := range map[string]string{
		"02:00:0a:c4:06:0b": "fe80::aff:fec4:60b",
		"52:54:00:12:34:56": "fe80::5054:ff:fe12:3456",
		"00:16:3e:aa:bb:cc": "fe80::216:3eff:feaa:bbcc",
	} {
		hw, _ := net.ParseMAC(mac)
		if got := LinkLocal(hw).String(); got != want {
			t.Errorf("LinkLocal(%s) = %s, want %s", mac, got, want)
		}
	}
}
