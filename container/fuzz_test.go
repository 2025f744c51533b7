package container

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vectl/vectl/network"
)

// Fuzz targets of what the container package reads from files others can write: a VE's
// config.json, the vzctl config files, and netif specs. `make fuzz` runs each.

func FuzzVZConf(f *testing.F) {
	f.Add([]byte("ONBOOT=\"yes\"\nPHYSPAGES=\"0:65536\"\n#UUID: 54cd4489-187b-4299-999e-4410f59c26b9\n"))
	f.Add([]byte("KEY='x\nKEY2=\"a \\\" b\"\n=\n\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kv := range ParseVZConf(data) {
			if kv.Key == "" {
				t.Fatalf("an empty key from %q", data)
			}
			if _, v, ok := vzConfLine(kv.Key + "=" + vzQuote(kv.Value)); !ok || v != kv.Value {
				t.Fatalf("%q=%q does not round-trip: %q", kv.Key, kv.Value, v)
			}
		}
	})
}

func FuzzConfigJSON(f *testing.F) {
	f.Add([]byte(`{"schema": 1, "id": "101", "ostemplate": "t", "layout": "overlay", "resources": {"ram": 268435456}}`))
	f.Add([]byte(`{"id": "101", "userns": {"uid": 100000, "gid": 100000, "size": 65536}, "ips": ["10.199.0.11/16"]}`))
	f.Add([]byte(`{"id": "../x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		m := New(Options{Root: root, VZConfDir: filepath.Join(root, "vz")})
		dir := m.store.VEDir("101")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.store.ConfigPath("101"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := m.store.LoadConfig("101")
		if err != nil {
			return
		}
		if cfg.ID != "101" {
			t.Fatalf("config of %q loaded for 101", cfg.ID)
		}
		m.vzConfValues(cfg) // renders whatever was taken
	})
}

func FuzzNetIf(f *testing.F) {
	for _, s := range []string{"eth1,bridge=vzbr0", "eth1,mac=00:11:22:33:44:55,host_ifname=veth1,router=yes", "eth0", ",", "eth1,bridge="} {
		f.Add(s)
	}
	nc := network.DefaultConfig()
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseNetIf(nc, s)
		if err == nil && !ifnameRE().MatchString(n.Name) {
			t.Fatalf("parseNetIf(%q) took the name %q", s, n.Name)
		}
	})
}
