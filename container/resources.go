package container

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	cgmanager "github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/layout"
	"github.com/vectl/vectl/resources"
)

// blockDevice returns the whole-disk block device that holds a VE's root: the loop device of
// an image layout, else the disk of the filesystem with its private area. I/O limits are set
// on it.
func (m *Manager) blockDevice(cfg *Config) (*resources.Device, error) {
	path := m.store.PrivateDir(cfg.ID)
	if cfg.Layout == LayoutImage {
		path = m.store.RootDir(cfg.ID)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, err
	}
	maj, min := unix.Major(st.Dev), unix.Minor(st.Dev)
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", maj, min)
	if _, err := os.Stat(sys); err != nil {
		return nil, fmt.Errorf("%s is not on a block device (%d:%d)", path, maj, min)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		// I/O throttling works on whole disks: use the partition's disk.
		parent := readTrim(filepath.Join(sys, "..", "dev"))
		if _, err := fmt.Sscanf(parent, "%d:%d", &maj, &min); err != nil {
			return nil, fmt.Errorf("disk of partition %s: %q", sys, parent)
		}
	}
	return &resources.Device{Major: int64(maj), Minor: int64(min)}, nil
}

// applyResources writes a VE's limits into its OCI spec resources (device rules kept).
func (m *Manager) applyResources(cfg *Config, r *specs.LinuxResources, old *resources.Limits) error {
	var io *resources.Device
	hasIO := func(l *resources.Limits) bool {
		return l != nil && (l.IOLimit != nil && *l.IOLimit > 0 || l.IOPSLimit != nil && *l.IOPSLimit > 0)
	}
	if hasIO(&cfg.Resources) || hasIO(old) {
		d, err := m.blockDevice(cfg)
		if err != nil {
			return fmt.Errorf("%w: I/O limits: %v", ErrInvalidValue, err)
		}
		io = d
	}
	h := resources.ReadHost()
	if err := cfg.Resources.Apply(r, h, io); err != nil {
		return err
	}
	if l := cfg.Resources; l.CPUs != nil && *l.CPUs > 0 && int(*l.CPUs) < h.CPUs && (l.CPUMask == "" || l.CPUMask == "all") {
		r.CPU.Cpus = resources.FormatList(m.pickCPUs(cfg.ID, int(*l.CPUs), h.CPUs))
	}
	return nil
}

// pickCPUs chooses the CPUs of a VE given --cpus n (fewer than the host's cpus) and no
// --cpumask: n of them, as Incus does for limits.cpu, so that what the kernel tells the VE's
// programs (sched_getaffinity: nproc, nproc --all, the JVM, make -j) agrees with its views.
// A VE whose cgroup already has n CPUs keeps them (a live set of another limit, or of the
// same, moves nothing); otherwise it gets those the fewest other VEs are pinned to, read
// from the cpuset.cpus of its sibling cgroups (resources.PickCPUs).
func (m *Manager) pickCPUs(id string, n, cpus int) []int {
	own := m.cgroupFile(id, "cpuset", "cpuset.cpus")
	if l, err := resources.ParseList(readTrim(own), cpus); err == nil && len(l) == n {
		return l
	}
	var pinned [][]int
	dir := filepath.Dir(filepath.Dir(own))
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == filepath.Base(filepath.Dir(own)) {
			continue
		}
		if l, err := resources.ParseList(readTrim(filepath.Join(dir, e.Name(), "cpuset.cpus")), cpus); err == nil && len(l) < cpus {
			pinned = append(pinned, l)
		}
	}
	return resources.PickCPUs(n, cpus, pinned, id)
}

// setLive applies a VE's limits to its running cgroup at once. It writes the cgroup files
// through a cgroup manager of its own instead of loading libcontainer's container and
// calling its Set: that would read and rewrite libcontainer's state (a JSON file of some
// 30 KB) and the OCI spec, most of a live set's time. libcontainer's copy of the limits in
// its state goes stale; nothing reads it (limits live in config.json, usage in the cgroup
// files). Device rules are left alone.
func (m *Manager) setLive(cfg *Config, old resources.Limits) error {
	res := &specs.LinuxResources{}
	if err := m.applyResources(cfg, res, &old); err != nil {
		return err
	}
	s := &specs.Spec{Linux: &specs.Linux{CgroupsPath: m.specCgroupsPath(cfg.ID), Resources: res}}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: cfg.ID, Spec: s,
		UseSystemdCgroup: m.opts.CgroupManager == CgroupSystemd}, nil)
	if err != nil {
		return err
	}
	cg.Resources.SkipDevices = true
	mgr, err := cgmanager.New(cg)
	if err != nil {
		return fmt.Errorf("apply limits: %w", err)
	}
	if err := mgr.Set(cg.Resources); err != nil {
		return fmt.Errorf("apply limits: %w", err)
	}
	return nil
}

// ErrDiskSpace means a disk limit cannot be met or changed as asked (exit 46).
var ErrDiskSpace = layout.ErrDiskSpace

// setLimits applies resource parameters (checked by resources.ParseLimits) to cfg, without
// side effects, and sorts them into live and next-start changes.
func setLimits(cfg *Config, l resources.Limits, ch *change) error {
	given := l.Given()
	if len(given) == 0 {
		return nil // most sets change no limit
	}
	if slices.Contains(given, "diskinodes") {
		return fmt.Errorf("%w: diskinodes is fixed when the VE's disk image is made: set it at create", ErrInvalidValue)
	}
	cfg.Resources.Merge(l)
	for _, name := range given {
		ch.limit(name)
	}
	return nil
}

// ubcWarning is the one line that says which beancounters were stored without being
// enforced ("" when none was given).
func ubcWarning(l resources.Limits) string {
	var names []string
	for _, n := range resources.UBCNames {
		if _, ok := l.UBC[n]; ok {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return strings.Join(names, ", ") + ": stored and shown by vzlist, not enforced on this kernel (no user beancounters; ram, swap, numproc and numfile are)"
}

// limit sorts a changed resource parameter into what it takes to apply it.
func (ch *change) limit(name string) {
	switch {
	case name == "diskspace":
		ch.disk = true
		ch.live = append(ch.live, name)
	case resources.Live(name):
		ch.limits = true
		ch.live = append(ch.live, name)
	default:
		ch.stored = append(ch.stored, name)
	}
}
