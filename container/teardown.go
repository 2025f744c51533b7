package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/network"
)

// teardown undoes a start in reverse order: kill what is left in the VE's cgroup, remove
// libcontainer's state and the cgroups, release the network namespace, stop a stale monitor,
// unmount the root (unless keepRoot) and remove the run directory. Every step accepts
// "already gone", so teardown finishes the job after any crash. A monitor that tears down
// its own run (or a foreground vectl stopping its VE) is not killed, nor any foreground
// monitor: it ends by itself, with status 0 (foreground.go).
func (m *Manager) teardown(id string, keepRoot bool) error {
	var errs []error
	if err := m.killAll(id, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	// A restore killed midway leaves libcontainer's bind of the root in its state directory.
	unix.Unmount(filepath.Join(m.lcRoot(), id, "criu-root"), unix.MNT_DETACH)
	if err := m.destroyContainer(id); err != nil {
		errs = append(errs, err)
	}
	if err := m.detachNetwork(context.Background(), id); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := network.UnpinNetns(m.netnsPath(id)); err != nil {
		errs = append(errs, err)
	}
	if pid, alive := readPidFile(m.runFile(id, monitorPIDFile)); alive && pid != os.Getpid() && !m.foregroundRun(id) {
		killPid(pid)
	}
	if !keepRoot {
		if err := m.umountRoot(id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := idmap.Unpin(m.runFile(id, usernsFile)); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []string{devDir, viewsDir} {
		if err := unix.Unmount(m.runFile(id, d), unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(m.runDir(id)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("teardown %s: %w", id, errors.Join(errs...))
	}
	return nil
}

// leftovers reports whether anything of a previous run of the VE is still there.
func (m *Manager) leftovers(id string) bool {
	for _, p := range []string{m.runDir(id), m.netnsPath(id), m.lcRoot() + "/" + id, m.cgroupFile(id, "devices", "")} {
		if _, err := os.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

// killPid kills one process we started (a monitor), through a pidfd so that a recycled pid
// is never hit, and waits for it to be gone.
func killPid(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0) != nil {
		return
	}
	waitPidfds([]int{fd}, 2*time.Second)
}
