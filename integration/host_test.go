//go:build integration

package integration

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// These tests run vectl inside a network namespace of their own, which stands in for a
// fresh host: forwarding is off there (a new namespace inherits the host's IPv4 setting, so
// hostNS turns it off), br_netfilter applies there as on the host (it is loaded on this kind
// of machine), and nothing vectl sets up there (tables, routes, sysctls,
// bridges) touches the real host. The namespace has no uplink and no default route, so no
// packet can leave it except to the VEs it holds; the addresses are from the routed test
// pool 10.197.0.0/16 and fd99:197::/64.

// hostNS makes a fresh network namespace for one test and removes it (with everything
// vectl left in it) and vectl's host record of it at cleanup. Register it before the envs
// that use it, so that their VEs are destroyed first.
func hostNS(t *testing.T) string {
	t.Helper()
	requireTool(t, "nsenter")
	requireTool(t, "ip")
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "vth" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	path := "/run/netns/" + name
	if out, err := inNS(path, "sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		exec.Command("ip", "netns", "del", name).Run()
		t.Fatalf("turn forwarding off in %s: %v\n%s", name, err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	record := fmt.Sprintf("/run/vectl/host/net-%d.json", st.Ino)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
		os.Remove(record)
		os.Remove(record + ".lock")
	})
	return path
}

// inNS runs a command in the namespace and returns its combined output.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + ns}, args...)...).CombinedOutput()
	return string(out), err
}

