//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vePids lists the processes in a VE's cgroup, as the kernel sees them.
func vePids(id string) []string {
	data, err := os.ReadFile(filepath.Join(veCgroupDir("devices", id), "cgroup.procs"))
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

// wantTruthfulStatus checks that status agrees with the kernel: running exactly when the
// VE's cgroup has processes. The killed vectl's monitor may still be finishing a boot or
// the VE its own shutdown, so the check is repeated until the VE has settled (booted or
// down), and then a running VE must accept exec.
func (e *env) wantTruthfulStatus(id string) {
	e.t.Helper()
	eventually(e.t, 30*time.Second, "the VE to settle", func() bool {
		line := e.statusLine(id)
		running := strings.Contains(line, " running")
		if has := len(vePids(id)) > 0; has != running {
			// Only a process appearing or leaving between the two reads may disagree.
			if again := e.statusLine(id); again == line {
				e.t.Fatalf("status %q but processes in the VE's cgroup: %v", line, vePids(id))
			}
			return false
		}
		return !running || e.exec(id, "true").code == 0
	})
}

// forkedChild returns the child that a background vectl start (pid) forked to run the start
// (container/monitor's startfork.c: the same command line; it becomes the VE's monitor), or
// 0 while there is none.
func forkedChild(pid int) int {
	self, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	for _, k := range strings.Fields(string(kids)) {
		if cmd, _ := os.ReadFile("/proc/" + k + "/cmdline"); len(self) > 0 && string(cmd) == string(self) {
			if n, err := strconv.Atoi(k); err == nil {
				return n
			}
		}
	}
	return 0
}

// killAfter starts vectl with args and SIGKILLs it after d (or lets it finish first). A
// background start's forked child (forkedChild), which would otherwise finish the start on
// its own, is killed too while the start has not returned, as when a whole start dies.
func (e *env) killAfter(d time.Duration, args ...string) (killed bool) {
	e.t.Helper()
	c := e.cmd(args...)
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(d)
	if child := forkedChild(c.Process.Pid); child != 0 {
		syscall.Kill(child, syscall.SIGKILL)
	}
	c.Process.Signal(syscall.SIGKILL)
	c.Wait()
	ws, _ := c.ProcessState.Sys().(syscall.WaitStatus)
	return ws.Signaled()
}

func TestKillDuringStart(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	killedSome := false
	for _, d := range []time.Duration{0, 2, 5, 10, 15, 20, 30, 45, 70} {
		killed := e.killAfter(d*time.Millisecond, "start", id)
		killedSome = killedSome || killed
		e.wantTruthfulStatus(id)
		// stop (or, for a VE that never started, the next start) finishes the job.
		if r := e.vectl("stop", "--fast", id); r.code != 0 && r.code != 31 {
			t.Fatalf("after a start killed at %v:\n%s", d*time.Millisecond, r)
		}
		e.wantStatus(id, "exist unmounted down")
		e.wantNoTrace(id)
	}
	if !killedSome {
		t.Fatal("no start was killed midway; the test proves nothing")
	}
	// And destroy after a killed start also leaves nothing. The monitor holds the VE's
	// lock until its boot is done, so stop and destroy wait for it.
	e.killAfter(15*time.Millisecond, "start", id)
	e.wantTruthfulStatus(id)
	if r := e.vectl("stop", "--fast", id); r.code != 0 && r.code != 31 {
		t.Fatalf("stop after a killed start:\n%s", r)
	}
	e.must("destroy", id)
	e.wantGone(id)
	e.wantNoTrace(id)
}

func TestKillDuringStop(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importDebian()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	for _, d := range []time.Duration{5, 20, 50, 100} {
		e.must("start", id, "--wait")
		e.killAfter(d*time.Millisecond, "stop", id)
		e.wantTruthfulStatus(id)
		if r := e.vectl("stop", id); r.code != 0 && r.code != 31 {
			t.Fatalf("stop after a stop killed at %v:\n%s", d*time.Millisecond, r)
		}
		e.wantStatus(id, "exist unmounted down")
		e.wantNoTrace(id)
	}
}

func TestKillMonitor(t *testing.T) {
	e := newEnv(t)
	id := e.startVE(e.importBusybox())
	pids := monitorPids(e, id)
	if len(pids) != 1 {
		t.Fatalf("monitor processes: %v, want one", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the monitor to die", func() bool { return len(monitorPids(e, id)) == 0 })
	e.wantStatus(id, "exist mounted running")
	e.out(id, "true")
	e.must("stop", id)
	e.wantStatus(id, "exist unmounted down")
	e.wantNoTrace(id)
}

// TestLeftStageMount: a start killed between staging the template (an idmapped copy on the
// private area's stage directory) and mounting the VE's root leaves that mount behind. The
// next start clears it without touching the staged tree: the files seen through the stage
// are the template's, and clearing once deleted what it could of them (an empty file went,
// a directory that held files stopped the start).
func TestLeftStageMount(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox())
	staged := filepath.Join(e.dir, "staged-tree")
	for _, d := range []string{staged, filepath.Join(staged, "bin")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"a-empty", "bin/sh"} {
		if err := os.WriteFile(filepath.Join(staged, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stage := filepath.Join(e.root, "private", id, "stage")
	if err := os.Mkdir(stage, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(staged, stage, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(stage, syscall.MNT_DETACH) })
	e.must("start", id, "--wait", "--timeout", "60")
	if m := mountsUnder(stage); len(m) > 0 {
		t.Errorf("the left stage mount is still there: %v", m)
	}
	for _, f := range []string{"a-empty", "bin/sh"} {
		if !fileExists(filepath.Join(staged, f)) {
			t.Errorf("clearing the stage removed %s of the staged tree", f)
		}
	}
	e.out(id, "true")
	e.must("stop", id)
	e.wantNoTrace(id)
}
