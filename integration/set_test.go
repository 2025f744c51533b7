//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSetAllOrNothing (issue 15): a set on a running VE whose middle step fails undoes the
// steps already applied. Here the host name and the memory limit are applied, then the new
// bridged interface cannot be attached (no CNI plugin where --cni-path points): the VE's
// host name (live and in its files), its memory limit, its interfaces and addresses and its
// config are as before, and the error names what was attempted. The same set then works
// with the plugins, and --json reports what it did.
func TestSetAllOrNothing(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	id, ip, bip := uniqueID(t), testIP("4"), testIP("b4")
	e.must("create", id, "--ostemplate", e.importBusybox(), "--hostname", "before.example", "--ipadd", ip, "--ram", "256M")
	e.must("start", id, "--wait")
	cfgPath := filepath.Join(e.root, "ve", id, "config.json")
	cfgBefore, _ := os.ReadFile(cfgPath)
	state := func() string {
		return strings.Join([]string{
			e.out(id, "hostname"), e.out(id, "cat", "/etc/hostname"), e.out(id, "cat", "/etc/hosts"),
			e.out(id, "ip", "-o", "addr"),
			strings.TrimSpace(string(mustRead(t, filepath.Join(veCgroupDir("memory", id), memLimitFile())))),
		}, "\n")
	}
	before := state()
	vethsBefore := hostVeths()

	r := e.vectl("--cni-path", t.TempDir(), "set", id, "--hostname", "after.example", "--ram", "512M",
		"--netif_add", "eth1,bridge="+testBridge, "--ipadd", bip, "--save")
	if r.code == 0 {
		t.Fatalf("set with a failing interface attach succeeded:\n%s", r)
	}
	for _, want := range []string{"hostname", "ram", "netif", "eth1", "nothing was changed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, r)
		}
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("the error is not one line:\n%s", r)
	}
	if after := state(); after != before {
		t.Errorf("the failed set left the VE changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if cfg, _ := os.ReadFile(cfgPath); string(cfg) != string(cfgBefore) {
		t.Errorf("the failed set changed the config:\n%s", cfg)
	}
	for v := range hostVeths() {
		if !vethsBefore[v] {
			t.Errorf("veth %s left on the host", v)
		}
	}

	out := e.must("set", id, "--hostname", "after.example", "--ram", "512M",
		"--netif_add", "eth1,bridge="+testBridge, "--ipadd", bip, "--save", "--json").stdout
	var res struct {
		ID             string
		Live, Stored   []string
		Saved, Running bool
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("set --json: %v\n%s", err, out)
	}
	if res.ID != id || !res.Saved || !res.Running || !slices.Contains(res.Live, "hostname") ||
		!slices.Contains(res.Live, "netif") || !slices.Contains(res.Live, "ram") {
		t.Errorf("set --json = %+v", res)
	}
	if got := e.out(id, "hostname"); got != "after.example" {
		t.Errorf("host name after the good set: %q", got)
	}
	if !strings.Contains(e.out(id, "ip", "-o", "addr", "show", "eth1"), bip) {
		t.Errorf("eth1 lacks %s after the good set", bip)
	}
}

func memLimitFile() string {
	if cgroupV2() {
		return "memory.max"
	}
	return "memory.limit_in_bytes"
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
