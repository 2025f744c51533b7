package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// ErrInvalid means an address or a network setting is malformed or not allowed.
var ErrInvalid = errors.New("invalid value")

// DefaultConfigPath is where the node's network configuration lives.
const DefaultConfigPath = "/etc/vectl/network.json"

// Pool is a range of VE addresses. Addresses of a routed pool (no Bridge) are given to a VE's
// eth0 through the ptp plugin, like OpenVZ's venet: the host routes each address to the VE's
// own veth and the VE sees no layer 2 of others. Addresses of a bridged pool go to the VE's
// interface on that bridge (vectl set --netif_add), like OpenVZ's veth.
type Pool struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	Bridge  string       `json:"bridge,omitempty"`
	// Isolated sets the bridge plugin's portIsolation: VEs on the bridge then reach each
	// other only through the host.
	Isolated bool `json:"isolated,omitempty"`
}

// Config is the node's network configuration (/etc/vectl/network.json).
type Config struct {
	Pools []Pool `json:"pools"`
	// NeighbourDevs are uplinks on which the host answers ARP and NDP for VE addresses that
	// belong to the LAN (proxy ARP/NDP, vzctl's NEIGHBOUR_DEVS).
	NeighbourDevs []string `json:"neighbour_devs,omitempty"`
	MTU           int      `json:"mtu,omitempty"`
}

// DefaultConfig is used when no configuration file exists: one routed IPv4 and one routed
// IPv6 pool of private addresses.
func DefaultConfig() *Config {
	return &Config{
		Pools: []Pool{
			{Subnet: netip.MustParsePrefix("10.199.0.0/16"), Gateway: netip.MustParseAddr("10.199.0.1")},
			{Subnet: netip.MustParsePrefix("fd99:199::/64"), Gateway: netip.MustParseAddr("fd99:199::1")},
		},
		MTU: 1500,
	}
}

// LoadConfig reads the node's network configuration; a missing file means DefaultConfig.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return DefaultConfig(), nil
	}
	if err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		return fmt.Errorf("%w: mtu %d", ErrInvalid, c.MTU)
	}
	for i, p := range c.Pools {
		if !p.Subnet.IsValid() || !p.Gateway.IsValid() || p.Subnet.Addr().Is4In6() {
			return fmt.Errorf("%w: pool %d needs a subnet and a gateway", ErrInvalid, i)
		}
		c.Pools[i].Subnet = p.Subnet.Masked()
		if !p.Subnet.Contains(p.Gateway) {
			return fmt.Errorf("%w: pool %s: gateway %s is outside it", ErrInvalid, p.Subnet, p.Gateway)
		}
		if p.Subnet.Addr().Is4() && p.Subnet.Bits() > 30 || p.Subnet.Addr().Is6() && p.Subnet.Bits() > 126 {
			return fmt.Errorf("%w: pool %s is too small", ErrInvalid, p.Subnet)
		}
		if len(p.Bridge) > 15 || strings.ContainsAny(p.Bridge, "/ :") {
			return fmt.Errorf("%w: pool %s: bridge name %q", ErrInvalid, p.Subnet, p.Bridge)
		}
		for _, q := range c.Pools[:i] {
			if q.Subnet.Overlaps(p.Subnet) {
				return fmt.Errorf("%w: pools %s and %s overlap", ErrInvalid, q.Subnet, p.Subnet)
			}
		}
	}
	return nil
}

// PoolOf returns the pool an address belongs to.
func (c *Config) PoolOf(a netip.Addr) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Subnet.Contains(a) {
			return p, true
		}
	}
	return Pool{}, false
}

// ParseAddr checks a VE address as vzctl's --ipadd takes it, ADDR[/PREFIX], and returns it
// with its prefix length (the pool's when none is given). The address must be in a configured
// pool and be neither the pool's network address, broadcast address nor gateway.
func (c *Config) ParseAddr(s string) (netip.Prefix, error) {
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%w: address %q: use an IPv4 or IPv6 address, optionally with /PREFIX", ErrInvalid, s)
	}
	p, ok := c.PoolOf(a)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%w: address %s is outside the VE address pools %s (configure pools in %s)",
			ErrInvalid, a, c.poolList(), DefaultConfigPath)
	}
	bits := p.Subnet.Bits()
	if hasBits {
		pre, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: address %q: bad prefix length %q", ErrInvalid, s, bitsPart)
		}
		bits = pre.Bits()
	}
	switch {
	case a == p.Gateway:
		return netip.Prefix{}, fmt.Errorf("%w: address %s is the gateway of pool %s", ErrInvalid, a, p.Subnet)
	case a == p.Subnet.Addr():
		return netip.Prefix{}, fmt.Errorf("%w: address %s is the network address of pool %s", ErrInvalid, a, p.Subnet)
	case a.Is4() && a == lastAddr(p.Subnet):
		return netip.Prefix{}, fmt.Errorf("%w: address %s is the broadcast address of pool %s", ErrInvalid, a, p.Subnet)
	case a.IsLoopback(), a.IsMulticast(), a.IsUnspecified(), a.IsLinkLocalUnicast():
		return netip.Prefix{}, fmt.Errorf("%w: address %s cannot be a VE address", ErrInvalid, a)
	}
	return netip.PrefixFrom(a, bits), nil
}

func (c *Config) poolList() string {
	var s []string
	for _, p := range c.Pools {
		s = append(s, p.Subnet.String())
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// lastAddr is the highest address of a prefix (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
