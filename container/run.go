package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/userns"
	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	cgmanager "github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/container/nsjoin"
)

// Volatile per-VE paths under RunDir; a host reboot clears them, which means "stopped".
func (m *Manager) lcRoot() string              { return filepath.Join(m.opts.RunDir, "lc") }
func (m *Manager) netnsPath(id string) string  { return filepath.Join(m.opts.RunDir, "netns", id) }
func (m *Manager) runDir(id string) string     { return filepath.Join(m.opts.RunDir, "ve", id) }
func (m *Manager) runFile(id, n string) string { return filepath.Join(m.runDir(id), n) }

// Files in a VE's run directory.
const (
	runIDFile      = "run-id"      // identifies one start; a monitor only tears down its own run
	stoppingFile   = "stopping"    // set by stop before it signals the init
	monitorPIDFile = "monitor.pid" // "pid starttime" of the VE's monitor
	foregroundFile = "foreground"  // present while the monitor is a foreground vectl (start --foreground)
	consoleSock    = "console.sock"
	initTypeFile   = "init"    // init system detected at start (systemd, busybox, ...)
	seccompRecord  = "seccomp" // the compiled seccomp program the VE's processes run (package join)
	usernsFile     = "userns"  // a user-namespace VE's pinned user namespace
	devDir         = "dev"     // a user-namespace VE's device nodes while its container is made
	loadavgFile    = "loadavg" // the VE's load average, kept by its monitor (idle.Load)
)

// loadCgroupDir is the cgroup directory whose threads (with its descendants') make a VE's
// load: the unified hierarchy on v2; on v1 the devices hierarchy, which holds every task.
func (m *Manager) loadCgroupDir(id string) string {
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join("/sys/fs/cgroup", m.cgroupPath(id))
	}
	return filepath.Join("/sys/fs/cgroup/devices", m.cgroupPath(id))
}

// viewsDir holds a VE's /proc and /sys views (package idle, views.h).
const viewsDir = "views"

// viewsSpec is what the monitor's relay renders a VE's views from (idle.Relay.Views): their
// directory, the VE's memory, cpu, cpuset, cpuacct and blkio cgroup directories and its load
// average file.
func (m *Manager) viewsSpec(id string) string {
	dirs := []string{m.runFile(id, viewsDir)}
	for _, ctl := range []string{"memory", "cpu", "cpuset", "cpuacct", "blkio"} {
		if cgroups.IsCgroup2UnifiedMode() {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", m.cgroupPath(id)))
		} else {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", ctl, m.cgroupPath(id)))
		}
	}
	return strings.Join(append(dirs, m.runFile(id, loadavgFile)), "\n")
}

// The view (a file in viewsDir) each file a VE's views cover shows: {view, file}.
var viewMounts = [][2]string{
	{"meminfo", "/proc/meminfo"}, {"cpuinfo", "/proc/cpuinfo"},
	{"cpus", "/sys/devices/system/cpu/online"}, {"cpus", "/sys/devices/system/cpu/possible"},
	{"cpus", "/sys/devices/system/cpu/present"}, {"loadavg", "/proc/loadavg"},
	{"stat", "/proc/stat"}, {"swaps", "/proc/swaps"}, {"diskstats", "/proc/diskstats"},
}

// bindViews renders a VE's views once and has them bind-mounted over the files they cover;
// its monitor's relay renders them again whenever something opens one. They live on a small
// tmpfs of the VE's own, mounted until its teardown, so that the VE's mountinfo shows them as
// files of that tmpfs, not by their host path. With wb the init wrapper binds them
// (wrapperBinds), otherwise libcontainer does.
func (m *Manager) bindViews(id string, cfg *configs.Config, wb *wrapperBinds) error {
	dir := m.runFile(id, viewsDir)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if !layout.Mounted(dir) {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size=1m"); err != nil {
			return fmt.Errorf("the VE's /proc views: %w", err)
		}
	}
	if err := idle.RenderViews(m.viewsSpec(id)); err != nil {
		return err
	}
	wb.add(cfg, dir, "/dev/.vectl-views", viewMounts)
	return nil
}

