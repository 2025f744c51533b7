package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ociRuntime is runc or crun, run directly or inside a private mount namespace in which an
// empty file hides the unified hierarchy's controller list: crun 1.8 refuses this host's
// hybrid layout when /sys/fs/cgroup/unified lists a controller. runc is also run that way,
// as a control for what the wrapper costs.
type ociRuntime struct {
	label string // as shown in the results: "runc", "crun (unshare)"
	key   string // in sample keys: "runc", "crun-u"
	bin   string
	state string // --root
	empty string // the empty file bound over cgroup.controllers; "" runs the runtime directly
}

func (r *ociRuntime) argv(args ...string) []string {
	base := append([]string{r.bin, "--root", r.state}, args...)
	if r.empty == "" {
		return base
	}
	return append([]string{"unshare", "-m", "sh", "-c",
		`mount --bind "$0" /sys/fs/cgroup/unified/cgroup.controllers && exec "$@"`, r.empty}, base...)
}

// setupPeers finds which peers work on this host; one that does not is left out with a note.
func (b *bench) setupPeers() {
	var hide string
	if data, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil && strings.TrimSpace(string(data)) != "" {
		hide = filepath.Join(b.work, "empty")
		os.WriteFile(hide, nil, 0o644)
	}
	cands := []*ociRuntime{{label: "runc", key: "runc", bin: "runc"}}
	if hide != "" {
		cands = append(cands, &ociRuntime{label: "runc (unshare)", key: "runc-u", bin: "runc", empty: hide},
			&ociRuntime{label: "crun (unshare)", key: "crun-u", bin: "crun", empty: hide})
	} else {
		cands = append(cands, &ociRuntime{label: "crun", key: "crun", bin: "crun"})
	}
	for _, r := range cands {
		r.state = filepath.Join(b.work, "state-"+r.key)
		if _, err := exec.LookPath(r.bin); err != nil {
			b.note("%s: not measured: %v", r.label, err)
			continue
		}
		r := r
		b.onCleanup(r.label+" containers", func() error { return b.removeContainers(r) })
		// A smoke test: run /bin/true in the busybox rootfs.
		id := b.id(r.key + "-check")
		bundle, err := b.bundle(id, b.busyboxFS, []string{"/bin/true"})
		if err == nil {
			_, err = b.sh(r.argv("run", "-b", bundle, id)...)
		}
		if err != nil {
			b.note("%s: not measured: it cannot run a container here: %v", r.label, err)
			b.removeContainers(r)
			continue
		}
		b.runtimes = append(b.runtimes, r)
	}
	b.setupLXC()
	b.setupNspawn()
}

// runtime returns the runtime with key k, or nil when it does not work here.
func (b *bench) runtime(k string) *ociRuntime {
	for _, r := range b.runtimes {
		if r.key == k {
			return r
		}
	}
	return nil
}

// removeContainers deletes every container in the runtime's state directory.
func (b *bench) removeContainers(r *ociRuntime) error {
	if _, err := os.Stat(r.state); err != nil {
		return nil
	}
	out, err := b.stdout(r.argv("list", "-q")...)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range strings.Fields(out) {
		_, err := b.sh(r.argv("delete", "-f", id)...)
		errs = append(errs, err)
		os.Remove(filepath.Join("/sys/fs/cgroup/systemd", cgBench, id))
	}
	return errors.Join(errs...)
}

// bundle writes a runtime bundle for container id from the OCI spec vectl generated for a
// busybox VE, adapted: the given root filesystem and process, a new network namespace (with
// its loopback, as vectl gives a VE without addresses) instead of vectl's pinned one, a
// cgroup under /vectl-bench, no terminal, and ociVersion 1.0.2 (crun 1.8.1 rejects 1.3.0).
func (b *bench) bundle(id, rootfs string, args []string) (string, error) {
	var s map[string]any
	data, _ := json.Marshal(b.spec)
	if err := json.Unmarshal(data, &s); err != nil {
		return "", err
	}
	s["ociVersion"] = "1.0.2"
	s["root"] = map[string]any{"path": rootfs, "readonly": false}
	s["hostname"] = id
	proc, _ := s["process"].(map[string]any)
	linux, _ := s["linux"].(map[string]any)
	if proc == nil || linux == nil {
		return "", errors.New("vectl's OCI spec has no process or linux section")
	}
	proc["args"] = args
	proc["terminal"] = false
	delete(proc, "consoleSize")
	linux["cgroupsPath"] = "/" + cgBench + "/" + id
	// vectl spells "no limit" -1 and writes it; crun 1.8.1 writes -1 as it is to pids.max
	// (EINVAL) and as 2^64-1 to cpu.cfs_quota_us (ERANGE). Leaving these limits out means
	// the same for every runtime.
	if res, ok := linux["resources"].(map[string]any); ok {
		dropUnlimited(res, "pids", "limit")
		dropUnlimited(res, "memory", "limit", "swap")
		if dropUnlimited(res, "cpu", "quota") {
			if cpu, ok := res["cpu"].(map[string]any); ok {
				delete(cpu, "period")
			}
		}
	}
	nss, _ := linux["namespaces"].([]any)
	for _, n := range nss {
		if m, ok := n.(map[string]any); ok && m["type"] == "network" {
			delete(m, "path")
		}
	}
	mounts, _ := s["mounts"].([]any)
	console := false
	for _, x := range mounts {
		m, _ := x.(map[string]any)
		switch m["destination"] {
		case "/sys/fs/cgroup/systemd":
			m["source"] = filepath.Join("/sys/fs/cgroup/systemd", cgBench, id)
		case "/dev/console":
			console = true
		}
	}
	if !console {
		// As vectl does for a VE without a console: /dev/console is the host's /dev/null,
		// bound read-only. Read-write, the Debian peer's console getty (root on the host in a
		// privileged container) chowned and chmodded the host's /dev/null to root:tty 0600,
		// after which no unprivileged process on the host could open it (criu's restore in a
		// user-namespace VE failed on it). Writes to the device work through a read-only bind.
		mounts = append(mounts, map[string]any{"destination": "/dev/console", "type": "bind",
			"source": "/dev/null", "options": []string{"bind", "ro", "nosuid", "noexec"}})
	}
	s["mounts"] = mounts
	dir := filepath.Join(b.work, "bundles", id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out, _ := json.MarshalIndent(s, "", "  ")
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), out, 0o644)
}

