package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// machineInfo describes the host and the versions of everything measured.
type machineInfo struct {
	Date     string            `json:"date"`
	Host     string            `json:"hostname"`
	OS       string            `json:"os"`
	Kernel   string            `json:"kernel"`
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	RAM      string            `json:"ram"`
	Cgroups  string            `json:"cgroups"`
	Vectl    string            `json:"vectl"`
	Versions map[string]string `json:"versions"`
	// LoadBefore and LoadAfter are the load averages around the run: the host is shared.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

// loadavg returns the 1, 5 and 15 minute load averages.
func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func (b *bench) machineInfo() machineInfo {
	m := machineInfo{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Cores: runtime.NumCPU(),
		Versions: map[string]string{}, LoadBefore: loadavg()}
	m.Host, _ = os.Hostname()
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	m.OS = keyValue("/etc/os-release", "PRETTY_NAME", "=")
	m.CPU = keyValue("/proc/cpuinfo", "model name", ":")
	if kb, err := strconv.ParseFloat(strings.Fields(keyValue("/proc/meminfo", "MemTotal", ":") + " 0")[0], 64); err == nil {
		m.RAM = fmt.Sprintf("%.1f GiB", kb/1024/1024)
	}
	switch {
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		m.Cgroups = "v2 (unified)"
	case fileExists("/sys/fs/cgroup/unified/cgroup.controllers"):
		m.Cgroups = "v1 (hybrid, cgroup2 at /sys/fs/cgroup/unified)"
	default:
		m.Cgroups = "v1"
	}
	repo := findRepo()
	if out, err := exec.Command("git", "-C", repo, "describe", "--always", "--dirty").Output(); err == nil {
		m.Vectl = strings.TrimSpace(string(out))
	} else if out, err := exec.Command(b.opts.vectl, "--version").Output(); err == nil {
		m.Vectl = strings.TrimSpace(strings.TrimPrefix(string(out), "vectl version "))
	}
	for name, argv := range map[string][]string{
		"runc": {"runc", "--version"}, "crun": {"crun", "--version"}, "lxc": {"lxc-start", "--version"},
		"systemd-nspawn": {"systemd-nspawn", "--version"}, "iperf3": {"iperf3", "--version"},
		"gnuplot": {"gnuplot", "--version"},
		"busybox": {"/bin/busybox"},
	} {
		out, _ := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); line != "" {
			if name == "lxc" {
				line = "lxc " + line // lxc-start --version prints the number alone
			}
			m.Versions[name] = strings.TrimSpace(line)
		}
	}
	return m
}

// keyValue returns the value of the first "key<sep>value" line of a file.
func keyValue(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// The bench's address pool. Every VE address comes from it; before any VE starts, it is
// routed nowhere but to VEs (an unreachable route) and a guard drops any packet to it that
// would leave through an interface that is not a veth.
const (
	pool4      = "10.195.0.0/16"
	pool6      = "fd99:195::/64"
	fwTable    = "vectl-bench"
	guardTable = "vectl-bench-guard"

	networkJSON = `{"pools":[
  {"subnet":"` + pool4 + `","gateway":"10.195.0.1"},
  {"subnet":"` + pool6 + `","gateway":"fd99:195::1"}
]}
`
	guardRuleset = `table inet ` + guardTable + ` {
	chain output {
		type filter hook output priority 0; policy accept;
		ip daddr ` + pool4 + ` oifname != "veth*" oifname != "lo" counter drop
		ip6 daddr ` + pool6 + ` oifname != "veth*" oifname != "lo" counter drop
	}
	chain forward {
		type filter hook forward priority 0; policy accept;
		ip daddr ` + pool4 + ` oifname != "veth*" counter drop
		ip6 daddr ` + pool6 + ` oifname != "veth*" counter drop
	}
}
`
)

var forwardingSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

// setupNetwork installs the guard and the pool's unreachable routes. It refuses a host that
// already routes the pool somewhere.
func (b *bench) setupNetwork() error {
	for _, fam := range []struct{ flag, pool string }{{"-4", pool4}, {"-6", pool6}} {
		out, err := b.stdout("ip", fam.flag, "route", "show", "exact", fam.pool)
		if err != nil {
			return err
		}
		if out = strings.TrimSpace(out); out != "" && !strings.HasPrefix(out, "unreachable") {
			return fmt.Errorf("the host already routes %s (%s): the bench needs that pool for itself", fam.pool, out)
		}
	}
	b.onCleanup("network guard", func() error {
		var errs []error
		for _, t := range [][]string{{"inet", fwTable}, {"bridge", fwTable}, {"inet", guardTable}} {
			if exec.Command("nft", "list", "table", t[0], t[1]).Run() == nil {
				_, err := b.sh("nft", "delete", "table", t[0], t[1])
				errs = append(errs, err)
			}
		}
		for _, fam := range []struct{ flag, pool string }{{"-4", pool4}, {"-6", pool6}} {
			if out, _ := b.stdout("ip", fam.flag, "route", "show", "exact", fam.pool); strings.TrimSpace(out) != "" {
				_, err := b.sh("ip", fam.flag, "route", "del", "unreachable", fam.pool, "metric", "4000")
				errs = append(errs, err)
			}
		}
		for p, v := range b.sysctls {
			errs = append(errs, os.WriteFile(p, []byte(v), 0))
		}
		return errors.Join(errs...)
	})
	c := command([]string{"nft", "-f", "-"})
	c.Stdin = strings.NewReader(guardRuleset)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("nft guard: %v: %s", err, out)
	}
	if _, err := b.sh("ip", "-4", "route", "replace", "unreachable", pool4, "metric", "4000"); err != nil {
		return err
	}
	if _, err := b.sh("ip", "-6", "route", "replace", "unreachable", pool6, "metric", "4000"); err != nil {
		return err
	}
	b.netReady = true
	return nil
}

