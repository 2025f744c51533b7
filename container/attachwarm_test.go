package container

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

func TestPidsCgroupOf(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, text, want string }{
		{"hybrid", "12:pids:/user.slice/user-0.slice/session-3.scope\n11:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/x\n0::/user.slice/x\n", "/user.slice/user-0.slice/session-3.scope"},
		{"with other controllers", "4:blkio,pids:/vectl/101\n", "/vectl/101"},
		{"root", "7:pids:/\n", "/"},
		{"unified only", "0::/system.slice/vectl.service\n", ""},
		{"named hierarchy that only looks like it", "1:name=pids:/x\n", ""},
		{"empty", "", ""},
	} {
		f := filepath.Join(dir, c.name)
		if err := os.WriteFile(f, []byte(c.text), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := pidsCgroupOf(f); got != c.want {
			t.Errorf("%s: pidsCgroupOf = %q, want %q", c.name, got, c.want)
		}
	}
	if got := pidsCgroupOf(filepath.Join(dir, "missing")); got != "" {
		t.Errorf("a missing file: pidsCgroupOf = %q, want \"\"", got)
	}
}

// TestWarmAttach: the warming thread moves into the parent cgroup's pids hierarchy and comes
// back to its own pids cgroup, so that it can run other goroutines again; nothing stays in
// the parent. A parent that does not exist moves nothing, and the thread is where it was.
func TestWarmAttach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("moving a thread between cgroups needs root (run as root: make check)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/pids/tasks"); err != nil {
		t.Skip("no cgroup v1 pids hierarchy here: the warm-up is for cgroup v1 only")
	}
	parent := filepath.Join("/sys/fs/cgroup/pids", "vectl-unit-warm-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(parent) })
	type result struct {
		before, after string
		back          bool
		missingBack   bool
		afterMissing  string
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var r result
		r.before = pidsCgroupOf("/proc/thread-self/cgroup")
		r.back = warmAttach(filepath.Join(parent, "tasks"))
		r.after = pidsCgroupOf("/proc/thread-self/cgroup")
		r.missingBack = warmAttach(filepath.Join(parent, "missing", "tasks"))
		r.afterMissing = pidsCgroupOf("/proc/thread-self/cgroup")
		done <- r
	}()
	r := <-done
	if r.before == "" {
		t.Fatal("no pids line in /proc/thread-self/cgroup")
	}
	if !r.back || r.after != r.before {
		t.Errorf("warmAttach: back %v, the thread's pids cgroup %q, want true and %q", r.back, r.after, r.before)
	}
	if data, err := os.ReadFile(filepath.Join(parent, "tasks")); err != nil || len(data) != 0 {
		t.Errorf("the parent's tasks after the warm-up: %q, %v; want none", data, err)
	}
	if !r.missingBack || r.afterMissing != r.before {
		t.Errorf("warmAttach of a missing cgroup: back %v, the thread's pids cgroup %q, want true and %q", r.missingBack, r.afterMissing, r.before)
	}
}
