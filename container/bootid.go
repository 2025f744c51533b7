package container

import (
	"crypto/rand"
	"fmt"
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
// with a new random UUID is bind-mounted over /proc/sys/kernel/random/boot_id inside the
// VE's mount namespace, so journald and systemd see a new boot after an in-VE reboot.
// libcontainer refuses mounts below /proc, hence the detached mount attached from a thread
// that joined the VE's mount namespace.
func (m *Manager) setBootID(id string, pid int) error {
	tree, err := bootIDTree()
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

// bootIDTree makes a detached, read-only mount of a single file holding a new random UUID,
// on a private tmpfs that is mounted nowhere, so the VE learns nothing about host paths.
func bootIDTree() (int, error) {
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigSetString(fs, "size", "4k"); err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return -1, err
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	defer unix.Close(mnt)
	f, err := unix.Openat(mnt, "boot_id", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return -1, err
	}
	_, err = unix.Write(f, []byte(newUUID()+"\n"))
	unix.Close(f)
	if err != nil {
		return -1, err
	}
	tree, err := unix.OpenTree(mnt, "boot_id", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree: %w", err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
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