// dropUnlimited removes the -1 values of fields from section of OCI resources, and the
// section when it is left empty. It tells whether it removed anything.
func dropUnlimited(res map[string]any, section string, fields ...string) bool {
	m, ok := res[section].(map[string]any)
	if !ok {
		return false
	}
	dropped := false
	for _, f := range fields {
		if v, ok := m[f].(float64); ok && v < 0 {
			delete(m, f)
			dropped = true
		}
	}
	if len(m) == 0 {
		delete(res, section)
	}
	return dropped
}

// prepCgroup makes the container's name=systemd cgroup, which the spec binds into it (runc
// makes it itself, crun does not); dropCgroup removes it after the container is gone.
func prepCgroup(id string) {
	if fileExists("/sys/fs/cgroup/systemd") {
		os.MkdirAll(filepath.Join("/sys/fs/cgroup/systemd", cgBench, id), 0o755)
	}
}

func dropCgroup(id string) {
	os.Remove(filepath.Join("/sys/fs/cgroup/systemd", cgBench, id))
}

// initPid returns the pid of a running container's init from the runtime's state.
func (b *bench) initPid(r *ociRuntime, id string) (int, error) {
	out, err := b.stdout(r.argv("state", id)...)
	if err != nil {
		return 0, err
	}
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return 0, fmt.Errorf("%s state %s: %w", r.bin, id, err)
	}
	return st.Pid, nil
}

// lxcPeer drives LXC containers kept under the scratch directory (lxc-* -P).
type lxcPeer struct {
	b    *bench
	path string
	log  string // for the commands whose errors LXC does not print
}

func (l *lxcPeer) argv(tool, name string, args ...string) []string {
	return append([]string{tool, "-P", l.path, "-n", name}, args...)
}

// define writes an LXC container whose root is rootfs, with a network namespace holding only
// its loopback, and its cgroups (and its monitor's) under /vectl-bench.
func (l *lxcPeer) define(name, rootfs string) error {
	dir := filepath.Join(l.path, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := strings.Join([]string{
		"lxc.uts.name = " + name,
		"lxc.rootfs.path = dir:" + rootfs,
		"lxc.init.cmd = /sbin/init",
		"lxc.net.0.type = empty",
		"lxc.apparmor.profile = unconfined",
		"lxc.autodev = 1",
		"lxc.pty.max = 16",
		"lxc.tty.max = 0",
		"lxc.console.path = none",
		"lxc.mount.auto = proc:mixed sys:ro cgroup:mixed",
		"lxc.cap.drop = sys_module mac_admin mac_override sys_time sys_rawio",
		"lxc.cgroup.dir.container = " + cgBench + "/lxc-" + name,
		"lxc.cgroup.dir.monitor = " + cgBench + "/lxcmon-" + name,
		"lxc.cgroup.dir.monitor.pivot = " + cgBench + "/lxc.pivot",
		"",
	}, "\n")
	return os.WriteFile(filepath.Join(dir, "config"), []byte(conf), 0o644)
}

func (l *lxcPeer) running(name string) bool {
	out, _ := l.b.stdout(l.argv("lxc-info", name, "-s", "-H")...)
	return strings.TrimSpace(out) == "RUNNING"
}

func (l *lxcPeer) pid(name string) (int, error) {
	out, err := l.b.stdout(l.argv("lxc-info", name, "-p", "-H")...)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(out))
}

// removeAll stops and destroys every container under the LXC path.
func (l *lxcPeer) removeAll() error {
	ents, _ := os.ReadDir(l.path)
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if l.running(e.Name()) {
			_, err := l.b.sh(l.argv("lxc-stop", e.Name(), "-k")...)
			errs = append(errs, err)
		}
		// lxc-destroy would delete the rootfs a container points at; they point into the
		// scratch directory (copies) or at vectl's template, which must stay: remove only
		// the container's own directory.
		errs = append(errs, os.RemoveAll(filepath.Join(l.path, e.Name())))
	}
	return errors.Join(errs...)
}

