package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pssMiB sums the proportional set size of a process (0 when it is gone).
func pssMiB(pid int) float64 {
	kb := keyValue(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss", ":")
	v, _ := strconv.ParseFloat(strings.TrimSuffix(kb, " kB"), 64)
	return v / 1024
}

// ppid returns the parent of pid (0 when it is gone).
func ppid(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func cmdline(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(data), "\x00", " ")
}

// vePids lists the processes in a VE's cgroup (the bench's VEs are in vectl-bench/ve/ID of
// every hierarchy), including its sub-cgroups.
func vePids(id string) []int {
	for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		dir := filepath.Join(root, veCgroupParent, id)
		if !fileExists(filepath.Join(dir, "cgroup.procs")) {
			continue
		}
		var pids []int
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return nil
			}
			data, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(data)) {
				if n, err := strconv.Atoi(f); err == nil {
					pids = append(pids, n)
				}
			}
			return nil
		})
		return pids
	}
	return nil
}

// veInit returns the VE's init: the process of its cgroup whose parent is outside it.
func veInit(id string) int {
	pids := vePids(id)
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	for _, p := range pids {
		if pp := ppid(p); pp != 0 && !in[pp] {
			return p
		}
	}
	return 0
}

// veMonitor returns the pid of the VE's monitor once it rests in its idle loop.
func veMonitor(id string) (int, error) {
	var mon int
	ok := waitFor(5*time.Second, 20*time.Millisecond, func() bool {
		init := veInit(id)
		if init == 0 {
			return false
		}
		mon = ppid(init)
		return strings.HasPrefix(cmdline(mon), "vectl __monitor-idle ")
	})
	if !ok {
		return 0, fmt.Errorf("VE %s: no idle monitor (parent of its init: %q)", id, cmdline(mon))
	}
	return mon, nil
}

// monitorPss samples the PSS of a VE's idle monitor a few times and returns the median.
func (b *bench) monitorPss(id string) (float64, error) {
	mon, err := veMonitor(id)
	if err != nil {
		return 0, err
	}
	time.Sleep(200 * time.Millisecond)
	var xs []float64
	for range 5 {
		xs = append(xs, pssMiB(mon))
		time.Sleep(50 * time.Millisecond)
	}
	return distOf(xs).Median, nil
}

// foregroundMonitorPss starts a busybox VE as a systemd unit does (start --foreground, no
// terminal) and returns the PSS of its monitor, that process, once it rests in the idle loop.
func (b *bench) foregroundMonitorPss() (float64, error) {
	id := b.id("fgmon")
	if err := b.create(id, busyboxName); err != nil {
		return 0, err
	}
	defer b.destroy(id)
	c := command(b.v.argv("start", "--foreground", id))
	c.Stdout, c.Stderr = b.cmdLog, b.cmdLog
	if err := c.Start(); err != nil {
		return 0, err
	}
	defer func() {
		b.v.do("stop", "--fast", id)
		c.Wait()
	}()
	mon, err := veMonitor(id) // it rests a second after its boot
	if err != nil {
		return 0, err
	}
	if mon != c.Process.Pid {
		return 0, fmt.Errorf("VE %s: its monitor is %d, not the foreground vectl %d", id, mon, c.Process.Pid)
	}
	return b.monitorPss(id)
}

// meminfo reads /proc/meminfo in KiB.
func meminfo() map[string]float64 {
	m := map[string]float64{}
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		m[k] = f
	}
	return m
}

// memRow is the host memory per idle VE at density, in MiB.
type memRow struct {
	Mode        string  `json:"mode"`
	VEs         int     `json:"ves"`
	VEPss       float64 `json:"ve_pss_mib"`      // the VE's own processes
	MonitorPss  float64 `json:"monitor_pss_mib"` // its monitor
	Monitors    int     `json:"monitors"`
	Slab        float64 `json:"slab_mib"`        // kernel slab growth
	PageTables  float64 `json:"page_tables_mib"` // page table growth
	KernelStack float64 `json:"kernel_stack_mib"`
	Available   float64 `json:"mem_available_drop_mib"` // MemAvailable drop (noisy on a shared host)
	Total       float64 `json:"total_mib"`              // PSS + slab + page tables + kernel stacks
}

