package container

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
)

func TestParseNetIf(t *testing.T) {
	nc := &network.Config{Pools: []network.Pool{
		{Subnet: netip.MustParsePrefix("10.196.0.0/24"), Gateway: netip.MustParseAddr("10.196.0.1"), Bridge: "vzbr0"},
	}}
	for in, want := range map[string]store.NetIf{
		"eth1":                                  {Name: "eth1", Bridge: "vzbr0"},
		"eth1,router=yes":                       {Name: "eth1", Bridge: "vzbr0", Router: true},
		"eth1,bridge=vzbr0,router=no":           {Name: "eth1", Bridge: "vzbr0"},
		"eth2,mac=02:00:00:00:00:01":            {Name: "eth2", Bridge: "vzbr0", MAC: "02:00:00:00:00:01"},
		"eth2,host_ifname=veth101.2,router=yes": {Name: "eth2", Bridge: "vzbr0", HostName: "veth101.2", Router: true},
	} {
		got, err := parseNetIf(nc, in)
		if err != nil || got != want {
			t.Errorf("parseNetIf(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"eth0", "eth1,router=maybe", "eth1,router", "eth1,bridge=other", "eth1,mac=01:00:00:00:00:01"} {
		if _, err := parseNetIf(nc, bad); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("parseNetIf(%q): %v, want ErrInvalidValue", bad, err)
		}
	}
}