// wrapperBinds are bind mounts of files that the init wrapper makes instead of libcontainer
// (nil: libcontainer makes them). libcontainer spends about a millisecond on each bind, with
// its checks; the wrapper one mount(2). libcontainer binds each source directory at a hidden
// path in the VE's /dev; the wrapper binds the files from there over their targets and
// removes the hidden binds before the VE's init runs. A dump must be told that the files'
// binds are external, which libcontainer would have done for its own: the VE's own CRIU
// configuration says so (ext-mount-map, written by writeVECriuConf). A restore's container is made
// without wrapperBinds: it lists every bind itself, as the dump has them.
type wrapperBinds struct {
	w    nsjoin.InitWrap
	conf string
}

// add binds the files of host directory dir (name, target in the VE) through inVE.
func (wb *wrapperBinds) add(cfg *configs.Config, dir, inVE string, files [][2]string) {
	if wb == nil {
		for _, f := range files {
			cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: filepath.Join(dir, f[0]), Destination: f[1],
				Device: "bind", Flags: unix.MS_BIND})
		}
		return
	}
	cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: dir, Destination: inVE, Device: "bind", Flags: unix.MS_BIND})
	for _, f := range files {
		wb.w.Binds = append(wb.w.Binds, [2]string{inVE + "/" + f[0], f[1]})
		wb.conf += "ext-mount-map " + f[1] + ":" + f[1] + "\n"
	}
	wb.w.Detach = append(wb.w.Detach, inVE)
}

// cgroupTreeLabel, among a container's labels, says that the init wrapper mounted its cgroup
// v1 tree (wrapperBinds.cgroupTree) and whether the controllers are writable: "rw" or "ro".
const cgroupTreeLabel = "org.vectl.cgroup-tree="

// cgroupTree hands the VE's cgroup v1 tree to the init wrapper, given the host's hierarchies
// (cgroups.GetCgroupMounts): libcontainer's cgroup mount, in a cgroup namespace a tmpfs and
// one mount per hierarchy, each through its checked path walks and re-opens (1 to 1.5 ms of
// its init's CPU per start here), and the name=systemd bind over it become the wrapper's
// mounts, a mkdir and a mount(2) each. name=systemd is then mounted writable itself instead
// of the VE's subtree bound writable over it: in the VE's cgroup namespace both show that
// subtree. A dump finds real cgroup mounts either way (libcontainer leaves a cgroup
// namespace's to CRIU); a restore's container is made without wrapperBinds and lists
// libcontainer's mounts. Nothing moves without a cgroup namespace or a cgroup mount in cfg,
// on cgroup v2 (one mount), or when another mount lies below /sys/fs/cgroup.
func (wb *wrapperBinds) cgroupTree(cfg *configs.Config, hierarchies []cgroups.Mount) {
	if !cfg.Namespaces.Contains(configs.NEWCGROUP) || len(hierarchies) == 0 || len(hierarchies) > nsjoin.MaxInitWrapCgroups {
		return
	}
	cg, sd := -1, -1
	for i, mnt := range cfg.Mounts {
		switch {
		case mnt.Device == "cgroup" && mnt.Destination == "/sys/fs/cgroup" && cg < 0:
			cg = i
		case mnt.Device == "bind" && mnt.Destination == "/sys/fs/cgroup/systemd" && sd < 0 &&
			strings.HasPrefix(mnt.Source, "/sys/fs/cgroup/systemd/"):
			sd = i
		case mnt.Destination == "/sys/fs/cgroup" || strings.HasPrefix(mnt.Destination, "/sys/fs/cgroup/"):
			return
		}
	}
	if cg < 0 || len(cfg.Mounts[cg].PropagationFlags) > 0 {
		return
	}
	rw := cfg.Mounts[cg].Flags&unix.MS_RDONLY == 0
	systemdRW := sd >= 0 && cfg.Mounts[sd].Flags&unix.MS_RDONLY == 0
	for _, h := range hierarchies {
		name := filepath.Base(h.Mountpoint)
		c := nsjoin.CgroupMount{Name: name, Source: "cgroup", Data: name, RW: rw}
		if name == "systemd" {
			c.Source, c.Data, c.RW = "systemd", "name=systemd", rw || systemdRW
		}
		wb.w.Cgroups = append(wb.w.Cgroups, c)
	}
	moved := cfg.Mounts[cg]
	var bind *configs.Mount
	if sd >= 0 {
		bind = cfg.Mounts[sd]
	}
	cfg.Mounts = slices.DeleteFunc(cfg.Mounts, func(m *configs.Mount) bool { return m == moved || m == bind })
	state := "ro"
	if rw {
		state = "rw"
	}
	cfg.Labels = append(cfg.Labels, cgroupTreeLabel+state)
}

