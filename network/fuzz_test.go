package network

import (
	"os"
	"path/filepath"
	"testing"
)

// Fuzz targets of network.json and of VE addresses. `make fuzz` runs each.

func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"pools": [{"subnet": "10.199.0.0/16", "gateway": "10.199.0.1"}], "mtu": 1500}`))
	f.Add([]byte(`{"pools": [{"subnet": "fd99:199::/64"}], "bridges": [{"name": "vzbr0"}]}`))
	f.Add([]byte(`{"pools": [{"subnet": "10.0.0.0/33"}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "network.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err != nil {
			return
		}
		for _, p := range c.Pools {
			if !p.Subnet.IsValid() {
				t.Fatalf("a pool with an invalid subnet was taken: %+v", p)
			}
		}
	})
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"10.199.0.11", "10.199.0.11/16", "fd99:199::11/64", "10.199.0.0", "::1", "1.2.3.4/40", ""} {
		f.Add(s)
	}
	c := DefaultConfig()
	f.Fuzz(func(t *testing.T, s string) {
		p, err := c.ParseAddr(s)
		if err != nil {
			return
		}
		if _, ok := c.PoolOf(p.Addr()); !ok {
			t.Fatalf("ParseAddr(%q) = %v, outside every pool", s, p)
		}
	})
}
