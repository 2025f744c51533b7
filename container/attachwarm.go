package container

import (
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idle"
)

// warmCgroupAttach makes the next cgroup attach of this start or exec cheap, on cgroup v1
// with the fs driver. Moving a task into a cgroup (what libcontainer does with the VE's init
// and with every exec'd process) takes the kernel's global cgroup_threadgroup_rwsem for
// writing, and the first writer after a quiet spell waits a full RCU grace period for it
// (6 to 18 ms on the reference machine, more than a third of a busybox VE's start); a
// writer that comes within about one grace period of the previous one does not wait. So a
// thread moves itself into vectl's own parent cgroup in the pids hierarchy and back: the
// grace period then passes in the background while vectl loads the VE's state, mounts its
// root and starts its helper processes, and libcontainer's attach finds the lock ready.
// Nothing stays in the parent cgroup, and no cgroup but vectl's own and its process's is
// written.
//
// It returns at once. Failures do not matter: the attach then simply waits as before.
// Where the kernel expedites grace periods (idle.GracePeriodsExpedited) the first attach
// after a quiet spell took 65 us on the machine of 2026-12-06, less than the warming thread
// cost then, and nothing is done.
func (m *Manager) warmCgroupAttach() {
	if !m.attachWaits() {
		return
	}
	tasks := filepath.Join("/sys/fs/cgroup/pids", m.opts.CgroupParent, "tasks")
	go func() {
		runtime.LockOSThread()
		if warmAttach(tasks) {
			runtime.UnlockOSThread()
		}
		// Else the thread ends with this goroutine, as every warming thread did before
		// 2026-12-08.
	}()
}

// warmAttach moves the calling thread, locked to its goroutine, into the cgroup of the
// tasks file and back into its own pids cgroup, so that the Go runtime can use the thread
// again (a thread discarded and made again costs about 0.1 ms of CPU, 2026-12-08); the
// second attach comes right after the first and does not wait. It tells whether the thread
// is where it was (also when it could not move).
func warmAttach(tasks string) bool {
	home := pidsCgroupOf("/proc/thread-self/cgroup")
	tid := []byte(strconv.Itoa(unix.Gettid()))
	if writeTasks(tasks, tid) != nil {
		return true
	}
	return home != "" && writeTasks(filepath.Join("/sys/fs/cgroup/pids", home, "tasks"), tid) == nil
}

// writeTasks writes tid into a cgroup v1 tasks file.
func writeTasks(tasks string, tid []byte) error {
	fd, err := unix.Open(tasks, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, tid)
	return err
}

// pidsCgroupOf returns the pids hierarchy's cgroup in a /proc cgroup file (the line
// "N:pids:/PATH"), or "" when it has none or cannot be read.
func pidsCgroupOf(file string) string {
	m, _ := cgroups.ParseCgroupFile(file)
	return m["pids"]
}

// keepCgroupAttachWarm repeats warmCgroupAttach every few milliseconds, well within a grace
// period, until the returned function is called: for an attach that follows a step of
// unknown length (a user-namespace VE's restore moves systemd's services back into their
// cgroups once criu is done, placeTasks, ~60 ms after libcontainer's own attach).
func (m *Manager) keepCgroupAttachWarm() (stop func()) {
	if !m.attachWaits() {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(4 * time.Millisecond)
		defer tick.Stop()
		for {
			m.warmCgroupAttach()
			select {
			case <-quit:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// attachWaits tells whether a cgroup attach of this vectl can wait out a grace period
// first: on cgroup v1 with the fs driver, where the kernel does not expedite them.
func (m *Manager) attachWaits() bool {
	return m.opts.CgroupManager != CgroupSystemd && !cgroups.IsCgroup2UnifiedMode() && !idle.GracePeriodsExpedited()
}