func (b *bench) memRow(mode string, ids []string, before, after map[string]float64) memRow {
	n := float64(len(ids))
	r := memRow{Mode: mode, VEs: len(ids)}
	for _, id := range ids {
		pids := vePids(id)
		for _, p := range pids {
			r.VEPss += pssMiB(p)
		}
		if init := veInit(id); init != 0 {
			if mon := ppid(init); strings.HasPrefix(cmdline(mon), "vectl __monitor") {
				r.MonitorPss += pssMiB(mon)
				r.Monitors++
			}
		}
	}
	d := func(k string) float64 { return (after[k] - before[k]) / 1024 / n }
	r.VEPss /= n
	r.MonitorPss /= n
	r.Slab = d("Slab")
	r.PageTables = d("PageTables")
	r.KernelStack = d("KernelStack")
	r.Available = -d("MemAvailable")
	r.Total = r.VEPss + r.MonitorPss + r.Slab + r.PageTables + r.KernelStack
	return r
}

// benchDensity creates N busybox VEs in a root of their own, times list -a once 200 exist,
// starts them all with monitors and then without, measuring host memory per VE each time,
// and times stats --json once 100 run.
func (b *bench) benchDensity() error {
	v := b.dens
	n := b.opts.density
	listN, statsN := min(200, n), min(100, n)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.id(fmt.Sprintf("d%03d", i))
	}
	scale := func(have, want int) string {
		if have < want {
			return fmt.Sprintf("%d VEs here, the target is for %d", have, want)
		}
		return ""
	}
	var errs []error
	defer func() {
		b.progress("density: removing %d VEs", n)
		if err := v.removeAll(); err != nil {
			b.failed = true
			b.note("density cleanup: %v", err)
		}
	}()
	timedAll := func(key string, args func(id string) []string, at int, hook func()) error {
		for i, id := range ids {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			d, err := v.timed(args(id)...)
			if err != nil {
				return err
			}
			b.record(key, ms(d))
			if i+1 == at && hook != nil {
				hook()
			}
		}
		return nil
	}
	repeat := func(key string, passes int, args ...string) {
		vs := []*variant{{name: "vectl " + strings.Join(args, " "), vectl: true, pass: func(p int, rec recorder) error {
			d, err := v.timed(args...)
			if err == nil {
				rec(key, d)
			}
			return err
		}}}
		b.interleave(passes, vs...)
	}

	b.progress("density: creating %d VEs", n)
	err := timedAll("dens/create", func(id string) []string {
		return []string{"create", id, "--ostemplate", busyboxName}
	}, listN, func() { repeat("list/vectl", b.passes(15), "list", "-a") })
	if err != nil {
		return err
	}
	b.compare(cmp{group: "density", name: fmt.Sprintf("list -a over %d VEs (created, stopped)", listN),
		key: "list/vectl", command: "vectl list -a", target: valueMax(50, "ms").as(fmt.Sprintf("list -a, %d VEs", listN)), note: scale(listN, 200)})

	for _, mode := range []struct {
		name, key string
		args      []string
	}{{"with monitor", "mon", nil}, {"without monitor", "nomon", []string{"--no-monitor"}}} {
		b.progress("density: starting %d VEs %s", n, mode.name)
		time.Sleep(2 * time.Second) // let the kernel finish freeing what earlier VEs held
		before := meminfo()
		err := timedAll("dens/start-"+mode.key, func(id string) []string {
			return append([]string{"start", id}, mode.args...)
		}, statsN, func() {
			if mode.key == "nomon" {
				repeat("stats/vectl", b.passes(15), "stats", "--json")
			}
		})
		if err != nil {
			errs = append(errs, err)
			break
		}
		time.Sleep(2 * time.Second) // let the monitors settle into their idle loop
		if mode.key == "mon" {
			for _, id := range ids[:min(5, n)] {
				if _, err := veMonitor(id); err != nil {
					errs = append(errs, err)
				}
			}
		}
		b.memory = append(b.memory, b.memRow(mode.name, ids, before, meminfo()))
		repeat("listrun-"+mode.key+"/vectl", b.passes(10), "list", "-a")
		b.progress("density: stopping %d VEs", n)
		if err := timedAll("dens/stop-"+mode.key, func(id string) []string { return []string{"stop", "--fast", id} }, 0, nil); err != nil {
			errs = append(errs, err)
			break
		}
	}
	b.compare(cmp{group: "density", name: fmt.Sprintf("stats --json over %d running VEs (no monitor)", statsN),
		key: "stats/vectl", command: "vectl stats --json", target: valueMax(150, "ms").as(fmt.Sprintf("stats --json, %d VEs", statsN)), note: scale(statsN, 100)})
	b.compare(cmp{group: "density", name: fmt.Sprintf("list -a over %d running VEs", n), key: "listrun-mon/vectl",
		command: "vectl list -a", peerKey: "listrun-nomon/vectl", peer: "same, no monitors"})
	b.compare(cmp{group: "density", name: fmt.Sprintf("create, each of %d busybox VEs", n), key: "dens/create",
		command: "vectl create"})
	b.compare(cmp{group: "density", name: fmt.Sprintf("start, each of %d busybox VEs", n), key: "dens/start-mon",
		command: "vectl start", peerKey: "dens/start-nomon", peer: "vectl start --no-monitor"})
	b.compare(cmp{group: "density", name: fmt.Sprintf("stop --fast, each of %d busybox VEs", n), key: "dens/stop-mon",
		command: "vectl stop --fast", peerKey: "dens/stop-nomon", peer: "same, no monitors"})
	if len(b.memory) == 2 {
		b.record("mem/vectl", b.memory[0].Total)
		b.record("mem/nomon", b.memory[1].Total)
		b.compare(cmp{group: "density", name: fmt.Sprintf("host memory per idle busybox VE (%d VEs)", n),
			key: "mem/vectl", command: "with monitor", peerKey: "mem/nomon", peer: "without monitor", unit: "MiB",
			note: "PSS of the VE's processes and its monitor + slab, page table and kernel stack growth"})
		b.record("monpss-dens/vectl", b.memory[0].MonitorPss)
		b.compare(cmp{group: "density", name: fmt.Sprintf("PSS of an idle monitor among %d", n),
			key: "monpss-dens/vectl", command: "vectl __monitor-idle", unit: "MiB"})
	}
	return errors.Join(errs...)
}