// fileSystems hands the spec's tmpfs and mqueue mounts that libcontainer's init does not use
// itself (all but /dev: /run, /run/lock, /dev/shm, /dev/mqueue, /tmp) and the sysfs on /sys
// to the init wrapper, in their order: libcontainer makes each through the same checked walks
// and re-opens as a bind (about 0.2 ms of CPU each here), the wrapper with a mkdir of what is
// missing and a mount(2). They are file systems of the VE's own, which a dump finds as CRIU
// does any (libcontainer gives CRIU nothing for them either). The masked paths below a moved
// mount (/sys/firmware) go with it: libcontainer masks before the wrapper mounts. A mount
// stays libcontainer's when it has propagation flags or extensions, when the root is
// read-only (a missing target could not be made), when a read-only path lies below it, or
// when one of libcontainer's own mounts listed after it lies below it (the wrapper's would
// cover it). sysfs stays libcontainer's for a VE with a user namespace of its own, and for
// every VE of a vectl that runs in one (nested in a VE): after pivot_root the VE's mount
// namespace holds no sysfs, and the kernel lets a mount namespace that a user namespace owns
// mount one only where one is already fully visible.
func (wb *wrapperBinds) fileSystems(cfg *configs.Config) {
	wb.fileSystemsIn(cfg, userns.RunningInUserNS())
}

// fileSystemsIn is fileSystems, told whether vectl runs in a user namespace.
func (wb *wrapperBinds) fileSystemsIn(cfg *configs.Config, inUserNS bool) {
	if cfg.Readonlyfs {
		return
	}
	below := func(dir string) func(string) bool {
		prefix := strings.TrimSuffix(dir, "/") + "/"
		return func(p string) bool { return strings.HasPrefix(p, prefix) }
	}
	moves := map[*configs.Mount]bool{}
	masks := 0
	for _, m := range cfg.Mounts {
		fs := m.Device == "tmpfs" || m.Device == "mqueue" || m.Device == "sysfs" && !cfg.Namespaces.Contains(configs.NEWUSER) && !inUserNS
		if fs && m.Destination != "/dev" && filepath.IsAbs(m.Destination) &&
			len(m.PropagationFlags) == 0 && m.Extensions == 0 && m.ClearedFlags == 0 && m.Flags&unix.MS_REMOUNT == 0 &&
			!slices.ContainsFunc(cfg.ReadonlyPaths, below(m.Destination)) && len(moves) < nsjoin.MaxInitWrapMounts {
			if n := countFunc(cfg.MaskPaths, below(m.Destination)); masks+n <= nsjoin.MaxInitWrapMasks {
				moves[m] = true
				masks += n
			}
		}
	}
	// The wrapper mounts after every mount of libcontainer's: a move is safe unless one of
	// those, listed after it, lies below it (one listed before was covered anyway). From the
	// last mount back, kept lists the targets libcontainer still mounts after this one.
	var kept []string
	for _, m := range slices.Backward(cfg.Mounts) {
		if moves[m] && slices.ContainsFunc(kept, below(m.Destination)) {
			delete(moves, m)
		}
		if !moves[m] {
			kept = append(kept, m.Destination)
		}
	}
	if len(moves) == 0 {
		return
	}
	for _, m := range cfg.Mounts {
		if moves[m] {
			wb.w.Mounts = append(wb.w.Mounts, nsjoin.Mount{Target: filepath.Clean(m.Destination), Source: m.Source,
				FSType: m.Device, Data: m.Data, Flags: uint32(m.Flags)})
		}
	}
	movedMask := func(p string) bool {
		return slices.ContainsFunc(wb.w.Mounts, func(m nsjoin.Mount) bool { return below(m.Target)(p) })
	}
	for _, p := range cfg.MaskPaths {
		if movedMask(p) {
			wb.w.Masks = append(wb.w.Masks, p)
		}
	}
	cfg.MaskPaths = slices.DeleteFunc(slices.Clone(cfg.MaskPaths), movedMask)
	cfg.Mounts = slices.DeleteFunc(cfg.Mounts, func(m *configs.Mount) bool { return moves[m] })
}

// countFunc counts the elements of s that f accepts.
func countFunc[T any](s []T, f func(T) bool) int {
	n := 0
	for _, v := range s {
		if f(v) {
			n++
		}
	}
	return n
}

