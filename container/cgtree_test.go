package container

import (
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/nsjoin"
)

// cgroupTreeConfig is the part of a VE's libcontainer configuration that cgroupTree looks at,
// as the spec makes it on a cgroup v1 host: the cgroup mount (read-only unless rw) and the
// writable bind of the VE's name=systemd subtree over it.
func cgroupTreeConfig(rw, cgroupns bool) *configs.Config {
	flags := unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV | unix.MS_RELATIME
	if !rw {
		flags |= unix.MS_RDONLY
	}
	cfg := &configs.Config{Mounts: []*configs.Mount{
		{Device: "proc", Source: "proc", Destination: "/proc"},
		{Device: "sysfs", Source: "sysfs", Destination: "/sys", Flags: unix.MS_RDONLY},
		{Device: "cgroup", Source: "cgroup", Destination: "/sys/fs/cgroup", Flags: flags},
		{Device: "tmpfs", Source: "tmpfs", Destination: "/run"},
		{Device: "bind", Source: "/sys/fs/cgroup/systemd/vectl/101", Destination: "/sys/fs/cgroup/systemd",
			Flags: unix.MS_BIND | unix.MS_REC | unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
	}}
	cfg.Namespaces = configs.Namespaces{{Type: configs.NEWNS}, {Type: configs.NEWPID}}
	if cgroupns {
		cfg.Namespaces = append(cfg.Namespaces, configs.Namespace{Type: configs.NEWCGROUP})
	}
	return cfg
}

// hostHierarchies are cgroup v1 mounts as cgroups.GetCgroupMounts returns them on a host
// that mounts cpu and cpuacct together.
var hostHierarchies = []cgroups.Mount{
	{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", Subsystems: []string{"cpu", "cpuacct"}},
	{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Subsystems: []string{"memory"}},
	{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Subsystems: []string{"name=systemd"}},
}

// TestCgroupTree: on a cgroup v1 host, a VE with a cgroup namespace has its cgroup mount and
// name=systemd bind taken out of libcontainer's mounts and given to the init wrapper, one
// hierarchy each, read-only but for name=systemd (all writable for a nesting VE), and the
// container's labels say how (cgroupsWritable reads them).
func TestCgroupTree(t *testing.T) {
	for _, tc := range []struct {
		rw   bool
		want []nsjoin.CgroupMount
	}{
		{false, []nsjoin.CgroupMount{{Name: "cpu,cpuacct", Source: "cgroup", Data: "cpu,cpuacct"},
			{Name: "memory", Source: "cgroup", Data: "memory"}, {Name: "systemd", Source: "systemd", Data: "name=systemd", RW: true}}},
		{true, []nsjoin.CgroupMount{{Name: "cpu,cpuacct", Source: "cgroup", Data: "cpu,cpuacct", RW: true},
			{Name: "memory", Source: "cgroup", Data: "memory", RW: true}, {Name: "systemd", Source: "systemd", Data: "name=systemd", RW: true}}},
	} {
		cfg := cgroupTreeConfig(tc.rw, true)
		if got := cgroupsWritable(*cfg); got != tc.rw {
			t.Errorf("rw %v: cgroupsWritable before = %v", tc.rw, got)
		}
		var wb wrapperBinds
		wb.cgroupTree(cfg, hostHierarchies)
		if !reflect.DeepEqual(wb.w.Cgroups, tc.want) {
			t.Errorf("rw %v: the wrapper's hierarchies:\n got %+v\nwant %+v", tc.rw, wb.w.Cgroups, tc.want)
		}
		var left []string
		for _, m := range cfg.Mounts {
			left = append(left, m.Destination)
		}
		if want := []string{"/proc", "/sys", "/run"}; !reflect.DeepEqual(left, want) {
			t.Errorf("rw %v: libcontainer's mounts left: %q, want %q", tc.rw, left, want)
		}
		if got := cgroupsWritable(*cfg); got != tc.rw {
			t.Errorf("rw %v: cgroupsWritable after = %v (labels %q)", tc.rw, got, cfg.Labels)
		}
		// The message carries them to the C side.
		w, err := nsjoin.ParseInitWrap(wb.w.Hex())
		if err != nil || !reflect.DeepEqual(w.Cgroups, tc.want) {
			t.Errorf("rw %v: the message's hierarchies: %+v (%v)", tc.rw, w, err)
		}
	}
}

// TestCgroupTreeLeftAlone: without a cgroup namespace, with another mount below
// /sys/fs/cgroup, with propagation flags on the cgroup mount, or without hierarchies,
// libcontainer keeps the cgroup mounts and the wrapper gets none.
func TestCgroupTreeLeftAlone(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg *configs.Config
		hs  []cgroups.Mount
	}{
		"no cgroup namespace": {cgroupTreeConfig(false, false), hostHierarchies},
		"no hierarchies":      {cgroupTreeConfig(false, true), nil},
		"a bind below": {func() *configs.Config {
			c := cgroupTreeConfig(false, true)
			c.Mounts = append(c.Mounts, &configs.Mount{Device: "bind", Source: "/srv/x", Destination: "/sys/fs/cgroup/x"})
			return c
		}(), hostHierarchies},
		"propagation": {func() *configs.Config {
			c := cgroupTreeConfig(false, true)
			c.Mounts[2].PropagationFlags = []int{unix.MS_SLAVE}
			return c
		}(), hostHierarchies},
	} {
		n := len(tc.cfg.Mounts)
		var wb wrapperBinds
		wb.cgroupTree(tc.cfg, tc.hs)
		if len(wb.w.Cgroups) != 0 || len(tc.cfg.Mounts) != n || len(tc.cfg.Labels) != 0 {
			t.Errorf("%s: moved %d hierarchies, %d of %d mounts left, labels %q", name, len(wb.w.Cgroups), len(tc.cfg.Mounts), n, tc.cfg.Labels)
		}
	}
}

// TestFileSystems: the spec's tmpfs and mqueue mounts but /dev go to the init wrapper in
// their order, with their flags and data; one with a libcontainer mount below it, or with
// propagation flags, stays; a read-only root keeps them all.
func TestFileSystems(t *testing.T) {
	mk := func() *configs.Config {
		return &configs.Config{Mounts: []*configs.Mount{
			{Device: "proc", Source: "proc", Destination: "/proc"},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/dev", Data: "mode=755"},
			{Device: "tmpfs", Source: "shm", Destination: "/dev/shm", Flags: unix.MS_NOSUID, Data: "mode=1777,size=65536k"},
			{Device: "mqueue", Source: "mqueue", Destination: "/dev/mqueue", Flags: unix.MS_NOEXEC},
			{Device: "sysfs", Source: "sysfs", Destination: "/sys", Flags: unix.MS_RDONLY | unix.MS_NOSUID},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/run", Flags: unix.MS_NODEV, Data: "mode=755"},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/run/lock", Data: "mode=1777"},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/srv"},
			{Device: "bind", Source: "/data", Destination: "/srv/data"},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/tmp", PropagationFlags: []int{unix.MS_PRIVATE}},
			{Device: "tmpfs", Source: "tmpfs", Destination: "/var/ro"},
		}, MaskPaths: []string{"/proc/kcore", "/sys/firmware", "/sys/devices/virtual/powercap", "/system"},
			ReadonlyPaths: []string{"/proc/sys", "/var/ro/x"}}
	}
	cfg := mk()
	var wb wrapperBinds
	wb.fileSystemsIn(cfg, false)
	want := []nsjoin.Mount{
		{Target: "/dev/shm", Source: "shm", FSType: "tmpfs", Data: "mode=1777,size=65536k", Flags: unix.MS_NOSUID},
		{Target: "/dev/mqueue", Source: "mqueue", FSType: "mqueue", Flags: unix.MS_NOEXEC},
		{Target: "/sys", Source: "sysfs", FSType: "sysfs", Flags: unix.MS_RDONLY | unix.MS_NOSUID},
		{Target: "/run", Source: "tmpfs", FSType: "tmpfs", Data: "mode=755", Flags: unix.MS_NODEV},
		{Target: "/run/lock", Source: "tmpfs", FSType: "tmpfs", Data: "mode=1777"},
	}
	if !reflect.DeepEqual(wb.w.Mounts, want) {
		t.Errorf("the wrapper's mounts:\n got %+v\nwant %+v", wb.w.Mounts, want)
	}
	var left []string
	for _, m := range cfg.Mounts {
		left = append(left, m.Destination)
	}
	if want := []string{"/proc", "/dev", "/srv", "/srv/data", "/tmp", "/var/ro"}; !reflect.DeepEqual(left, want) {
		t.Errorf("libcontainer's mounts left: %q, want %q", left, want)
	}
	// The masks below /sys go with it (libcontainer would find them missing and skip them).
	wantMasks := []string{"/sys/firmware", "/sys/devices/virtual/powercap"}
	if !reflect.DeepEqual(wb.w.Masks, wantMasks) || !reflect.DeepEqual(cfg.MaskPaths, []string{"/proc/kcore", "/system"}) {
		t.Errorf("masks: the wrapper's %q, libcontainer's %q", wb.w.Masks, cfg.MaskPaths)
	}
	if w, err := nsjoin.ParseInitWrap(wb.w.Hex()); err != nil || !reflect.DeepEqual(w.Mounts, want) || !reflect.DeepEqual(w.Masks, wantMasks) {
		t.Errorf("the message's mounts: %+v (%v)", w, err)
	}

	// In a VE's own user namespace, or with vectl in one (nested in a VE), sysfs stays
	// libcontainer's, and its masks with it.
	for _, inUserNS := range []bool{false, true} {
		cfg = mk()
		if !inUserNS {
			cfg.Namespaces = configs.Namespaces{{Type: configs.NEWUSER}}
		}
		wb = wrapperBinds{}
		wb.fileSystemsIn(cfg, inUserNS)
		if slices.ContainsFunc(wb.w.Mounts, func(m nsjoin.Mount) bool { return m.FSType == "sysfs" }) || len(wb.w.Masks) != 0 || len(cfg.MaskPaths) != 4 {
			t.Errorf("user namespace (vectl in one: %v): moved %+v, masks %q", inUserNS, wb.w.Mounts, wb.w.Masks)
		}
		if len(wb.w.Mounts) != len(want)-1 {
			t.Errorf("user namespace (vectl in one: %v): moved %+v, want the tmpfs and mqueue mounts", inUserNS, wb.w.Mounts)
		}
	}

	cfg = mk()
	cfg.Readonlyfs = true
	wb = wrapperBinds{}
	wb.fileSystems(cfg)
	if len(wb.w.Mounts) != 0 || len(cfg.Mounts) != len(mk().Mounts) {
		t.Errorf("read-only root: moved %+v", wb.w.Mounts)
	}
}

