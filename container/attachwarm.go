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
// throwaway thread moves itself into vectl's own parent cgroup in the pids hierarchy and
// exits: the grace period then passes in the background while vectl loads the VE's state,
// mounts its root and starts its helper processes, and libcontainer's attach finds the
// lock ready. Nothing outlives the thread, and no cgroup but vectl's own is written.
//
// It returns at once. Failures do not matter: the attach then simply waits as before.
// Where the kernel expedites grace periods (idle.GracePeriodsExpedited) the first attach
// after a quiet spell took 65 us on the machine of 2026-12-06, less than the throwaway
// thread costs, and nothing is done.
func (m *Manager) warmCgroupAttach() {
	if !m.attachWaits() {
		return
	}
	tasks := filepath.Join("/sys/fs/cgroup/pids", m.opts.CgroupParent, "tasks")
	go func() {
		// Never unlocked: the Go runtime ends the thread with this goroutine, so the
		// moved thread runs nothing else.
		runtime.LockOSThread()
		fd, err := unix.Open(tasks, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		_, _ = unix.Write(fd, []byte(strconv.Itoa(unix.Gettid())))
	}()
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
