//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// cgroupMountLine is one mount(2) of a cgroup v1 hierarchy that strace -f logged: pid,
// source, target, flags and data.
var cgroupMountLine = regexp.MustCompile(`^(\d+)\s+mount\("([^"]*)", "([^"]*)", "cgroup", ([^,]*), "([^"]*)"\) = 0`)

// fsMountLine is one mount(2) of a tmpfs or mqueue that strace -f logged: pid, target and
// file system type.
var fsMountLine = regexp.MustCompile(`^(\d+)\s+mount\("[^"]*", "([^"]*)", "(tmpfs|mqueue)", `)

// mountEntry is one line of a mountinfo file: the mount point and "FSTYPE
// PER-MOUNT-OPTIONS".
type mountEntry struct{ point, mount string }

// mountEntries parses a mountinfo file's text, in its order.
func mountEntries(text string) []mountEntry {
	var ms []mountEntry
	for _, l := range strings.Split(text, "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if ok && len(f) >= 6 && len(g) >= 1 {
			ms = append(ms, mountEntry{point: f[4], mount: g[0] + " " + f[5]})
		}
	}
	return ms
}

// wrapperExec reports whether an strace -f line is the successful execve of the init
// wrapper (a sealed copy run from a descriptor with __initwrap), and by which process: the
// mounts that process makes after it are the wrapper's.
func wrapperExec(l string) (string, bool) {
	x := execveLine.FindStringSubmatch(l)
	if x == nil || x[4] != "0" || !strings.HasPrefix(x[2], "/proc/self/fd/") || !strings.Contains(x[3], `"__initwrap"`) {
		return "", false
	}
	return x[1], true
}

// hostHierarchies are the base names of the host's cgroup v1 mount points (cpu, memory,
// systemd, ...), as libcontainer lists them for a VE.
func hostHierarchies(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mountEntries(string(data)) {
		if strings.HasPrefix(m.mount, "cgroup ") && !slices.Contains(names, filepath.Base(m.point)) {
			names = append(names, filepath.Base(m.point))
		}
	}
	if len(names) == 0 {
		t.Fatal("the host mounts no cgroup v1 hierarchy")
	}
	return names
}

// veCgroupMounts returns, from inside VE id, the mounts at and below /sys/fs/cgroup: mount
// point -> "FSTYPE PER-MOUNT-OPTIONS", and how many mounts each mount point has.
func (e *env) veCgroupMounts(id string) (map[string]string, map[string]int) {
	e.t.Helper()
	mounts, count := map[string]string{}, map[string]int{}
	for _, m := range mountEntries(e.out(id, "cat", "/proc/1/mountinfo")) {
		if m.point == "/sys/fs/cgroup" || strings.HasPrefix(m.point, "/sys/fs/cgroup/") {
			mounts[m.point] = m.mount
			count[m.point]++
		}
	}
	return mounts, count
}

