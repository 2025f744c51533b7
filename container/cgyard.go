package container

import (
	"bufio"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
		want, ok := yardLinks(readTrim("/proc/self/cgroup"), readTrim("/proc/self/mountinfo"))
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
// hierarchy's root in a /proc/PID/mountinfo listing, by CRIU's yard entry name. ok is false
// when one has no such mount.
func yardLinks(cgroupFile, mountinfo string) (map[string]string, bool) {
	type mnt struct {
		point string
		v2    bool
		opts  []string
	}
	var mounts []mnt
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT POINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, found := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !found || len(f) < 5 || len(g) < 3 || f[3] != "/" || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		mounts = append(mounts, mnt{point: unescapeMount(f[4]), v2: g[0] == "cgroup2", opts: strings.Split(g[2], ",")})
	}
	links := map[string]string{}
	for _, l := range strings.Split(cgroupFile, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, name := parts[1], ""
		if ctrls == "" {
			name = "unified"
		} else {
			var names []string
			for _, c := range strings.Split(ctrls, ",") {
				names = append(names, strings.TrimPrefix(c, "name="))
			}
			name = strings.Join(names, ",")
		}
		point := ""
		for _, mt := range mounts {
			if ctrls == "" && mt.v2 || ctrls != "" && !mt.v2 && containsAll(mt.opts, strings.Split(ctrls, ",")) {
				point = mt.point
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

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}