// writeVECriuConf writes the VE's own CRIU configuration (criuConf, the log level and the
// wrapper's binds, if any) to path in its run directory and names it in cfg, so that its
// dumps can be told more about it (dumpConf).
func (m *Manager) writeVECriuConf(cfg *configs.Config, wb *wrapperBinds, path string) error {
	conf := criuConf + m.criuVerbosity()
	if wb != nil {
		conf += wb.conf
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	setCriuConf(cfg, path)
	return nil
}

// setCriuConf names the CRIU configuration file of a container's dumps and restores (the
// label libcontainer hands to CRIU), in place of the one it names.
func setCriuConf(cfg *configs.Config, path string) {
	cfg.Labels = slices.DeleteFunc(cfg.Labels, func(l string) bool { return strings.HasPrefix(l, criuConfLabel) })
	cfg.Labels = append(cfg.Labels, criuConfLabel+path)
}

// criuConfLabel prefixes the label that names a container's CRIU configuration file.
const criuConfLabel = "org.criu.config="

// criuConfOf is the CRIU configuration file a container names ("" for none).
func criuConfOf(cfg configs.Config) string {
	path := ""
	for _, l := range cfg.Labels {
		if p, ok := strings.CutPrefix(l, criuConfLabel); ok {
			path = p
		}
	}
	return path
}

// LoadAvg is a running VE's load average over 1, 5 and 15 minutes, as its monitor keeps it
// from the VE's own threads (false: none, as for a stopped VE or one without a monitor).
func (m *Manager) LoadAvg(id string) ([3]float64, bool) {
	var la [3]float64
	data, err := os.ReadFile(m.runFile(id, loadavgFile))
	if err != nil {
		return la, false
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return la, false
	}
	for i := range la {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return la, false
		}
		la[i] = v
	}
	return la, true
}

func (m *Manager) ociPath(id string) string { return filepath.Join(m.store.VEDir(id), "oci.json") }

// cgroupFile is the path of a cgroup interface file of a VE for the fs driver: on cgroup v1
// in the controller's hierarchy, on v2 in the unified one.
func (m *Manager) cgroupFile(id, controller, file string) string {
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join("/sys/fs/cgroup", m.cgroupPath(id), file)
	}
	return filepath.Join("/sys/fs/cgroup", controller, m.cgroupPath(id), file)
}

// cgroupPids lists the processes in a VE's cgroup. The VE cannot create sub-cgroups in the
// controller hierarchies, so on v1 the devices hierarchy holds all of them; on v2 the
// subtree is walked. Zombies are not listed.
func (m *Manager) cgroupPids(id string) ([]int, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		return cgroups.GetAllPids(filepath.Join("/sys/fs/cgroup", m.cgroupPath(id)))
	}
	// The VE's root may have made child cgroups (delegateCgroup): all of them count.
	return cgroups.GetAllPids(filepath.Join("/sys/fs/cgroup/devices", m.cgroupPath(id)))
}

// populated reports whether any live process is in the VE's cgroup: this is what "running"
// means, derived from the kernel rather than from vectl's own records, so that it stays
// true after any vectl process was killed at any point.
func (m *Manager) populated(id string) bool {
	if cgroups.IsCgroup2UnifiedMode() {
		data, err := os.ReadFile(m.cgroupFile(id, "", "cgroup.events"))
		return err == nil && bytes.Contains(data, []byte("populated 1"))
	}
	data, err := os.ReadFile(m.cgroupFile(id, "devices", "cgroup.procs"))
	if err != nil {
		return false // no cgroup: a stopped VE (list reads this for every VE)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		return true
	}
	// A nesting VE may have moved its processes into child cgroups.
	pids, err := m.cgroupPids(id)
	return err == nil && len(pids) > 0
}

// frozen reports whether the VE's cgroup is frozen (suspend).
func (m *Manager) frozen(id string) bool {
	if cgroups.IsCgroup2UnifiedMode() {
		data, err := os.ReadFile(m.cgroupFile(id, "", "cgroup.freeze"))
		return err == nil && strings.TrimSpace(string(data)) == "1"
	}
	data, err := os.ReadFile(m.cgroupFile(id, "freezer", "freezer.state"))
	return err == nil && strings.TrimSpace(string(data)) != "THAWED"
}

// numproc is the number of tasks (processes and threads) in the VE, as OpenVZ's numproc
// beancounter counts them; -1 when unknown.
func (m *Manager) numproc(id string) int {
	data, err := os.ReadFile(m.cgroupFile(id, "pids", "pids.current"))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return -1
	}
	return n
}