// TestCgroupTreeMounts (issue 22): on a cgroup v1 host vectl's init wrapper, not
// libcontainer's init, mounts a VE's cgroup tree. Under strace -f a foreground run shows the
// process that executed the wrapper (__initwrap) mounting each of the host's hierarchies at
// /sys/fs/cgroup/NAME, the controllers read-only and name=systemd writable, and no other
// process mounting a cgroup; the wrapper also mounts the VE's /run, /run/lock, /dev/shm and
// /dev/mqueue. Inside a running VE /sys/fs/cgroup is a tmpfs with one mount per
// host hierarchy (name=systemd one writable mount, no bind stacked on a read-only one), seen
// from the VE's cgroup namespace (its own cgroup is "/"): the VE's root can make a cgroup in
// name=systemd and not in memory. A nesting VE gets every hierarchy writable.
func TestCgroupTreeMounts(t *testing.T) {
	if cgroupV2() {
		t.Skip("a cgroup v2 host: libcontainer mounts a VE's cgroup2 itself, one mount; the tree moved to the wrapper is cgroup v1's")
	}
	e := newEnv(t)
	tmpl := e.importBusybox()
	names := hostHierarchies(t)
	fg, id, nest := uniqueID(t), uniqueID(t), uniqueID(t)
	e.must("create", fg, "--ostemplate", tmpl)
	e.setInit(fg, "#!/bin/sh\nexit 0\n")
	e.must("create", id, "--ostemplate", tmpl)
	e.must("create", nest, "--ostemplate", tmpl, "--nesting", "yes")
	// A node's first start compiles the VE's seccomp program (per boot), and its init runs
	// without the wrapper, which loads the compiled program.
	e.must("start", id)

	code, text := e.trace(t, "execve,mount", "start", "--foreground", fg)
	if code != 2 {
		t.Fatalf("start --foreground of an init that exits 0: exit %d, want 2:\n%s", code, text)
	}
	// The wrapper runs in the process of libcontainer's init, which executes it: its mounts
	// are those that process makes after that execve.
	wrapper := ""
	mounted := map[string]string{} // target -> flags, by the wrapper
	fs := map[string]string{}      // target -> type, by the wrapper
	for _, l := range strings.Split(text, "\n") {
		if pid, ok := wrapperExec(l); ok {
			wrapper = pid
		}
		if m := fsMountLine.FindStringSubmatch(l); m != nil && m[1] == wrapper {
			fs[m[2]] = m[3]
		}
		m := cgroupMountLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] != wrapper {
			t.Errorf("a cgroup hierarchy mounted by process %s, not by the init wrapper (%q so far): %s", m[1], wrapper, l)
			continue
		}
		mounted[m[3]] = m[4]
	}
	if wrapper == "" {
		t.Fatalf("no process executed the init wrapper:\n%s", text)
	}
	// The VE's own file systems that libcontainer's init does not use are the wrapper's too.
	for target, typ := range map[string]string{"/sys/fs/cgroup": "tmpfs", "/run": "tmpfs", "/run/lock": "tmpfs",
		"/dev/shm": "tmpfs", "/dev/mqueue": "mqueue"} {
		if fs[target] != typ {
			t.Errorf("the wrapper did not mount %s on %s (it mounted %v)", typ, target, fs)
		}
	}
	for _, n := range names {
		flags, ok := mounted["/sys/fs/cgroup/"+n]
		switch {
		case !ok:
			t.Errorf("the wrapper did not mount the hierarchy %s (it mounted %v)", n, mounted)
		case (n == "systemd") == strings.Contains(flags, "MS_RDONLY"):
			t.Errorf("the wrapper mounted %s with %s: want read-only controllers and a writable name=systemd", n, flags)
		}
	}

	for _, ve := range []struct {
		id      string
		nesting bool
	}{{id, false}, {nest, true}} {
		if ve.nesting {
			e.must("start", ve.id)
		}
		mounts, count := e.veCgroupMounts(ve.id)
		if got := mounts["/sys/fs/cgroup"]; !strings.HasPrefix(got, "tmpfs ") {
			t.Errorf("VE %s: /sys/fs/cgroup is %q, want a tmpfs", ve.id, got)
		}
		for _, n := range names {
			point := "/sys/fs/cgroup/" + n
			got, rw := mounts[point], n == "systemd" || ve.nesting
			switch {
			case !strings.HasPrefix(got, "cgroup "):
				t.Errorf("VE %s: %s is %q, want a cgroup mount", ve.id, point, got)
			case count[point] != 1:
				t.Errorf("VE %s: %d mounts at %s, want 1", ve.id, count[point], point)
			case strings.HasPrefix(got, "cgroup rw,") != rw:
				t.Errorf("VE %s (nesting %v): %s mounted %q", ve.id, ve.nesting, point, got)
			}
		}
		if len(mounts) != len(names)+1 {
			t.Errorf("VE %s: mounts under /sys/fs/cgroup %v, want the tmpfs and %v", ve.id, mounts, names)
		}
		for _, l := range strings.Split(strings.TrimSpace(e.out(ve.id, "cat", "/proc/1/cgroup")), "\n") {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("VE %s: its init's cgroup %q is not its cgroup namespace's root", ve.id, l)
			}
		}
		if r := e.exec(ve.id, "sh", "-c", "mkdir /sys/fs/cgroup/systemd/vectl-t && rmdir /sys/fs/cgroup/systemd/vectl-t"); r.code != 0 {
			t.Errorf("VE %s: its root cannot make a cgroup in name=systemd:\n%s", ve.id, r)
		}
		r := e.exec(ve.id, "sh", "-c", "mkdir /sys/fs/cgroup/memory/vectl-t && rmdir /sys/fs/cgroup/memory/vectl-t")
		if (r.code == 0) != ve.nesting {
			t.Errorf("VE %s (nesting %v): making a memory cgroup inside:\n%s", ve.id, ve.nesting, r)
		}
		e.must("stop", "--fast", ve.id)
	}
}