// mustNS runs a command in the namespace and fails the test unless it succeeds.
func mustNS(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// nsEnv is an env whose vectl runs in ns with its own firewall table and the given pools.
func nsEnv(t *testing.T, ns, table, network string) *env {
	t.Helper()
	e := newEnv(t)
	e.netns, e.table = ns, table
	e.netConfig = filepath.Join(e.dir, "network.json")
	if err := os.WriteFile(e.netConfig, []byte(network), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// reaches tells whether VE id gets an answer to one ping of addr.
func (e *env) reaches(id, addr string) bool {
	e.t.Helper()
	return e.exec(id, "ping", "-c", "1", "-W", "1", addr).code == 0
}

// TestHostTwoInstances (issue 14): two vectl instances (own roots, firewall tables and
// pools) on one host with br_netfilter loaded, each with a routed and two bridged VEs. Each
// instance installs the forwarding limit (forwarding was off), and neither one's limit may
// drop the other's traffic: every VE reaches its host and the VEs of its own instance, bridged
// traffic included. The instances stay apart: no VE reaches the other instance's VEs. And
// forwarding between interfaces no vectl made is still dropped.
func TestHostTwoInstances(t *testing.T) {
	ns := hostNS(t)
	if out := mustNS(t, ns, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"); strings.TrimSpace(out) != "1" {
		t.Fatalf("br_netfilter does not apply to bridged traffic here (bridge-nf-call-iptables %q): the test would prove nothing", out)
	}
	type ve struct{ id, addr, gw string }
	type instance struct {
		e                *env
		routed           ve
		bridged1, bridg2 ve
		bridge           string
	}
	mk := func(table string, n int) *instance {
		r, b := fmt.Sprintf("10.197.%d", 140+2*n), fmt.Sprintf("10.197.%d", 141+2*n)
		bridge := fmt.Sprintf("vtbr%s%d", table[len(table)-1:], n)
		e := nsEnv(t, ns, table, fmt.Sprintf(`{"pools":[
			{"subnet":"%s.0/24","gateway":"%s.1"},
			{"subnet":"%s.0/24","gateway":"%s.1","bridge":"%s"}]}`, r, r, b, b, bridge))
		in := &instance{e: e, bridge: bridge,
			routed:   ve{uniqueID(t), r + ".10", r + ".1"},
			bridged1: ve{uniqueID(t), b + ".10", b + ".1"},
			bridg2:   ve{uniqueID(t), b + ".11", b + ".1"}}
		tmpl := e.importBusybox()
		e.must("create", in.routed.id, "--ostemplate", tmpl, "--ipadd", in.routed.addr)
		for _, v := range []ve{in.bridged1, in.bridg2} {
			e.must("create", v.id, "--ostemplate", tmpl)
			e.must("set", v.id, "--netif_add", "eth1,bridge="+bridge, "--ipadd", v.addr, "--save")
		}
		for _, v := range []ve{in.routed, in.bridged1, in.bridg2} {
			e.must("start", v.id, "--wait")
		}
		return in
	}
	a := mk("vit-a", 0)
	b := mk("vit-b", 1)
	if out := mustNS(t, ns, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "1" {
		t.Fatalf("forwarding is %q with VEs running", out)
	}
	for _, table := range []string{"vit-a", "vit-b"} {
		out := mustNS(t, ns, "nft", "list", "chain", "inet", table, "forward")
		if !strings.Contains(out, "iifname != @ve_ports oifname != @ve_ports") {
			t.Fatalf("instance %s has no forwarding limit (forwarding was off before it):\n%s", table, out)
		}
	}

	for _, in := range []*instance{a, b} {
		e := in.e
		all := []ve{in.routed, in.bridged1, in.bridg2}
		for _, v := range all {
			if !e.reaches(v.id, v.gw) {
				t.Errorf("VE %s (%s) of %s does not reach its host %s", v.id, v.addr, e.table, v.gw)
			}
		}
		// Bridged traffic (passes the forward hooks with br_netfilter) and routed-to-bridged
		// traffic (forwarded by the host) within one instance.
		for _, p := range [][2]ve{{in.bridged1, in.bridg2}, {in.bridg2, in.bridged1}, {in.routed, in.bridged1}, {in.bridged1, in.routed}} {
			if !e.reaches(p[0].id, p[1].addr) {
				t.Errorf("%s: VE %s does not reach VE %s (%s) of its own instance", e.table, p[0].id, p[1].id, p[1].addr)
			}
		}
	}
	for _, p := range [][2]*instance{{a, b}, {b, a}} {
		for _, from := range []ve{p[0].routed, p[0].bridged1} {
			for _, to := range []ve{p[1].routed, p[1].bridged1} {
				if p[0].e.reaches(from.id, to.addr) {
					t.Errorf("VE %s of %s reaches VE %s (%s) of %s", from.id, p[0].e.table, to.id, to.addr, p[1].e.table)
				}
			}
		}
	}

	// Two namespaces attached to the "host" by hand: no vectl made their interfaces, so
	// forwarding between them stays dropped.
	var outsiders []string
	for i, sub := range []string{"10.197.150", "10.197.151"} {
		name := fmt.Sprintf("%s-o%d", filepath.Base(ns), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		host, peer := fmt.Sprintf("vto%s%d", filepath.Base(ns)[3:], i), "eth0"
		mustNS(t, ns, "ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", name)
		mustNS(t, ns, "ip", "addr", "add", sub+".1/24", "dev", host)
		mustNS(t, ns, "ip", "link", "set", host, "up")
		o := "/run/netns/" + name
		mustNS(t, o, "ip", "addr", "add", sub+".2/24", "dev", peer)
		mustNS(t, o, "ip", "link", "set", peer, "up")
		mustNS(t, o, "ip", "route", "add", "default", "via", sub+".1")
		outsiders = append(outsiders, o)
	}
	if _, err := inNS(outsiders[0], "ping", "-c", "1", "-W", "1", "10.197.150.1"); err != nil {
		t.Fatalf("an outside namespace does not reach the host; the next check would prove nothing: %v", err)
	}
	if out, err := inNS(outsiders[0], "ping", "-c", "1", "-W", "1", "10.197.151.2"); err == nil {
		t.Errorf("traffic between interfaces no vectl made is forwarded:\n%s", out)
	}

	// Cleanup of one instance leaves the sysctls to the other; the last one restores them.
	for _, in := range []*instance{a, b} {
		for _, v := range []ve{in.routed, in.bridged1, in.bridg2} {
			in.e.must("stop", v.id)
		}
	}
	var ra struct {
		Sysctls []struct{ Name string } `json:"sysctls"`
		Kept    []string                `json:"kept"`
	}
	decode(t, a.e.must("host", "cleanup", "--json").stdout, &ra)
	if len(ra.Sysctls) != 0 || !slices.ContainsFunc(ra.Kept, func(k string) bool { return strings.Contains(k, "vit-b") }) {
		t.Errorf("cleanup of vit-a with vit-b still there: restored %v, kept %q; want the sysctls kept for vit-b", ra.Sysctls, ra.Kept)
	}
	if out := mustNS(t, ns, "cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(out) != "1" {
		t.Errorf("forwarding turned off while another instance still has its tables: %q", out)
	}
	var rb struct {
		Sysctls []struct{ Name, To string } `json:"sysctls"`
	}
	decode(t, b.e.must("host", "cleanup", "--json").stdout, &rb)
	if len(rb.Sysctls) != 1 || rb.Sysctls[0].Name != "net.ipv4.ip_forward" || rb.Sysctls[0].To != "0" {
		t.Errorf("the last instance's cleanup restored %v, want net.ipv4.ip_forward to 0 (IPv4 pools only)", rb.Sysctls)
	}
	for _, s := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if out := mustNS(t, ns, "cat", s); strings.TrimSpace(out) != "0" {
			t.Errorf("%s is %q after the last cleanup, want 0", s, out)
		}
	}
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v in %q", err, s)
	}
}

// TestHostCleanup (issue 14): vectl host cleanup refuses while a VE runs and changes
// nothing; once the VEs are stopped it removes the instance's tables, pool routes, proxy
// entries and the bridge its plugin made, and restores the sysctls it changed; a second run
// finds nothing; a VE started afterwards sets everything up again.
func TestHostCleanup(t *testing.T) {
	ns := hostNS(t)
	// The uplink whose neighbours the host answers for VE addresses (neighbour_devs).
	mustNS(t, ns, "ip", "link", "add", "vtup", "type", "veth", "peer", "name", "vtupp")
	mustNS(t, ns, "ip", "link", "set", "vtup", "up")
	sysctls := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv6/conf/vtup/proxy_ndp"}
	before := map[string]string{}
	for _, s := range sysctls {
		before[s] = strings.TrimSpace(mustNS(t, ns, "cat", s))
	}
	e := nsEnv(t, ns, "vit-c", `{"pools":[
		{"subnet":"10.197.160.0/24","gateway":"10.197.160.1"},
		{"subnet":"fd99:197:0:160::/64","gateway":"fd99:197:0:160::1"},
		{"subnet":"10.197.161.0/24","gateway":"10.197.161.1","bridge":"vtbrc"}],
		"neighbour_devs":["vtup"]}`)
	tmpl := e.importBusybox()
	r, b := uniqueID(t), uniqueID(t)
	e.must("create", r, "--ostemplate", tmpl, "--ipadd", "10.197.160.10", "--ipadd", "fd99:197:0:160::10")
	e.must("create", b, "--ostemplate", tmpl)
	e.must("set", b, "--netif_add", "eth1,bridge=vtbrc", "--ipadd", "10.197.161.10", "--save")
	e.must("start", r)
	e.must("start", b)
	if !e.reaches(r, "10.197.160.1") || !e.reaches(b, "10.197.161.1") {
		t.Fatal("the VEs do not reach their host; the set-up is not complete")
	}
	hostState := func() string {
		var sb strings.Builder
		for _, c := range [][]string{{"nft", "list", "tables"}, {"ip", "route", "show", "type", "unreachable"},
			{"ip", "-6", "route", "show", "type", "unreachable"}, {"ip", "neigh", "show", "proxy"},
			{"ip", "-6", "neigh", "show", "proxy"}, {"ip", "-o", "link", "show", "type", "bridge"}} {
			sb.WriteString(mustNS(t, ns, c...))
		}
		for _, s := range sysctls {
			sb.WriteString(s + "=" + mustNS(t, ns, "cat", s))
		}
		return sb.String()
	}
	set := hostState()
	for _, want := range []string{"inet vit-c", "bridge vit-c", "10.197.160.0/24", "fd99:197:0:160::/64", "10.197.161.0/24",
		"10.197.160.10 dev vtup", "fd99:197:0:160::10 dev vtup", "vtbrc", "ip_forward=1", "all/forwarding=1", "proxy_ndp=1"} {
		if !strings.Contains(set, want) {
			t.Fatalf("the host set-up lacks %q; the test would prove nothing:\n%s", want, set)
		}
	}

	// Refused while VEs run, naming them, and nothing changes.
	res := e.expect(32, "host", "cleanup")
	if !strings.Contains(res.stderr, r) || !strings.Contains(res.stderr, b) {
		t.Errorf("the refusal does not name the running VEs %s and %s:\n%s", r, b, res)
	}
	if now := hostState(); now != set {
		t.Errorf("a refused cleanup changed the host:\nbefore:\n%s\nafter:\n%s", set, now)
	}

	e.must("stop", r)
	e.must("stop", b)
	// A proxy entry that a crash left behind (stop removes the VE's own).
	mustNS(t, ns, "ip", "neigh", "add", "proxy", "10.197.160.99", "dev", "vtup")
	var got struct {
		Tables, Routes, Proxies, Bridges []string
		Sysctls                          []struct{ Name, From, To string }
	}
	decode(t, e.must("host", "cleanup", "--json").stdout, &got)
	if len(got.Tables) != 2 || len(got.Routes) != 3 || !slices.Contains(got.Proxies, "10.197.160.99 dev vtup") ||
		!slices.Equal(got.Bridges, []string{"vtbrc"}) || len(got.Sysctls) != 3 {
		t.Errorf("cleanup reported %+v; want 2 tables, 3 routes, the stale proxy entry, bridge vtbrc, 3 sysctls", got)
	}
	after := hostState()
	for _, gone := range []string{"vit-c", "10.197.160.0/24", "fd99:197:0:160::/64", "10.197.161.0/24", "10.197.160.99", "vtbrc"} {
		if strings.Contains(after, gone) {
			t.Errorf("%q is still on the host after cleanup:\n%s", gone, after)
		}
	}
	for _, s := range sysctls {
		if v := strings.TrimSpace(mustNS(t, ns, "cat", s)); v != before[s] {
			t.Errorf("%s is %s after cleanup, was %s before vectl", s, v, before[s])
		}
	}
	if out := e.must("host", "cleanup").stdout; strings.TrimSpace(out) != "nothing to clean up" {
		t.Errorf("second cleanup: %q, want nothing to clean up", out)
	}

	// A VE started afterwards sets everything up again.
	e.must("start", r)
	if !e.reaches(r, "10.197.160.1") {
		t.Error("a VE started after cleanup does not reach its host")
	}
	e.must("stop", r)
	e.must("host", "cleanup")
}

// TestCgroupParent: two instances with their own --cgroup-parent run a VE of the same id side
// by side, each in its own cgroup with its own limit; a bad parent exits 21 and makes nothing.
func TestCgroupParent(t *testing.T) {
	id := uniqueID(t)
	base := fmt.Sprintf("vectl-it-%d", os.Getpid())
	var envs []*env
	for i, ram := range []string{"128M", "192M"} {
		e := newEnv(t)
		e.cgroupParent = fmt.Sprintf("/%s-%d", base, i)
		envs = append(envs, e)
		tmpl := e.importBusybox()
		e.must("create", id, "--ostemplate", tmpl, "--ram", ram)
		e.must("start", id, "--wait", "--timeout", "60")
	}
	// Remove the parents in every hierarchy once the VEs are gone. Cleanups run last
	// registered first, so this one runs before the envs' and stops the VEs itself.
	t.Cleanup(func() {
		for _, e := range envs {
			e.vectl("stop", id, "--fast")
		}
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + base + "-*")
		more, _ := filepath.Glob("/sys/fs/cgroup/" + base + "-*")
		for _, d := range append(dirs, more...) {
			os.Remove(d)
		}
	})
	memLimit := func(parent string) string {
		p := filepath.Join("/sys/fs/cgroup/memory", parent, id, "memory.limit_in_bytes")
		if cgroupV2() {
			p = filepath.Join("/sys/fs/cgroup", parent, id, "memory.max")
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("the VE's cgroup under %s: %v", parent, err)
		}
		return strings.TrimSpace(string(b))
	}
	if a, b := memLimit(envs[0].cgroupParent), memLimit(envs[1].cgroupParent); a != "134217728" || b != "201326592" {
		t.Fatalf("memory limits %s and %s", a, b)
	}
	for _, e := range envs {
		if got := e.must("status", id).stdout; !strings.Contains(got, "running") {
			t.Fatalf("%s: %s", e.cgroupParent, got)
		}
		if got := e.out(id, "cat", "/proc/self/cgroup"); !strings.Contains(got, "/") {
			t.Fatalf("exec in the VE: %q", got)
		}
	}
	envs[0].must("stop", id)
	if got := envs[1].must("status", id).stdout; !strings.Contains(got, "running") {
		t.Fatalf("stopping one instance's VE stopped the other's: %s", got)
	}
	envs[1].must("stop", id)

	e := envs[0]
	for _, bad := range []string{"relative", "/", "/a/../b"} {
		r := e.vectl("--cgroup-parent", bad, "create", uniqueID(t), "--ostemplate", busyboxName)
		if r.code != 21 || !strings.Contains(r.stderr, "cgroup parent") {
			t.Fatalf("--cgroup-parent %q:\n%s", bad, r)
		}
	}
	if r := e.vectl("--cgroup-manager", "systemd", "--cgroup-parent", "/a/b", "list"); r.code != 21 {
		t.Fatalf("systemd driver with a nested parent:\n%s", r)
	}
}
