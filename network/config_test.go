package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testConfig() *Config {
	c := &Config{Pools: []Pool{
		{Subnet: netip.MustParsePrefix("10.197.0.0/16"), Gateway: netip.MustParseAddr("10.197.0.1")},
		{Subnet: netip.MustParsePrefix("fd99:197::/64"), Gateway: netip.MustParseAddr("fd99:197::1")},
		{Subnet: netip.MustParsePrefix("10.196.0.0/24"), Gateway: netip.MustParseAddr("10.196.0.1"), Bridge: "vtbr0"},
	}}
	if err := c.validate(); err != nil {
		panic(err)
	}
	return c
}

func TestParseAddr(t *testing.T) {
	c := testConfig()
	good := map[string]string{
		"10.197.0.11":       "10.197.0.11/16",
		"10.197.3.4/24":     "10.197.3.4/24",
		"fd99:197::11":      "fd99:197::11/64",
		"fd99:197::11/128":  "fd99:197::11/128",
		"10.196.0.5":        "10.196.0.5/24",
		"10.197.255.254/16": "10.197.255.254/16",
	}
	for in, want := range good {
		got, err := c.ParseAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	bad := map[string]string{
		"10.197.0.1":      "gateway",
		"10.197.0.0":      "network address",
		"10.197.255.255":  "broadcast",
		"192.0.2.10":      "outside",
		"8.8.8.8":         "outside",
		"10.197.0.300":    "IPv4 or IPv6",
		"10.197.0.5/33":   "prefix",
		"fe80::1":         "outside",
		"::ffff:10.1.1.1": "IPv4 or IPv6",
		"fd99:197::1":     "gateway",
		"abc":             "IPv4 or IPv6",
		"":                "IPv4 or IPv6",
	}
	for in, why := range bad {
		_, err := c.ParseAddr(in)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), why) {
			t.Errorf("ParseAddr(%q) = %v; want ErrInvalid mentioning %q", in, err, why)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	c, err := LoadConfig(filepath.Join(dir, "missing.json"))
	if err != nil || len(c.Pools) != 2 || c.MTU != 1500 {
		t.Fatalf("default config: %+v, %v", c, err)
	}
	path := filepath.Join(dir, "network.json")
	os.WriteFile(path, []byte(`{"pools":[{"subnet":"10.5.0.0/24","gateway":"10.5.0.1","bridge":"br5"}],"neighbour_devs":["eth0"]}`), 0o644)
	c, err = LoadConfig(path)
	if err != nil || c.Pools[0].Bridge != "br5" || c.NeighbourDevs[0] != "eth0" {
		t.Fatalf("LoadConfig = %+v, %v", c, err)
	}
	for _, bad := range []string{
		`{"pools":[{"subnet":"10.5.0.0/24","gateway":"10.6.0.1"}]}`,
		`{"pools":[{"subnet":"10.5.0.0/24","gateway":"10.5.0.1"},{"subnet":"10.5.0.0/16","gateway":"10.5.0.1"}]}`,
		`{"pools":[{"subnet":"10.5.0.0/24"}]}`,
		`{"pools":[],"colour":"blue"}`,
		`{"pools":[{"subnet":"10.5.0.0/24","gateway":"10.5.0.1","bridge":"a-very-long-bridge-name"}]}`,
		`{"pools":[],"mtu":100}`,
	} {
		os.WriteFile(path, []byte(bad), 0o644)
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("LoadConfig(%s) = %v; want an error naming the file", bad, err)
		}
	}
}