// sysfsMountLine is one mount(2) of a sysfs that strace -f logged: pid, target and flags.
var sysfsMountLine = regexp.MustCompile(`^(\d+)\s+mount\("[^"]*", "([^"]*)", "sysfs", ([^,]*),`)

// maskMountLine is one read-only tmpfs mount(2) that strace -f logged, a masked directory:
// pid and target.
var maskMountLine = regexp.MustCompile(`^(\d+)\s+mount\("tmpfs", "([^"]*)", "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=1"\) = 0`)

// TestSysfsMount (issue 22): a privileged VE's /sys is mounted by the init wrapper, not by
// libcontainer's init, and the wrapper masks /sys/firmware under an empty read-only tmpfs
// after it, before the cgroup tree goes on /sys/fs/cgroup; a user-namespace VE's sysfs stays
// libcontainer's (the kernel lets a user namespace mount sysfs only where one is visible,
// and after pivot_root none is). Inside a running privileged VE /sys is a read-only sysfs of
// the VE's own network namespace, /sys/firmware an empty read-only tmpfs, and the cgroup
// tree is on it.
func TestSysfsMount(t *testing.T) {
	if cgroupV2() {
		t.Skip("a cgroup v2 host: libcontainer mounts a VE's cgroup2 below /sys itself, so /sys stays libcontainer's")
	}
	e := newEnv(t)
	e.withNetwork()
	tmpl := e.importBusybox()
	_, hostFirmware := os.Stat("/sys/firmware")
	priv, user, running := uniqueID(t), uniqueID(t), uniqueID(t)
	e.must("create", priv, "--ostemplate", tmpl, "--userns", "no")
	e.must("create", user, "--ostemplate", tmpl)
	e.must("create", running, "--ostemplate", tmpl, "--userns", "no", "--ipadd", testIP("4"))
	for _, id := range []string{priv, user} {
		e.setInit(id, "#!/bin/sh\nexit 0\n")
		// The first start of a kind of VE compiles its seccomp program and runs without
		// the wrapper.
		if r := e.vectl("start", "--foreground", id); r.code != 2 {
			t.Fatalf("start --foreground %s of an init that exits 0: want exit 2:\n%s", id, r)
		}
	}
	for _, ve := range []struct {
		id      string
		wrapper bool
	}{{priv, true}, {user, false}} {
		code, text := e.trace(t, "execve,mount", "start", "--foreground", ve.id)
		if code != 2 {
			t.Fatalf("traced start --foreground %s: exit %d, want 2:\n%s", ve.id, code, text)
		}
		// The wrapper runs in the process of libcontainer's init: its mounts are those that
		// process makes after it executed the wrapper.
		wrapper, sysfsBy, sysfsFlags, masked, order := "", "", "", false, []string{}
		for _, l := range strings.Split(text, "\n") {
			if pid, ok := wrapperExec(l); ok {
				wrapper = pid
			}
			if m := sysfsMountLine.FindStringSubmatch(l); m != nil && strings.HasSuffix(l, "= 0") {
				sysfsBy, sysfsFlags = "libcontainer's init", m[3]
				if m[1] == wrapper {
					sysfsBy = "the wrapper"
					order = append(order, m[2])
				}
			}
			if m := maskMountLine.FindStringSubmatch(l); m != nil && m[1] == wrapper && m[2] == "/sys/firmware" {
				masked = true
				order = append(order, m[2])
			}
			if m := fsMountLine.FindStringSubmatch(l); m != nil && m[1] == wrapper && m[2] == "/sys/fs/cgroup" {
				order = append(order, m[2])
			}
		}
		switch {
		case wrapper == "":
			t.Fatalf("VE %s: no process executed the init wrapper:\n%s", ve.id, text)
		case sysfsBy == "":
			t.Errorf("VE %s: no process mounted sysfs:\n%s", ve.id, text)
		case (sysfsBy == "the wrapper") != ve.wrapper:
			t.Errorf("VE %s: sysfs mounted by %s; by the wrapper: want %v", ve.id, sysfsBy, ve.wrapper)
		case !strings.Contains(sysfsFlags, "MS_RDONLY"):
			t.Errorf("VE %s: sysfs mounted with %s, want read-only", ve.id, sysfsFlags)
		}
		if !ve.wrapper {
			continue
		}
		if hostFirmware == nil && !masked {
			t.Errorf("VE %s: the wrapper did not mask /sys/firmware:\n%s", ve.id, text)
		}
		want := []string{"/sys", "/sys/fs/cgroup"}
		if hostFirmware == nil {
			want = append(want, "/sys/firmware")
		}
		if !slices.Equal(order, want) {
			t.Errorf("VE %s: the wrapper mounted %q in that order, want %q", ve.id, order, want)
		}
	}

	e.must("start", running)
	mi := e.out(running, "cat", "/proc/1/mountinfo")
	sys, firmware := "", ""
	for _, m := range mountEntries(mi) {
		switch m.point {
		case "/sys":
			sys = m.mount
		case "/sys/firmware":
			firmware = m.mount
		}
	}
	if !strings.HasPrefix(sys, "sysfs ro,") {
		t.Errorf("VE %s: /sys is %q, want a read-only sysfs:\n%s", running, sys, mi)
	}
	if hostFirmware == nil {
		if !strings.HasPrefix(firmware, "tmpfs ro") {
			t.Errorf("VE %s: /sys/firmware is %q, want a read-only tmpfs:\n%s", running, firmware, mi)
		}
		if got := e.out(running, "ls", "-A", "/sys/firmware"); got != "" {
			t.Errorf("VE %s: /sys/firmware lists %q, want nothing", running, got)
		}
	}
	// The VE's own network namespace: the interfaces of its /proc/net/dev, not the host's.
	sysNet := strings.Fields(e.out(running, "ls", "/sys/class/net"))
	var procNet []string
	for _, l := range strings.Split(e.out(running, "cat", "/proc/net/dev"), "\n")[2:] {
		if name, _, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			procNet = append(procNet, name)
		}
	}
	slices.Sort(procNet)
	if !slices.Equal(sysNet, procNet) || len(sysNet) < 2 {
		t.Errorf("VE %s: /sys/class/net lists %q, its /proc/net/dev %q: want the same, lo and its own interface", running, sysNet, procNet)
	}
	if r := e.exec(running, "sh", "-c", "echo 1 > /sys/kernel/uevent_helper"); r.code == 0 {
		t.Errorf("VE %s: its root wrote to its /sys", running)
	}
	if _, count := e.veCgroupMounts(running); count["/sys/fs/cgroup"] != 1 {
		t.Errorf("VE %s: %d mounts at /sys/fs/cgroup, want 1", running, count["/sys/fs/cgroup"])
	}
	e.must("stop", "--fast", running)
}
