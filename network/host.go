package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/store"
)

// DefaultHostStateDir holds what vectl records about the host's own settings before it
// changes them. Every vectl instance on the host (whatever its --root, --run-dir or
// --firewall-table) shares it, because the settings are the host's, not an instance's; it
// is under /run because the settings themselves do not survive a reboot either.
const DefaultHostStateDir = "/run/vectl/host"

// hostLockTimeout bounds the wait for another vectl updating the host record: each update
// is a read and an atomic write.
const hostLockTimeout = 10 * time.Second

// hostRecord is what vectl changed in one network namespace of the host (in production, the
// host's own): the value each sysctl had before the first vectl changed it, and the bridges
// that a vectl's bridge plugin created. It is shared by every vectl instance there, so that
// the last one to clean up restores what the first one found.
type hostRecord struct {
	Sysctls map[string]sysctlChange `json:"sysctls,omitempty"`
	Bridges []string                `json:"bridges,omitempty"`
}

// sysctlChange is one changed sysctl: the value before vectl and the value vectl wrote. A
// sysctl is restored only while it still has the value vectl wrote: an admin's later
// change wins.
type sysctlChange struct {
	Was string `json:"was"`
	Set string `json:"set"`
}

// hostRecordPath names the record of the network namespace vectl runs in: one per
// namespace, since sysctls, routes and nftables tables are per namespace.
func (n *Network) hostRecordPath() (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		return "", fmt.Errorf("host record: %w", err)
	}
	return filepath.Join(n.hostDir, "net-"+strconv.FormatUint(st.Ino, 10)+".json"), nil
}

// readHostRecord reads the record; a missing one is empty.
func readHostRecord(path string) (hostRecord, error) {
	var r hostRecord
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// updateHostRecord changes the record under its lock. change returns false when it changed
// nothing; an empty record is removed.
func (n *Network) updateHostRecord(change func(r *hostRecord) bool) error {
	path, err := n.hostRecordPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(n.hostDir, 0o700); err != nil {
		return fmt.Errorf("host record: %w", err)
	}
	l, err := store.Acquire(path+".lock", hostLockTimeout)
	if err != nil {
		return fmt.Errorf("host record: %w", err)
	}
	defer l.Unlock()
	r, err := readHostRecord(path)
	if err != nil {
		return err
	}
	if !change(&r) {
		return nil
	}
	if len(r.Sysctls) == 0 && len(r.Bridges) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("host record: %w", err)
		}
		return l.Remove() // waiters retry on a fresh lock file
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return store.WriteFileAtomic(path, append(data, '\n'), 0o600)
}

