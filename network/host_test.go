package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostRecordFirstChangeWins (issue 14): the value a sysctl had before the first vectl
// changed it is what cleanup restores, whichever instance changes it again later.
func TestHostRecordFirstChangeWins(t *testing.T) {
	dir := t.TempDir()
	sysctl := filepath.Join(t.TempDir(), "ip_forward")
	if err := os.WriteFile(sysctl, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Network{hostDir: dir}
	b := &Network{hostDir: dir} // another instance on the same host
	if a.vectlChanged(sysctl) {
		t.Fatal("vectlChanged before any change")
	}
	if err := a.setSysctl(sysctl, "1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(sysctl); strings.TrimSpace(string(got)) != "1" {
		t.Fatalf("sysctl is %q after setSysctl, want 1", got)
	}
	if err := b.setSysctl(sysctl, "1"); err != nil {
		t.Fatal(err)
	}
	if !b.vectlChanged(sysctl) {
		t.Fatal("the other instance does not see the change")
	}
	p, err := a.hostRecordPath()
	if err != nil {
		t.Fatal(err)
	}
	r, err := readHostRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Sysctls[sysctl]; c.Was != "0" || c.Set != "1" {
		t.Fatalf("record %+v, want was 0 set 1", c)
	}
	// An update that empties the record removes the file.
	if err := a.updateHostRecord(func(r *hostRecord) bool { delete(r.Sysctls, sysctl); return true }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("empty record left at %s: %v", p, err)
	}
}

// TestAdoptMarker: a marker an older vectl left in its run directory becomes a record.
func TestAdoptMarker(t *testing.T) {
	n := &Network{hostDir: t.TempDir()}
	marker := filepath.Join(t.TempDir(), "forwarding-v4-by-vectl")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.adoptMarker(sysctlForward4, marker); err != nil {
		t.Fatal(err)
	}
	if fileExists(marker) {
		t.Error("marker not removed")
	}
	if !n.vectlChanged(sysctlForward4) {
		t.Error("marker not adopted")
	}
}

func TestSysctlName(t *testing.T) {
	if got := sysctlName("/proc/sys/net/ipv6/conf/all/forwarding"); got != "net.ipv6.conf.all.forwarding" {
		t.Fatal(got)
	}
}
