//go:build integration && vmtest

// Tests that need systemd as the host's PID 1: the units vectl generates and vectl boot.
// They run inside the test VM (make vm-test, integration/vm/), never on a developer's host:
// they install units in /etc/systemd/system and start and stop them.

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// requireSystemdHost fails unless systemd is PID 1.
func requireSystemdHost(t *testing.T) {
	t.Helper()
	requireTool(t, "systemctl")
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Fatal("these tests need systemd as PID 1 (run them with make vm-test)")
	}
}

// systemctl runs systemctl and returns its trimmed output; it fails the test on an error
// unless allowFail.
func systemctl(t *testing.T, allowFail bool, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemctl", args...).CombinedOutput()
	if err != nil && !allowFail {
		t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// unitProp returns one property of a unit.
func unitProp(t *testing.T, unit, prop string) string {
	t.Helper()
	return systemctl(t, false, "show", "-p", prop, "--value", unit)
}

// installUnit writes a unit file, reloads systemd, and removes both again at cleanup (after
// stopping the unit should the test have failed with it running).
func installUnit(t *testing.T, name, content string) {
	t.Helper()
	path := filepath.Join("/etc/systemd/system", name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		systemctl(t, true, "stop", name)
		os.Remove(path)
		systemctl(t, true, "daemon-reload")
		systemctl(t, true, "reset-failed", name)
	})
	systemctl(t, false, "daemon-reload")
}

// wantGlobalArgs checks that a generated unit calls this very vectl binary with the env's
// global options, so that it manages the same VEs as the test.
func (e *env) wantGlobalArgs(unit string) {
	e.t.Helper()
	self, _ := filepath.EvalSymlinks(vectlBin)
	want := []string{self + " ", "--root " + e.root, "--run-dir " + e.run, "--log-dir " + e.log,
		"--firewall-table " + testFwTable}
	if cgroupManager != "" {
		want = append(want, "--cgroup-manager "+cgroupManager)
	}
	for _, w := range want {
		if !strings.Contains(unit, "ExecStart="+self) || !strings.Contains(unit, w) {
			e.t.Fatalf("unit does not run %q with %q:\n%s", self, w, unit)
		}
	}
}

// TestSystemdUnit runs a Debian VE as the service vectl unit prints: Type=notify (systemctl
// start returns once the VE has booted), an in-VE reboot restarts the VE inside the same
// service, systemctl stop shuts it down through the VE's own systemd, vectl restart of the
// service's VE boots it again inside the service, and vectl stop of it ends the service
// cleanly (no restart).
func TestSystemdUnit(t *testing.T) {
	requireSystemdHost(t)
	e := newEnv(t)
	tmpl := e.importDebian()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--hostname", "h"+id)
	unit := e.must("unit", id).stdout
	e.wantGlobalArgs(unit)
	for _, w := range []string{"Type=notify", "start --foreground --wait", "KillMode=mixed"} {
		if !strings.Contains(unit, w) {
			t.Fatalf("unit lacks %q:\n%s", w, unit)
		}
	}
	name := "vectl-ve-" + id + ".service"
	installUnit(t, name, unit)

	start := time.Now()
	systemctl(t, false, "start", name)
	t.Logf("systemctl start took %v", time.Since(start).Round(time.Millisecond))
	// Type=notify: when systemctl start returns, the VE has booted.
	if st := unitProp(t, name, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after systemctl start\n%s", name, st, systemctl(t, true, "status", "--no-pager", name))
	}
	e.wantStatus(id, "exist mounted running")
	if got := e.out(id, "systemctl", "is-system-running"); got != "running" {
		t.Fatalf("systemctl is-system-running in the VE = %q right after systemctl start", got)
	}
	mainPID := unitProp(t, name, "MainPID")
	if mainPID == "0" || mainPID == "" {
		t.Fatalf("%s has no main process", name)
	}
	// The main process rests in the idle loop once READY=1 is sent (the same process).
	pid, _ := strconv.Atoi(mainPID)
	wantResting(t, pid)

	// An in-VE reboot: the same service (same main process, no restart) runs the VE again
	// with a new boot id.
	boot1 := e.out(id, "cat", "/proc/sys/kernel/random/boot_id")
	e.exec(id, "reboot")
	eventually(t, 120*time.Second, "the VE to come back with a new boot id", func() bool {
		r := e.exec(id, "cat", "/proc/sys/kernel/random/boot_id")
		b := strings.TrimSpace(r.stdout)
		return r.code == 0 && b != "" && b != boot1
	})
	eventually(t, 120*time.Second, "systemd to be running in the VE after the reboot", func() bool {
		return strings.TrimSpace(e.exec(id, "systemctl", "is-system-running", "--wait").stdout) == "running"
	})
	if st := unitProp(t, name, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s after the in-VE reboot", name, st)
	}
	if pid := unitProp(t, name, "MainPID"); pid != mainPID {
		t.Fatalf("%s main process changed across the in-VE reboot: %s -> %s", name, mainPID, pid)
	}
	if n := unitProp(t, name, "NRestarts"); n != "0" {
		t.Fatalf("%s was restarted by systemd (NRestarts=%s): the reboot should stay inside vectl", name, n)
	}
	wantResting(t, pid) // so that systemctl stop reaches the idle loop

	// systemctl stop: the VE's own systemd shuts it down (its console says so), then vectl
	// tears everything down and the service ends cleanly.
	logPath := filepath.Join(e.log, id+".console")
	before, _ := os.ReadFile(logPath)
	start = time.Now()
	systemctl(t, false, "stop", name)
	t.Logf("systemctl stop took %v", time.Since(start).Round(time.Millisecond))
	if st := unitProp(t, name, "ActiveState"); st != "inactive" {
		t.Fatalf("%s is %s after systemctl stop\n%s", name, st, systemctl(t, true, "status", "--no-pager", name))
	}
	if r := unitProp(t, name, "Result"); r != "success" {
		t.Fatalf("%s ended with result %s", name, r)
	}
	after, _ := os.ReadFile(logPath)
	if tail := string(after[len(before):]); !strings.Contains(tail, "Reached target shutdown.target") ||
		!strings.Contains(tail, "Halting system.") {
		t.Fatalf("the VE's systemd did not shut down by itself; console log:\n%s", tail)
	}
	e.wantStatus(id, "exist unmounted down")
	e.wantNoTrace(id)

	// vectl restart (as vzctl restart would) of the service's VE: the service's main process
	// boots the VE again, so the VE stays in the service (same main process, no restart by
	// systemd), with a new boot id.
	systemctl(t, false, "start", name)
	mainPID = unitProp(t, name, "MainPID")
	pid, _ = strconv.Atoi(mainPID)
	wantResting(t, pid)
	boot1 = e.out(id, "cat", "/proc/sys/kernel/random/boot_id")
	e.must("restart", id)
	if b := e.out(id, "cat", "/proc/sys/kernel/random/boot_id"); b == boot1 {
		t.Fatalf("the VE's boot id is the same after vectl restart")
	}
	eventually(t, 120*time.Second, "systemd to be running in the VE after vectl restart", func() bool {
		return strings.TrimSpace(e.exec(id, "systemctl", "is-system-running", "--wait").stdout) == "running"
	})
	time.Sleep(3 * time.Second) // RestartSec=2: a restart by systemd would have begun
	if st, pid, n := unitProp(t, name, "ActiveState"), unitProp(t, name, "MainPID"), unitProp(t, name, "NRestarts"); st != "active" || pid != mainPID || n != "0" {
		t.Fatalf("%s after vectl restart: %s, MainPID %s (was %s), NRestarts=%s; want active, the same, 0\n%s",
			name, st, pid, mainPID, n, systemctl(t, true, "status", "--no-pager", name))
	}

	// vectl stop (as vzctl stop would) of the service's VE: the service's main process exits
	// 0, so the service ends cleanly and Restart=on-failure does not start the VE again.
	wantResting(t, pid)
	e.must("stop", id)
	eventually(t, 30*time.Second, "the service to end after vectl stop", func() bool {
		return unitProp(t, name, "ActiveState") == "inactive"
	})
	if r := unitProp(t, name, "Result"); r != "success" {
		t.Fatalf("%s ended with result %s after vectl stop\n%s", name, r, systemctl(t, true, "status", "--no-pager", name))
	}
	time.Sleep(3 * time.Second) // RestartSec=2: a restart would have begun
	if st, n := unitProp(t, name, "ActiveState"), unitProp(t, name, "NRestarts"); st != "inactive" || n != "0" {
		t.Fatalf("%s is %s (NRestarts=%s) after vectl stop: systemd started the VE again", name, st, n)
	}
	e.wantStatus(id, "exist unmounted down")
	e.wantNoTrace(id)
}

// TestBootOnboot: vectl boot starts exactly the VEs marked onboot, higher bootorder first,
// and boot --stop stops them; the same through the vectl-boot.service unit.
func TestBootOnboot(t *testing.T) {
	requireSystemdHost(t)
	e := newEnv(t)
	tmpl := e.importBusybox()
	low, high, off := uniqueID(t), uniqueID(t), uniqueID(t)
	for _, id := range []string{low, high, off} {
		e.must("create", id, "--ostemplate", tmpl)
	}
	e.must("set", low, "--onboot", "yes", "--bootorder", "10", "--save")
	e.must("set", high, "--onboot", "yes", "--bootorder", "20", "--save")
	e.must("set", off, "--bootorder", "30", "--save") // an order alone does not start it

	wantRunning := func(when string) {
		t.Helper()
		for _, id := range []string{low, high} {
			if !strings.HasSuffix(e.statusLine(id), " running") {
				t.Fatalf("%s: onboot VE %s is not running: %s", when, id, e.statusLine(id))
			}
		}
		if st := e.statusLine(off); st != "VEID "+off+" exist unmounted down" {
			t.Fatalf("%s: VE %s without onboot: %s", when, off, st)
		}
	}
	wantStopped := func(when string) {
		t.Helper()
		for _, id := range []string{low, high, off} {
			if st := e.statusLine(id); st != "VEID "+id+" exist unmounted down" {
				t.Fatalf("%s: VE %s: %s", when, id, st)
			}
			e.wantNoTrace(id)
		}
	}

	r := e.must("boot")
	if got, want := strings.TrimSpace(r.stdout), fmt.Sprintf("VE %s started\nVE %s started", high, low); got != want {
		t.Fatalf("vectl boot printed %q, want %q", got, want)
	}
	wantRunning("after vectl boot")
	if h, l := e.initStart(high), e.initStart(low); h > l {
		t.Fatalf("bootorder 20 started after bootorder 10 (init start %d > %d)", h, l)
	}
	// Running VEs are left alone.
	if r := e.must("boot"); strings.TrimSpace(r.stdout) != "" {
		t.Fatalf("a second vectl boot started something: %q", r.stdout)
	}
	r = e.must("boot", "--stop")
	if got, want := strings.TrimSpace(r.stdout), fmt.Sprintf("VE %s stopped\nVE %s stopped", low, high); got != want {
		t.Fatalf("vectl boot --stop printed %q, want %q", got, want)
	}
	wantStopped("after vectl boot --stop")

	// vectl-boot.service, under a name of the test's own so that a host's real unit is never
	// touched.
	unit := e.must("unit", "--boot").stdout
	e.wantGlobalArgs(unit)
	if !strings.Contains(unit, " boot\n") || !strings.Contains(unit, "ExecStop=") || !strings.Contains(unit, " boot --stop\n") {
		t.Fatalf("vectl-boot unit:\n%s", unit)
	}
	name := "vectl-boot-it" + low + ".service"
	installUnit(t, name, unit)
	systemctl(t, false, "start", name)
	if st := unitProp(t, name, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s", name, st)
	}
	wantRunning("after systemctl start " + name)
	systemctl(t, false, "stop", name)
	if st := unitProp(t, name, "ActiveState"); st != "inactive" {
		t.Fatalf("%s is %s after stop\n%s", name, st, systemctl(t, true, "status", "--no-pager", name))
	}
	wantStopped("after systemctl stop " + name)
}

// TestCgroupV2Delegation: on cgroup v2 (with nsdelegate, as systemd mounts it) the VE's
// cgroup is the root of its cgroup namespace, mounted writable so that the VE's systemd
// manages its own subtree, while the VE's own limits stay out of its reach.
func TestCgroupV2Delegation(t *testing.T) {
	if !cgroupV2() {
		t.Fatal("needs the unified cgroup hierarchy")
	}
	e := newEnv(t)
	tmpl := e.importDebian()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--ram", "256M", "--numproc", "500")
	e.must("start", id, "--wait")

	if got := e.out(id, "cat", "/proc/1/cgroup"); got != "0::/init.scope" {
		t.Fatalf("the VE's init is in cgroup %q, want its own namespace's /init.scope", got)
	}
	if m := e.out(id, "sh", "-c", "grep ' /sys/fs/cgroup ' /proc/self/mounts"); !strings.Contains(m, "cgroup2 rw,") {
		t.Fatalf("the VE's cgroup2 mount is not writable: %s", m)
	}
	// The VE's systemd runs its services in cgroups of their own, in its subtree.
	dir := veCgroupDir("", id)
	for _, sub := range []string{"init.scope", "system.slice/systemd-journald.service"} {
		procs, err := os.ReadFile(filepath.Join(dir, sub, "cgroup.procs"))
		if err != nil || len(strings.Fields(string(procs))) == 0 {
			t.Fatalf("the VE's systemd has no processes in %s/%s: %v", dir, sub, err)
		}
	}

	// The VE cannot raise its own limits: nsdelegate refuses writes to the namespace root's
	// control files.
	for _, f := range []string{"memory.max", "pids.max", "memory.swap.max"} {
		if r := e.exec(id, "sh", "-c", "echo max > /sys/fs/cgroup/"+f); r.code == 0 {
			t.Fatalf("the VE could write its own %s:\n%s", f, r)
		}
	}
	if got := cgroupValue(t, "memory", id, "memory.limit_in_bytes"); got != 256<<20 {
		t.Fatalf("memory.max = %d after the VE's attempt", got)
	}
	if got := cgroupValue(t, "pids", id, "pids.max"); got != 500 {
		t.Fatalf("pids.max = %d after the VE's attempt", got)
	}
	e.must("stop", id)
	e.wantNoTrace(id)
}

// TestCgroupManagerConfigFile: with neither --cgroup-manager nor VECTL_CGROUP_MANAGER,
// cgroup_manager in /etc/vectl/vectl.json selects the systemd driver: the VE runs in the
// scope vectl-ID.scope of vectl.slice, a unit systemd knows, and stop removes it.
func TestCgroupManagerConfigFile(t *testing.T) {
	requireSystemdHost(t)
	const conf = "/etc/vectl/vectl.json"
	old, oldErr := os.ReadFile(conf)
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(`{"cgroup_manager": "systemd"}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if oldErr == nil {
			os.WriteFile(conf, old, 0o644)
		} else {
			os.Remove(conf)
		}
	})
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	// vectl as a node's admin runs it: the driver comes from the config file alone.
	run := func(args ...string) {
		t.Helper()
		c := e.cmd(args...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "VECTL_CGROUP_MANAGER=") {
				c.Env = append(c.Env, kv)
			}
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("vectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("create", id, "--ostemplate", tmpl, "--numproc", "200")
	run("start", id, "--wait")
	scope := "vectl-" + id + ".scope"
	dir := filepath.Join("/sys/fs/cgroup/vectl.slice", scope)
	if procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs")); err != nil || len(strings.Fields(string(procs))) == 0 {
		t.Fatalf("the VE is not in %s: %v", dir, err)
	}
	if st := unitProp(t, scope, "ActiveState"); st != "active" {
		t.Fatalf("%s is %s", scope, st)
	}
	if got := unitProp(t, scope, "TasksMax"); got != "200" {
		t.Errorf("%s TasksMax = %s, want the VE's numproc 200", scope, got)
	}
	run("stop", id)
	if fileExists(dir) {
		t.Fatalf("%s left after stop", dir)
	}
	if st := unitProp(t, scope, "ActiveState"); st == "active" {
		t.Fatalf("%s still active after stop", scope)
	}
	run("destroy", id)
}
