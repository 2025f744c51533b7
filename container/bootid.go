package container

import (
	"crypto/rand"
	"fmt"
	"os"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// runInit starts a VE's init in two steps so that each boot gets its own boot id: Start
// leaves the init parked on libcontainer's exec fifo with the VE's filesystems set up,
// setBootID mounts a fresh id, and Exec lets the init run.
func (m *Manager) runInit(id string, c *libcontainer.Container, p *libcontainer.Process) error {
	if err := c.Start(p); err != nil {
		return err
	}
	pid, err := p.Pid()
	if err == nil {
		err = m.setBootID(id, pid)
	}
	if err == nil {
		err = c.Exec()
	}
	if err == nil {
		// Usage reads (stats, ubc) find the init here without loading libcontainer's state.
		_ = writePidFile(m.runFile(id, initPidFile), pid)
	}
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return err
	}
	return nil
}

// setBootID gives a VE a boot id of its own for this boot, as systemd-nspawn does: a file
// with a new random UUID is bind-mounted read-only over /proc/sys/kernel/random/boot_id
// inside the VE's mount namespace, so journald and systemd see a new boot after an in-VE
// reboot. libcontainer refuses mounts below /proc, hence a detached bind mount attached
// from a thread that joined the VE's mount namespace.
func (m *Manager) setBootID(id string, pid int) error {
	tree, err := bootIDTree(m.runFile(id, bootIDFile))
	if err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	defer unix.Close(tree)
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	defer unix.Close(ns)
	errc := make(chan error, 1)
	go func() {
		// The thread joins the VE's mount namespace and is never unlocked, so the Go
		// runtime discards it afterwards. setns into a mount namespace needs a private
		// fs_struct first.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return err
			}
			if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
				return err
			}
			return unix.MoveMount(tree, "", unix.AT_FDCWD, "/proc/sys/kernel/random/boot_id", unix.MOVE_MOUNT_F_EMPTY_PATH)
		}()
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	return nil
}

// bootIDFile holds the current boot's id in the VE's run directory.
const bootIDFile = "boot_id"

// bootIDTree writes a new random UUID to path and returns a detached, read-only bind mount
// of it. The file is a plain one in the run directory rather than one on a private,
// never-attached tmpfs: Linux before 6.15 refuses open_tree(OPEN_TREE_CLONE) on a mount
// that belongs to no namespace (EINVAL).
func bootIDTree(path string) (int, error) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(newUUID()+"\n"), 0o444); err != nil {
		return -1, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return -1, err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree %s: %w", path, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("mount_setattr: %w", err)
	}
	return tree, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
