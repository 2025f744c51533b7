//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The test address pools. Every VE address of the tests comes from them; the harness routes
// them nowhere but to VEs (an unreachable route) and drops any packet to them that would
// leave through an interface that is not a VE's, before any VE starts.
const (
	testPool4    = "10.197.0.0/16"
	testGW4      = "10.197.0.1"
	testPool6    = "fd99:197::/64"
	testGW6      = "fd99:197::1"
	testBrPool4  = "10.196.0.0/24"
	testBrGW4    = "10.196.0.1"
	testBrPool6  = "fd99:196::/64"
	testBrGW6    = "fd99:196::1"
	testBridge   = "vtbr0"
	testFwTable  = "vectl-it"
	guardTable   = "vectl-it-guard"
	testUplink   = "vtup0" // a dummy "uplink" for the proxy ARP/NDP tests
	testNetworkJ = `{"pools":[
  {"subnet":"` + testPool4 + `","gateway":"` + testGW4 + `"},
  {"subnet":"` + testPool6 + `","gateway":"` + testGW6 + `"},
  {"subnet":"` + testBrPool4 + `","gateway":"` + testBrGW4 + `","bridge":"` + testBridge + `"},
  {"subnet":"` + testBrPool6 + `","gateway":"` + testBrGW6 + `","bridge":"` + testBridge + `"}
]%s}`
)

var guardRuleset = `table inet ` + guardTable + ` {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr { ` + testPool4 + `, ` + testBrPool4 + ` } oifname != "veth*" oifname != "` + testBridge + `" oifname != "lo" counter drop
		ip6 daddr { ` + testPool6 + `, ` + testBrPool6 + ` } oifname != "veth*" oifname != "` + testBridge + `" oifname != "lo" counter drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		ip daddr { ` + testPool4 + `, ` + testBrPool4 + ` } oifname != "veth*" oifname != "` + testBridge + `" counter drop
		ip6 daddr { ` + testPool6 + `, ` + testBrPool6 + ` } oifname != "veth*" oifname != "` + testBridge + `" counter drop
	}
}
`

var (
	netSetupOnce sync.Once
	netSetupErr  error
	savedSysctls = map[string]string{}
	// hadBridgeNat tells whether "table bridge nat" existed before the tests: the bridge
	// plugin's macspoofchk creates it and never deletes it.
	hadBridgeNat bool
)

var forwardingSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

// setupTestNetwork installs the guard and the pools' unreachable routes once per run, and
// remembers the host's forwarding settings so that netCleanup can restore them.
func setupTestNetwork(t testing.TB) {
	t.Helper()
	netSetupOnce.Do(func() {
		for _, p := range forwardingSysctls {
			v, err := os.ReadFile(p)
			if err != nil {
				netSetupErr = err
				return
			}
			savedSysctls[p] = strings.TrimSpace(string(v))
		}
		hadBridgeNat = exec.Command("nft", "list", "table", "bridge", "nat").Run() == nil
		cmd := exec.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(guardRuleset)
		if out, err := cmd.CombinedOutput(); err != nil {
			netSetupErr = fmt.Errorf("nft guard: %v %s", err, out)
			return
		}
		for _, p := range []string{testPool4, testBrPool4, testPool6, testBrPool6} {
			if out, err := exec.Command("ip", "route", "replace", "unreachable", p, "metric", "4000").CombinedOutput(); err != nil {
				netSetupErr = fmt.Errorf("unreachable route %s: %v %s", p, err, out)
				return
			}
		}
	})
	if netSetupErr != nil {
		t.Fatal(netSetupErr)
	}
}

// netCleanup removes what the network tests put on the host: vectl's test firewall tables,
// the guard, the pool routes, the test bridge and uplink, and restores forwarding.
func netCleanup() {
	if len(savedSysctls) == 0 {
		return
	}
	// What an admin would run first; then by hand whatever it left or could not know of.
	if dir, err := os.MkdirTemp("", "vectl-it-cleanup-"); err == nil {
		cfg := filepath.Join(dir, "network.json")
		if os.WriteFile(cfg, []byte(fmt.Sprintf(testNetworkJ, "")), 0o644) == nil {
			out, err := exec.Command(vectlBin, "--root", filepath.Join(dir, "root"), "--run-dir", filepath.Join(dir, "run"),
				"--log-dir", filepath.Join(dir, "log"), "--network-config", cfg, "--firewall-table", testFwTable,
				"host", "cleanup").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "vectl host cleanup of the test instance: %v\n%s", err, out)
			}
		}
		os.RemoveAll(dir)
	}
	exec.Command("nft", "delete", "table", "inet", testFwTable).Run()
	exec.Command("nft", "delete", "table", "bridge", testFwTable).Run()
	exec.Command("nft", "delete", "table", "inet", guardTable).Run()
	for _, p := range []string{testPool4, testBrPool4, testPool6, testBrPool6} {
		// The harness and vectl each add one; an IPv6 pool can end up with both (same
		// prefix and metric), and ip route del removes one route at a time.
		for i := 0; i < 4 && exec.Command("ip", "route", "del", "unreachable", p, "metric", "4000").Run() == nil; i++ {
		}
	}
	exec.Command("ip", "link", "del", testBridge).Run()
	if !hadBridgeNat {
		exec.Command("nft", "delete", "table", "bridge", "nat").Run()
	}
	exec.Command("ip", "link", "del", testUplink).Run()
	for p, v := range savedSysctls {
		os.WriteFile(p, []byte(v), 0)
	}
}

// withNetwork gives the env the test network configuration (and the guard); neighbourDevs
// become the config's neighbour_devs.
func (e *env) withNetwork(neighbourDevs ...string) {
	e.t.Helper()
	setupTestNetwork(e.t)
	extra := ""
	if len(neighbourDevs) > 0 {
		b, _ := json.Marshal(neighbourDevs)
		extra = `,"neighbour_devs":` + string(b)
	}
	path := filepath.Join(e.dir, "network.json")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(testNetworkJ, extra)), 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.netConfig = path
}

var (
	ipMu   sync.Mutex
	ipNext = 10
)

// testIP returns a fresh address of a test pool: "4" or "6" routed, "b4" or "b6" bridged.
func testIP(kind string) string {
	ipMu.Lock()
	defer ipMu.Unlock()
	ipNext++
	n := ipNext
	switch kind {
	case "4":
		return fmt.Sprintf("10.197.%d.%d", n/250, n%250+2)
	case "6":
		return fmt.Sprintf("fd99:197::%x", n+0x100)
	case "b4":
		return fmt.Sprintf("10.196.0.%d", n%250+2)
	case "b6":
		return fmt.Sprintf("fd99:196::%x", n+0x100)
	}
	panic(kind)
}

// hostVeths lists the host's veth interfaces.
func hostVeths() map[string]bool {
	out, _ := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	m := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			m[strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0]] = true
		}
	}
	return m
}

// hostRoutesTo lists host routes whose destination is addr.
func hostRoutesTo(addr string) string {
	a := netip.MustParseAddr(addr)
	fam := "-4"
	if a.Is6() {
		fam = "-6"
	}
	out, _ := exec.Command("ip", fam, "route", "show", "exact", addr).Output()
	return strings.TrimSpace(string(out))
}