// benchDebianDensity boots 20 Debian systemd VEs from one template with user namespaces of
// their own, then 20 privileged ones, and compares host memory per idle VE: the idmapped
// lower layer must keep the template's pages shared between VEs of different id ranges.
func (b *bench) benchDebianDensity() error {
	n := 20
	if b.opts.quick {
		n = 4
	}
	var errs []error
	totals := map[string]float64{}
	for _, mode := range []struct{ name, key, userns string }{
		{"Debian systemd, own user namespace", "userns", "yes"}, {"Debian systemd, privileged", "priv", "no"}} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = b.id(fmt.Sprintf("dd%s%02d", mode.key[:1], i))
		}
		err := func() error {
			defer b.destroy(ids...)
			for _, id := range ids {
				if err := b.create(id, debianName, "--userns", mode.userns); err != nil {
					return err
				}
			}
			b.progress("debian density: starting %d VEs (%s)", n, mode.name)
			time.Sleep(2 * time.Second)
			before := meminfo()
			for _, id := range ids {
				if _, err := b.v.do("start", id, "--wait", "--timeout", "180"); err != nil {
					return err
				}
			}
			time.Sleep(10 * time.Second) // let systemd's start-up jobs and the monitors settle
			r := b.memRow(mode.name, ids, before, meminfo())
			b.memory = append(b.memory, r)
			totals[mode.key] = r.Total
			for _, id := range ids {
				if _, err := b.v.do("stop", "--fast", id); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, err)
			break
		}
	}
	if len(totals) == 2 {
		b.record("memdeb/vectl", totals["userns"])
		b.record("memdeb/priv", totals["priv"])
		b.compare(cmp{group: "density", name: fmt.Sprintf("host memory per idle Debian systemd VE (%d VEs, one template)", n),
			key: "memdeb/vectl", command: "own user namespace", peerKey: "memdeb/priv", peer: "privileged", unit: "MiB",
			target: ratioMax(1.05).as("Debian memory, userns"),
			note:   "PSS of the VE's processes and its monitor + slab, page table and kernel stack growth"})
	}
	return errors.Join(errs...)
}
