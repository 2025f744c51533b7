package container

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// CRIU reads the VE's cgroups at a dump through a "yard": a directory with one entry per
// cgroup hierarchy, named after the hierarchy's controllers ("memory", "cpu,cpuacct",
// "systemd" for name=systemd, "unified" for cgroup2). Left to itself, CRIU mounts every
// hierarchy at each dump, and mounting cgroup2 costs a whole RCU grace period (13 ms here,
// in a Debian VE's dump of ~120 ms). Its cgroup-yard option takes a ready yard instead, which
// CRIU neither mounts into nor removes: vectl keeps one per node in its run directory, whose
// entries are symbolic links to the host's mounts of the hierarchies (followed when CRIU
// opens them). Dumps only (dumpConf adds it to the VE's own configuration): a restore moves
// tasks into their cgroups from inside the VE's mount namespace, where the links' targets are
// not the host's; the shared configuration, which other runtimes given a VE's spec read
// (the bench's runc), has none.

const cgroupYardDir = "cgroup-yard"

// cgroupYard returns the node's cgroup yard, made or brought up to date on first use in this
// process, or "" when the host does not mount every hierarchy vectl is in at its root (CRIU
// then makes its own yard, as before).
func (m *Manager) cgroupYard() string {
	m.yard.once.Do(func() {
		mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
		if err != nil {
			return
		}
		want, ok := yardLinks(readTrim("/proc/self/cgroup"), mounts)
		if !ok {
			return
		}
		dir := filepath.Join(m.opts.RunDir, cgroupYardDir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return
		}
		for name, target := range want {
			link := filepath.Join(dir, name)
			if cur, err := os.Readlink(link); err == nil && cur == target {
				continue
			}
			tmp := link + ".new"
			os.Remove(tmp)
			if os.Symlink(target, tmp) != nil || os.Rename(tmp, link) != nil {
				os.Remove(tmp)
				return
			}
		}
		m.yard.dir = dir
	})
	return m.yard.dir
}

// cgroupYardLine is the line of a CRIU configuration naming the node's yard ("" for none).
func (m *Manager) cgroupYardLine() string {
	if dir := m.cgroupYard(); dir != "" {
		return "cgroup-yard " + dir + "\n"
	}
	return ""
}

// yardLinks maps each hierarchy of a /proc/PID/cgroup listing to the mount point of that
// hierarchy's root among mounts, by CRIU's yard entry name. ok is false when one has no such
// mount.
func yardLinks(cgroupFile string, mounts []*mountinfo.Info) (map[string]string, bool) {
	links := map[string]string{}
	for _, l := range strings.Split(cgroupFile, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, name := parts[1], "unified"
		if ctrls != "" {
			name = strings.ReplaceAll(ctrls, "name=", "")
		}
		point := ""
		for _, mt := range mounts {
			if mt.Root != "/" {
				continue
			}
			if ctrls == "" && mt.FSType == "cgroup2" || ctrls != "" && mt.FSType == "cgroup" &&
				containsAll(strings.Split(mt.VFSOptions, ","), strings.Split(ctrls, ",")) {
				point = mt.Mountpoint
				break
			}
		}
		if point == "" {
			return nil, false
		}
		links[name] = point
	}
	return links, len(links) > 0
}

func containsAll(set, items []string) bool {
	for _, it := range items {
		if !slices.Contains(set, it) {
			return false
		}
	}
	return true
}