// cgroupMounts lists the mount points of the host's cgroup hierarchies.
func cgroupMounts() []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+1 < len(f) && (f[i+1] == "cgroup" || f[i+1] == "cgroup2") {
				out = append(out, f[4])
			}
		}
	}
	return out
}

// removeCgroupTree removes dir and the cgroups below it, deepest first. A cgroup that still
// has processes is left and reported.
func removeCgroupTree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// cleanup undoes everything the run made, in reverse order, then sweeps for leftovers:
// mounts and loop devices under the scratch directory, the peers' cgroups, processes still
// running from it, and finally the directory itself.
func (b *bench) cleanup() error {
	b.progress("cleaning up")
	var errs []error
	for i := len(b.undo) - 1; i >= 0; i-- {
		if err := b.undo[i].fn(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.undo[i].what, err))
		}
	}
	if m := mountsUnder(b.work); len(m) > 0 {
		errs = append(errs, fmt.Errorf("mounts left under %s: %v (unmounting)", b.work, m))
		for _, p := range m {
			exec.Command("umount", "-l", p).Run()
		}
	}
	if out, _ := exec.Command("losetup", "-a").Output(); len(out) > 0 {
		for _, line := range strings.Split(string(out), "\n") {
			if dev, rest, ok := strings.Cut(line, ":"); ok && strings.Contains(rest, b.work) {
				errs = append(errs, fmt.Errorf("loop device left: %s", line))
				exec.Command("losetup", "-d", dev).Run()
			}
		}
	}
	if now := devNullState(); now != b.devNull {
		errs = append(errs, fmt.Errorf("the host's /dev/null changed during the run: %s, was %s", now, b.devNull))
	}
	if pids := procsMentioning(b.work); len(pids) > 0 {
		errs = append(errs, fmt.Errorf("processes left running from %s: %v", b.work, pids))
	}
	for _, m := range cgroupMounts() {
		if err := removeCgroupTree(filepath.Join(m, cgBench)); err != nil {
			errs = append(errs, err)
		}
		if !b.hadVectlCg {
			os.Remove(filepath.Join(m, "vectl")) // only when empty, and only if we made it
		}
	}
	b.cmdLog.Close()
	if err := os.RemoveAll(b.work); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// procsMentioning lists processes whose command line contains s.
func procsMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(cmd), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// devNullState is the host's /dev/null's mode and owner: a container given it as a device
// must not be able to change them (cleanup compares them with the start).
func devNullState() string {
	fi, err := os.Stat("/dev/null")
	if err != nil {
		return err.Error()
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		return fi.Mode().String()
	}
	return fmt.Sprintf("%s %d:%d", fi.Mode(), st.Uid, st.Gid)
}

// settleBinaries puts the programs measured into the page cache the same way before every
// run: dropped, then read from start to end. How a binary got there moves its start-up: the
// same vectl took 100 to 140 more page faults per process (2 to 4 ms here) after it had been
// copied with cp, or evicted and faulted back in by execution, than after a sequential read
// or as the linker wrote it (its text then sits in larger page-cache folios, each fault maps
// more of it). Without this, two runs of one commit differed by up to 1.2x on start.
func (b *bench) settleBinaries() {
	paths := []string{b.opts.vectl}
	for _, p := range []string{"runc", "crun", "lxc-start", "lxc-attach", "lxc-stop", "lxc-execute", "lxc-copy",
		"lxc-cgroup", "systemd-nspawn", "curl", "tar"} {
		if lp, err := exec.LookPath(p); err == nil {
			paths = append(paths, lp)
		}
	}
	for _, p := range paths {
		if err := settle(p); err != nil {
			b.note("page cache of %s not settled: %v", p, err)
		}
	}
}

func settle(path string) error {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, f)
	return err
}