// warmJSON builds encoding/json's per-type tables of the OCI spec and (with container) of
// libcontainer's config, as their first encoding or decoding in a process would: about 2 ms
// of CPU each in a fresh process here. A start runs it in a goroutine while it waits for the
// kernel (namespaces, mounts), the monitor while it waits for the go-ahead, so that writing
// and reading the spec on the critical path costs 0.5 ms each instead of 2.5.
// A start that becomes the monitor asks twice (Start, then RunMonitor); each table is built
// once.
func warmJSON(container bool) {
	warmSpec.Do(func() { json.Marshal(specs.Spec{}) }) // per type: empty values build them all
	if container {
		warmConfig.Do(func() { json.Marshal(configs.Config{}) })
	}
}

var warmSpec, warmConfig sync.Once

// loadSpec reads the OCI spec that start generated for a VE, or takes it from the start
// that wrote it in this process (once: a reboot reads the file).
func (m *Manager) loadSpec(id string) (*specs.Spec, error) {
	m.spec.Lock()
	s := m.spec.s
	if m.spec.id != id {
		s = nil
	}
	m.spec.id, m.spec.s = "", nil
	m.spec.Unlock()
	if s != nil {
		return s, nil
	}
	data, err := os.ReadFile(m.ociPath(id))
	if err != nil {
		return nil, err
	}
	s = new(specs.Spec)
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%s: %w", m.ociPath(id), err)
	}
	return s, nil
}