// TestWrapperCaps: the wrapper takes at most nsjoin.MaxInitWrapMounts file systems (the
// rest stay libcontainer's, in order) and no cgroup tree of more than
// nsjoin.MaxInitWrapCgroups hierarchies.
func TestWrapperCaps(t *testing.T) {
	cfg := &configs.Config{}
	for i := range nsjoin.MaxInitWrapMounts + 4 {
		cfg.Mounts = append(cfg.Mounts, &configs.Mount{Device: "tmpfs", Source: "tmpfs", Destination: "/t" + string(rune('a'+i))})
	}
	var wb wrapperBinds
	wb.fileSystems(cfg)
	if len(wb.w.Mounts) != nsjoin.MaxInitWrapMounts || len(cfg.Mounts) != 4 || cfg.Mounts[0].Destination != "/tq" {
		t.Errorf("moved %d of %d tmpfs mounts, left %d starting at %s", len(wb.w.Mounts), nsjoin.MaxInitWrapMounts+4, len(cfg.Mounts), cfg.Mounts[0].Destination)
	}
	many := make([]cgroups.Mount, nsjoin.MaxInitWrapCgroups+1)
	for i := range many {
		many[i] = cgroups.Mount{Mountpoint: "/sys/fs/cgroup/c" + string(rune('a'+i))}
	}
	cfg = cgroupTreeConfig(false, true)
	wb = wrapperBinds{}
	wb.cgroupTree(cfg, many)
	if len(wb.w.Cgroups) != 0 {
		t.Errorf("a tree of %d hierarchies moved %d", len(many), len(wb.w.Cgroups))
	}
}