// setSysctl writes value to a sysctl and records the value it had, unless a vectl already
// recorded one (the first change is the one to undo).
func (n *Network) setSysctl(path, value string) error {
	err := n.updateHostRecord(func(r *hostRecord) bool {
		cur, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		if _, ok := r.Sysctls[path]; ok {
			return false
		}
		if r.Sysctls == nil {
			r.Sysctls = map[string]sysctlChange{}
		}
		r.Sysctls[path] = sysctlChange{Was: strings.TrimSpace(string(cur)), Set: value}
		return true
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(value), 0)
}

// vectlChanged reports whether a vectl changed the sysctl at path and has not restored it.
func (n *Network) vectlChanged(path string) bool {
	p, err := n.hostRecordPath()
	if err != nil {
		return false
	}
	r, err := readHostRecord(p)
	if err != nil {
		return false
	}
	_, ok := r.Sysctls[path]
	return ok
}

// adoptMarker moves what an older vectl recorded in its run directory (a marker file: it
// turned the sysctl on from 0) into the host record.
func (n *Network) adoptMarker(sysctl, marker string) error {
	err := n.updateHostRecord(func(r *hostRecord) bool {
		if _, ok := r.Sysctls[sysctl]; ok {
			return false
		}
		if r.Sysctls == nil {
			r.Sysctls = map[string]sysctlChange{}
		}
		r.Sysctls[sysctl] = sysctlChange{Was: "0", Set: "1"}
		return true
	})
	if err != nil {
		return err
	}
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// recordBridge notes that a vectl's bridge plugin created bridge.
func (n *Network) recordBridge(bridge string) error {
	return n.updateHostRecord(func(r *hostRecord) bool {
		if slices.Contains(r.Bridges, bridge) {
			return false
		}
		r.Bridges = append(r.Bridges, bridge)
		return true
	})
}

// markLink puts a host interface that vectl made for a VE into LinkGroup.
func markLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if l.Attrs().Group == LinkGroup {
		return nil
	}
	if err := netlink.LinkSetGroup(l, int(LinkGroup)); err != nil {
		return fmt.Errorf("interface group of %s: %w", name, err)
	}
	return nil
}

// HostCleanup is what CleanupHost removed or restored, and what it left and why.
type HostCleanup struct {
	// Tables are the nftables tables removed ("inet vectl").
	Tables []string `json:"tables"`
	// Routes are the pools' unreachable routes removed ("unreachable 10.199.0.0/16 metric 4000").
	Routes []string `json:"routes"`
	// Proxies are the proxy ARP/NDP entries removed ("10.199.0.101 dev eth0").
	Proxies []string `json:"proxies"`
	// Bridges are the pools' bridges removed: those a vectl's plugin created, once empty.
	Bridges []string `json:"bridges"`
	// Sysctls are the sysctls set back to the values they had before vectl.
	Sysctls []SysctlRestore `json:"sysctls"`
	// Kept says what was left in place, and why.
	Kept []string `json:"kept"`
}

// SysctlRestore is one sysctl set back.
type SysctlRestore struct {
	Name string `json:"name"` // as sysctl(8) names it: net.ipv4.ip_forward
	From string `json:"from"`
	To   string `json:"to"`
}

// CleanupHost undoes this instance's host-wide network set-up: its nftables tables, the
// unreachable routes of its pools, proxy ARP/NDP entries for pool addresses on its neighbour
// devices, and the empty bridges of its pools that a vectl created. The sysctls vectl changed
// (forwarding, proxy_ndp) are set back to their recorded values once no other vectl
// instance's tables remain in the namespace; until then they stay, and Kept says which
// instances hold them. The caller makes sure none of the instance's VEs runs. Running it
// twice is not an error: the second run finds nothing.
func (n *Network) CleanupHost() (*HostCleanup, error) {
	res := &HostCleanup{Tables: []string{}, Routes: []string{}, Proxies: []string{}, Bridges: []string{},
		Sysctls: []SysctlRestore{}, Kept: []string{}}
	var errs []error
	tables, err := n.fw.Tables()
	if err != nil {
		return nil, err
	}
	if len(tables) > 0 {
		if err := n.fw.Delete(); err != nil {
			return nil, err
		}
		res.Tables = tables
	}
	hh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer hh.Close()
	for _, p := range n.cfg.Pools {
		fam := netlink.FAMILY_V4
		if p.Subnet.Addr().Is6() {
			fam = netlink.FAMILY_V6
		}
		routes, err := retryDump(func() ([]netlink.Route, error) {
			return hh.RouteListFiltered(fam, &netlink.Route{Dst: ipNet(p.Subnet), Table: unix.RT_TABLE_MAIN},
				netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("routes of pool %s: %w", p.Subnet, err))
			continue
		}
		for _, r := range routes {
			if r.Type != unix.RTN_UNREACHABLE || r.Priority != poolRouteMetric {
				continue
			}
			if err := hh.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("unreachable route for pool %s: %w", p.Subnet, err))
				continue
			}
			res.Routes = append(res.Routes, fmt.Sprintf("unreachable %s metric %d", p.Subnet, poolRouteMetric))
		}
	}
	for _, dev := range n.cfg.NeighbourDevs {
		l, err := hh.LinkByName(dev)
		if err != nil {
			continue // no device, no entries
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			neighs, err := retryDump(func() ([]netlink.Neigh, error) {
				return hh.NeighProxyList(l.Attrs().Index, fam)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("proxy entries on %s: %w", dev, err))
				continue
			}
			for _, nb := range neighs {
				a, ok := netip.AddrFromSlice(nb.IP)
				if !ok {
					continue
				}
				if _, in := n.cfg.PoolOf(a.Unmap()); !in {
					continue
				}
				if err := hh.NeighDel(&nb); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("proxy entry %s on %s: %w", a, dev, err))
					continue
				}
				res.Proxies = append(res.Proxies, fmt.Sprintf("%s dev %s", a.Unmap(), dev))
			}
		}
	}
	others, err := n.fw.OtherInstances()
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	err = n.updateHostRecord(func(r *hostRecord) bool {
		changed := false
		for _, b := range n.poolBridges() {
			if !slices.Contains(r.Bridges, b) {
				continue
			}
			gone, err := removeEmptyBridge(hh, b)
			switch {
			case err != nil:
				errs = append(errs, err)
				continue
			case !gone:
				res.Kept = append(res.Kept, "bridge "+b+": it has ports that vectl did not make")
				continue
			}
			res.Bridges = append(res.Bridges, b)
			r.Bridges = slices.DeleteFunc(r.Bridges, func(x string) bool { return x == b })
			changed = true
		}
		if len(r.Sysctls) == 0 {
			return changed
		}
		if len(others) > 0 {
			res.Kept = append(res.Kept, fmt.Sprintf("sysctls %s: the vectl instances with firewall tables %s still use them",
				strings.Join(sysctlNames(r.Sysctls), ", "), strings.Join(others, ", ")))
			return changed
		}
		for _, path := range slices.Sorted(maps.Keys(r.Sysctls)) {
			c := r.Sysctls[path]
			cur, err := os.ReadFile(path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				// The interface of a per-device sysctl is gone, and its setting with it.
			case err != nil:
				errs = append(errs, err)
				continue
			case strings.TrimSpace(string(cur)) != c.Set:
				res.Kept = append(res.Kept, fmt.Sprintf("sysctl %s: it is %s now, not the %s vectl set; left as it is",
					sysctlName(path), strings.TrimSpace(string(cur)), c.Set))
			default:
				if err := os.WriteFile(path, []byte(c.Was), 0); err != nil {
					errs = append(errs, fmt.Errorf("restore %s: %w", sysctlName(path), err))
					continue
				}
				res.Sysctls = append(res.Sysctls, SysctlRestore{Name: sysctlName(path), From: c.Set, To: c.Was})
			}
			delete(r.Sysctls, path)
			changed = true
		}
		return changed
	})
	if err != nil {
		errs = append(errs, err)
	}
	return res, errors.Join(errs...)
}

// poolBridges lists the bridges of the instance's pools.
func (n *Network) poolBridges() []string {
	var out []string
	for _, p := range n.cfg.Pools {
		if p.Bridge != "" && !slices.Contains(out, p.Bridge) {
			out = append(out, p.Bridge)
		}
	}
	return out
}

// removeEmptyBridge deletes a bridge that has no ports. A missing bridge counts as removed.
func removeEmptyBridge(hh *netlink.Handle, name string) (bool, error) {
	br, err := hh.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("bridge %s: %w", name, err)
	}
	links, err := retryDump(hh.LinkList)
	if err != nil {
		return false, fmt.Errorf("bridge %s: %w", name, err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return false, nil
		}
	}
	if err := hh.LinkDel(br); err != nil {
		return false, fmt.Errorf("remove bridge %s: %w", name, err)
	}
	return true, nil
}

// sysctlName turns /proc/sys/net/ipv4/ip_forward into net.ipv4.ip_forward.
func sysctlName(path string) string {
	return strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
}

func sysctlNames(m map[string]sysctlChange) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		out = append(out, sysctlName(p))
	}
	return out
}