// newContainer creates the libcontainer container of a VE from its OCI spec (no process yet)
// and returns its init process. The returned function releases the process's files once
// the init runs.
// With views (a monitored VE) the VE's /proc and /sys views are mounted (bindViews).
func (m *Manager) newContainer(id string, s *specs.Spec, views bool) (*libcontainer.Container, *libcontainer.Process, func(), error) {
	// A user-namespace VE's spec names its pinned user namespace and that namespace's map.
	// specconv, given a path, would start two processes in the namespace to read the map
	// back (a few milliseconds per start); it gets the map alone, and the path is put back.
	usernsPath := ""
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace && ns.Path != "" && len(s.Linux.UIDMappings) > 0 {
			usernsPath = ns.Path
			s.Linux.Namespaces = slices.Clone(s.Linux.Namespaces)
			s.Linux.Namespaces[i].Path = ""
		}
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: s,
		UseSystemdCgroup: m.opts.CgroupManager == CgroupSystemd, NoNewKeyring: noKeyrings()})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("container config: %w", err)
	}
	if configs.IsNamespaceSupported(configs.NEWTIME) {
		// A time namespace whose clocks start at 0 with this boot: uptime, top and
		// systemd-analyze count from the VE's boot, not the host's (a restore's namespace is
		// criu's, with the clocks the dump had).
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWTIME})
		cfg.TimeOffsets = bootClockOffsets()
	}
	restoreDir, err := os.ReadFile(m.runFile(id, restoreFile))
	restoring := err == nil
	if usernsPath != "" {
		// A restore: criu itself runs in the pinned user namespace (criuInUserNS), which the
		// container must not name (criu would be asked to join it, and cannot join its own).
		if restoring {
			usernsPath = ""
			setCriuConf(cfg, filepath.Join(string(restoreDir), criuConfFile))
		}
	}
	if usernsPath != "" {
		for i := range cfg.Namespaces {
			if cfg.Namespaces[i].Type == configs.NEWUSER {
				cfg.Namespaces[i].Path = usernsPath // joined: runc writes no map
			}
		}
	}
	if err := os.MkdirAll(m.lcRoot(), 0o700); err != nil {
		return nil, nil, nil, err
	}
	sc, err := m.joiner.TakeSeccomp(id, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	var wb *wrapperBinds
	if sc != nil && !restoring {
		wb = &wrapperBinds{}
		if !cgroups.IsCgroup2UnifiedMode() {
			// Read here as libcontainer's init would read it; unreadable, the init fails alike.
			if hs, err := cgroups.GetCgroupMounts(false); err == nil {
				wb.cgroupTree(cfg, hs)
			}
		}
		wb.fileSystems(cfg)
	}
	if cfg.Namespaces.Contains(configs.NEWUSER) {
		if err := m.bindDevices(id, cfg, wb); err != nil {
			return nil, nil, nil, err
		}
	}
	if views {
		if err := m.bindViews(id, cfg, wb); err != nil {
			return nil, nil, nil, err
		}
	}
	if criuConfOf(*cfg) == m.criuConfPath() {
		// Not a user-namespace VE's restore, whose configuration is in its dump.
		if err := m.writeVECriuConf(cfg, wb, m.runFile(id, criuConfFile)); err != nil {
			return nil, nil, nil, err
		}
	}
	c, err := libcontainer.Create(m.lcRoot(), id, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	p := initProcess(s, c)
	done := func() {}
	// A restore's init is criu's restored one: the wrapper that installs the seccomp program
	// would never run (and sealing a copy of this binary for it costs ~9 ms).
	if sc != nil && !restoring {
		var w nsjoin.InitWrap
		if wb != nil {
			w = wb.w
		}
		if done, err = m.joiner.WrapInit(id, p, sc, w); err != nil {
			c.Destroy()
			return nil, nil, nil, err
		}
	}
	if cfg.Namespaces.Contains(configs.NEWUSER) {
		release := done
		done = func() {
			release()
			unix.Unmount(m.runFile(id, devDir), unix.MNT_DETACH) // the VE's binds keep the tmpfs
		}
	}
	return c, p, done, nil
}

// bootClockOffsets are the time namespace offsets that set the monotonic and boot-time
// clocks back to 0 now. The kernel refuses an offset that makes a clock negative; by the
// time the namespace is made the clocks are past these readings.
func bootClockOffsets() map[string]specs.LinuxTimeOffset {
	offs := map[string]specs.LinuxTimeOffset{}
	for name, clock := range map[string]int32{"monotonic": unix.CLOCK_MONOTONIC, "boottime": unix.CLOCK_BOOTTIME} {
		var ts unix.Timespec
		if err := unix.ClockGettime(clock, &ts); err != nil {
			continue
		}
		offs[name] = negOffset(ts)
	}
	return offs
}

// negOffset is -ts as the kernel takes an offset: whole seconds (negative) and a
// nanosecond part in [0, 1e9).
func negOffset(ts unix.Timespec) specs.LinuxTimeOffset {
	if ts.Nsec == 0 {
		return specs.LinuxTimeOffset{Secs: -ts.Sec}
	}
	return specs.LinuxTimeOffset{Secs: -ts.Sec - 1, Nanosecs: uint32(1_000_000_000 - ts.Nsec)}
}

// bindDevices gives a user-namespace VE its device nodes as bind mounts of nodes vectl makes
// 0666, as a VE expects them, on a small tmpfs of the VE's own (run dir, dev/): libcontainer
// would bind the host's own nodes, whose owner (host root) is nobody inside, so their host
// permissions rule (a host with a 0620 /dev/null breaks every VE's /dev/null). The VE's
// mountinfo then shows them as files of a tmpfs, not as host paths. The tmpfs is detached
// once the container runs (unmountDevices); the binds keep it. With wb the init wrapper binds
// all but /dev/null, which libcontainer itself uses before the wrapper runs.
func (m *Manager) bindDevices(id string, cfg *configs.Config, wb *wrapperBinds) error {
	dir := m.runFile(id, devDir)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	if !layout.Mounted(dir) {
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0711,size=64k"); err != nil {
			return fmt.Errorf("device nodes: %w", err)
		}
	}
	var keep []*devices.Device
	var nodes [][2]string
	for _, d := range cfg.Devices {
		if d.Path == "" || d.Type != devices.CharDevice || filepath.Dir(d.Path) != "/dev" {
			keep = append(keep, d)
			continue
		}
		src := filepath.Join(dir, filepath.Base(d.Path))
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil || st.Rdev != unix.Mkdev(uint32(d.Major), uint32(d.Minor)) || st.Mode&0o777 != 0o666 {
			os.Remove(src)
			if err := unix.Mknod(src, unix.S_IFCHR|0o666, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
				return fmt.Errorf("device node %s: %w", src, err)
			}
			if err := os.Chmod(src, 0o666); err != nil { // past the umask
				return err
			}
		}
		if d.Path == "/dev/null" || wb == nil {
			cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: src, Destination: d.Path, Device: "bind",
				Flags: unix.MS_BIND}) // more flags would cost a remount each
		} else {
			nodes = append(nodes, [2]string{filepath.Base(d.Path), d.Path})
		}
	}
	cfg.Devices = keep
	if len(nodes) > 0 {
		wb.add(cfg, dir, "/dev/.vectl-dev", nodes)
	}
	return nil
}

