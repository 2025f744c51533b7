package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestUnlink: the VE's end of a veth is gone from its namespace when unlink returns (what
// lets CNI DEL's plugin find it gone), and both ends are once the returned function has
// waited; a missing interface is nothing to do.
func TestUnlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace and a veth pair needs root (run as root: make check)")
	}
	path := filepath.Join(t.TempDir(), "ns")
	if err := PinNetns(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnpinNetns(path) })
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	host := fmt.Sprintf("vtunl%d", os.Getpid()%100000)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(host); err == nil {
			netlink.LinkDel(l)
		}
	})
	h, err := inNetns(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.LinkByName("eth0"); err != nil {
		t.Fatalf("the VE's end before unlink: %v", err)
	}

	wait := unlink(h, path, "eth0")
	if _, err := h.LinkByName("eth0"); !errors.As(err, &netlink.LinkNotFoundError{}) {
		t.Errorf("the VE's end is still found when unlink returned: %v", err)
	}
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(host); !errors.As(err, &netlink.LinkNotFoundError{}) {
		t.Errorf("the host's end %s is still there after the deletion: %v", host, err)
	}
	if err := wait(); err != nil {
		t.Errorf("a second wait: %v", err)
	}

	if err := unlink(h, path, "eth0")(); err != nil {
		t.Errorf("unlink of a missing interface: %v", err)
	}
}