func (b *bench) setupLXC() {
	if _, err := exec.LookPath("lxc-start"); err != nil {
		b.note("LXC: not measured: %v", err)
		return
	}
	l := &lxcPeer{b: b, path: filepath.Join(b.work, "lxc"), log: filepath.Join(b.work, "lxc.log")}
	b.onCleanup("LXC containers", l.removeAll)
	name := b.id("lxc-check")
	err := l.define(name, b.busyboxFS)
	if err == nil {
		_, err = b.sh(l.argv("lxc-start", name, "-d", "-o", l.log, "-l", "ERROR")...)
	}
	if err == nil && !l.running(name) {
		err = errors.New("lxc-start returned but the container is not running")
	}
	if err == nil {
		_, err = b.sh(l.argv("lxc-stop", name, "-k")...)
	}
	if err != nil {
		log, _ := os.ReadFile(l.log)
		b.note("LXC: not measured: %v %s", err, strings.TrimSpace(lastLines(string(log), 3)))
		l.removeAll()
		return
	}
	os.RemoveAll(filepath.Join(l.path, name))
	b.lxc = l
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// nspawnCgroups are the cgroups (name=systemd and cgroup2) systemd-nspawn is started in:
// with --keep-unit and no systemd on the host it makes its "payload" and "supervisor"
// cgroups inside the cgroup it runs in, and leaves them.
func nspawnCgroups() []string {
	var dirs []string
	for _, h := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if fileExists(filepath.Join(h, "cgroup.procs")) && (h != "/sys/fs/cgroup" || fileExists(filepath.Join(h, "cgroup.controllers"))) {
			dirs = append(dirs, filepath.Join(h, cgBench, "nspawn"))
		}
	}
	return dirs
}

// nspawnArgv runs a command in a copy of the busybox rootfs with systemd-nspawn, without
// machined registration (there is no systemd on the host to register with) and with a private
// network, from a small shell that first moves itself into the bench's nspawn cgroups.
func (b *bench) nspawnArgv(args ...string) []string {
	script := ""
	for _, d := range nspawnCgroups() {
		script += "echo $$ > " + filepath.Join(d, "cgroup.procs") + " && "
	}
	return append([]string{"sh", "-c", script + `exec "$@"`, "sh", b.nspawn, "-q", "--register=no", "--keep-unit",
		"--private-network", "-D", b.busyboxFS}, args...)
}

// nspawnTidy removes the cgroups nspawn left below the bench's nspawn cgroups.
func nspawnTidy() error {
	var errs []error
	for _, d := range nspawnCgroups() {
		subs, _ := os.ReadDir(d)
		for _, s := range subs {
			if s.IsDir() {
				errs = append(errs, removeCgroupTree(filepath.Join(d, s.Name())))
			}
		}
	}
	return errors.Join(errs...)
}

func (b *bench) setupNspawn() {
	p, err := exec.LookPath("systemd-nspawn")
	if err != nil {
		b.note("systemd-nspawn: not measured: %v", err)
		return
	}
	b.nspawn = p
	for _, d := range nspawnCgroups() {
		if err = os.MkdirAll(d, 0o755); err != nil {
			break
		}
	}
	before := cgroupSnapshot()
	if err == nil {
		_, err = b.sh(b.nspawnArgv("/bin/true")...)
	}
	if err == nil {
		err = nspawnTidy()
	}
	// It must not have made cgroups anywhere else.
	if extra := cgroupsAdded(before, cgroupSnapshot()); err == nil && len(extra) > 0 {
		err = fmt.Errorf("it left cgroups %v", extra)
		for _, c := range extra {
			// Only what nspawn names its own: anything else may be someone else's.
			if base := filepath.Base(c); base == "payload" || base == "supervisor" || strings.Contains(base, "nspawn") {
				removeCgroupTree(c)
			}
		}
	}
	if err != nil {
		b.note("systemd-nspawn: not measured: %v", err)
		b.nspawn = ""
	}
}

// cgroupSnapshot lists the cgroups at the top two levels of every hierarchy.
func cgroupSnapshot() map[string]bool {
	m := map[string]bool{}
	for _, root := range cgroupMounts() {
		l1, _ := filepath.Glob(filepath.Join(root, "*"))
		l2, _ := filepath.Glob(filepath.Join(root, "*", "*"))
		for _, p := range append(l1, l2...) {
			if st, err := os.Stat(p); err == nil && st.IsDir() {
				m[p] = true
			}
		}
	}
	return m
}

func cgroupsAdded(before, after map[string]bool) []string {
	var out []string
	for p := range after {
		if !before[p] && !strings.Contains(p, "/"+cgBench) && !strings.Contains(p, "/vectl/") {
			out = append(out, p)
		}
	}
	return out
}

// waitGone polls until pid has exited.
func waitGone(pid int, timeout time.Duration) bool {
	return waitFor(timeout, 2*time.Millisecond, func() bool { return !pidAlive(pid) })
}