// initProcess is the libcontainer process of a VE's init as the spec describes it.
func initProcess(s *specs.Spec, c *libcontainer.Container) *libcontainer.Process {
	p := &libcontainer.Process{
		Args: s.Process.Args,
		Env:  s.Process.Env,
		Cwd:  s.Process.Cwd,
		Init: true,
	}
	cfg := c.Config()
	p.Capabilities = cfg.Capabilities
	for _, rl := range s.Process.Rlimits {
		if rl.Type == "RLIMIT_NOFILE" {
			p.Rlimits = append(p.Rlimits, configs.Rlimit{Type: unix.RLIMIT_NOFILE, Soft: rl.Soft, Hard: rl.Hard})
		}
	}
	return p
}

// killAll kills every process in a VE's cgroup and waits until it is empty. A frozen cgroup
// is thawed first: on cgroup v1 SIGKILL does not act on frozen tasks. Each pid is opened as
// a pidfd and checked to still be in the VE's cgroup before it is signalled, so a recycled
// pid of an unrelated process is never hit. The wait is on those pidfds, which are readable
// once their process has exited, and not a sleep: on a busy node a fixed pause between two
// reads of the cgroup was most of a stop's time. The cgroup is read again after each wait
// (something may have forked meanwhile).
func (m *Manager) killAll(id string, timeout time.Duration) error {
	if m.frozen(id) {
		m.thaw(id)
	}
	deadline := time.Now().Add(timeout)
	for {
		pids, err := m.cgroupPids(id)
		if err != nil {
			// ENODEV: the cgroup was removed while we read it (systemd removes a scope's
			// cgroup once it is empty), so nothing is left in it.
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
				return nil
			}
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		var fds []int
		for _, pid := range pids {
			if fd := m.killInCgroup(pid, id); fd >= 0 {
				if len(fds) < maxKillWait {
					fds = append(fds, fd)
				} else {
					unix.Close(fd) // killed; the next read of the cgroup sees whether it went
				}
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			closeAll(fds)
			return fmt.Errorf("processes %v of VE %s survive SIGKILL", pids, id)
		}
		if len(fds) == 0 {
			// Nothing to wait on (the tasks were gone or elsewhere by the time they were
			// opened): a pause before the cgroup is read again.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		waitPidfds(fds, min(left, 100*time.Millisecond))
		closeAll(fds)
	}
}

// maxKillWait bounds the pidfds killAll keeps open at once (a fork bomb's thousands of
// processes would otherwise hold as many descriptors); the rest are killed all the same.
const maxKillWait = 256

// killInCgroup sends SIGKILL to pid if it is in VE id's cgroup, and returns its pidfd (-1
// when it was not signalled); the caller closes it.
func (m *Manager) killInCgroup(pid int, id string) int {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil || !bytes.Contains(data, []byte(":"+m.cgroupPath(id)+"\n")) &&
		!bytes.Contains(data, []byte(":"+m.cgroupPath(id)+"/")) {
		unix.Close(fd)
		return -1
	}
	if unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) != nil {
		unix.Close(fd)
		return -1
	}
	return fd
}

// waitPidfds waits until every process of fds has exited (each pidfd is readable), or for
// timeout.
func waitPidfds(fds []int, timeout time.Duration) {
	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(timeout)
	for len(pfds) > 0 {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return
		}
		n, err := unix.Poll(pfds, ms)
		if err != nil && err != unix.EINTR {
			return
		}
		if n <= 0 {
			continue
		}
		rest := pfds[:0]
		for _, p := range pfds {
			if p.Revents == 0 {
				rest = append(rest, p)
			}
		}
		pfds = rest
	}
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

func (m *Manager) thaw(id string) {
	if cgroups.IsCgroup2UnifiedMode() {
		_ = os.WriteFile(m.cgroupFile(id, "", "cgroup.freeze"), []byte("0"), 0)
		return
	}
	_ = os.WriteFile(m.cgroupFile(id, "freezer", "freezer.state"), []byte("THAWED"), 0)
}

// destroyContainer removes a stopped VE's libcontainer state and cgroups. It works without
// libcontainer's state too (a start killed before the state was written).
func (m *Manager) destroyContainer(id string) error {
	var errs []error
	// The cgroup empties before a dying init has finished its exit. libcontainer's Destroy
	// would remove what follows (vectl's VEs have no hooks nor Intel RDT), after decoding the
	// whole container config: this needs only the init's pid and the cgroup paths.
	st, serr := m.readLCState(id)
	if serr == nil && st.Pid > 0 {
		waitExited(st.Pid, st.Start, 10*time.Second)
	}
	if err := os.RemoveAll(filepath.Join(m.lcRoot(), id)); err != nil {
		errs = append(errs, err)
	}
	var destroy func() error
	if serr == nil && len(st.CgroupPaths) > 0 && m.opts.CgroupManager != CgroupSystemd {
		// What libcontainer's cgroupfs managers do, without building one (which reads
		// mountinfo to find the hierarchies). RemovePaths drops the paths it removed from
		// the map, so a retry only tries the rest.
		destroy = func() error { return cgroups.RemovePaths(st.CgroupPaths) }
	} else {
		cg := &cgroups.Cgroup{Path: m.cgroupPath(id), Resources: &cgroups.Resources{}}
		if m.opts.CgroupManager == CgroupSystemd {
			cg = &cgroups.Cgroup{Parent: m.slice(), ScopePrefix: "vectl", Name: id, Systemd: true,
				Resources: &cgroups.Resources{}}
		}
		mgr, err := cgmanager.New(cg)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		destroy = mgr.Destroy
	}
	var derr error
	for i := 0; i < 50; i++ { // a cgroup may stay busy for a moment after its last task died
		if derr = destroy(); derr == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if derr != nil {
		errs = append(errs, fmt.Errorf("remove cgroup %s: %w", m.cgroupPath(id), derr))
	}
	return errors.Join(errs...)
}

// lcState is what vectl reads of a VE's libcontainer state by itself: the init's pid and
// start time (clock ticks since boot, field 22 of /proc/PID/stat) and the cgroup paths.
// libcontainer.Load decodes the container's whole config too, and building encoding/json's
// tables for its types costs about 1 ms of CPU per process here (perf), nearly a tenth of
// a stop.
type lcState struct {
	Pid         int               `json:"init_process_pid"`
	Start       uint64            `json:"init_process_start"`
	CgroupPaths map[string]string `json:"cgroup_paths"`
}

func (m *Manager) readLCState(id string) (*lcState, error) {
	data, err := os.ReadFile(filepath.Join(m.lcRoot(), id, "state.json"))
	if err != nil {
		return nil, err
	}
	var st lcState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("libcontainer state of %s: %w", id, err)
	}
	return &st, nil
}

// openInit opens a pidfd of the VE's init, checked against the start time in its
// libcontainer state, so that a recycled pid is never hit.
func (m *Manager) openInit(id string) (pid, fd int, err error) {
	st, err := m.readLCState(id)
	if err != nil {
		return 0, -1, err
	}
	fd, err = unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		return 0, -1, fmt.Errorf("%s: %w", id, ErrNotRunning)
	}
	if start, err := join.StartTime(st.Pid); err != nil || start != st.Start {
		unix.Close(fd)
		return 0, -1, fmt.Errorf("%s: %w", id, ErrNotRunning)
	}
	return st.Pid, fd, nil
}

// waitExited waits until the process pid with the given start time is a zombie or gone, on
// its pidfd (readable once it has exited).
func waitExited(pid int, start uint64, timeout time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone
	}
	defer unix.Close(fd)
	// The pidfd pins the process: its start time tells whether it is the one meant.
	if st, err := join.StartTime(pid); err != nil || st != start {
		return
	}
	waitPidfds([]int{fd}, timeout)
}

// writePidFile records pid and its start time.
func writePidFile(path string, pid int) error {
	st, err := join.StartTime(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d %d\n", pid, st)), 0o600)
}

// readPidFile returns the pid recorded in path if that very process is still alive.
func readPidFile(path string) (int, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(string(data), "%d %d", &pid, &st); err != nil {
		return 0, false
	}
	return pid, sameProcess(pid, st)
}

// sameProcess reports whether pid is still the process that had start time st (join.StartTime).
func sameProcess(pid int, st uint64) bool {
	now, err := join.StartTime(pid)
	return err == nil && now == st
}

// noKeyrings reports whether the kernel's keyrings are out of reach here: vectl runs nested in
// a user-namespace VE, whose seccomp profile answers the keyring calls with ENOSYS. Its VEs
// then get no session keyring of their own (libcontainer would warn at every start and exec).
var noKeyrings = sync.OnceValue(func() bool {
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	return errors.Is(err, unix.ENOSYS)
})
