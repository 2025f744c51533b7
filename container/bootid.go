package container

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/lcinit"
)

// runInit starts a VE's init in two steps so that each boot gets its own boot id: Start
// leaves the init parked on libcontainer's exec fifo with the VE's filesystems set up,
// setBootID mounts a fresh id, and Exec lets the init run.
func (m *Manager) runInit(id string, c *libcontainer.Container, p *libcontainer.Process, gate func() bool) error {
	if err := cgroupsUsable(); err != nil {
		return err
	}
	if err := nestedLeaf(); err != nil {
		return err
	}
	initExe, err := lcinit.Path(filepath.Join(m.opts.Root, "init-bin"))
	if err != nil {
		return fmt.Errorf("libcontainer's init program: %w", err)
	}
	if err := lcinit.Use(initExe, func() error { return startOneProc(c, p) }); err != nil {
		return err
	}
	pid, err := p.Pid()
	if err == nil {
		// The host ids of the VE's root: 0 for a privileged VE.
		uid, gid := hostRootOf(pid)
		err = m.delegateCgroup(id, uid, gid, cgroupsWritable(c.Config()))
		if err == nil {
			err = m.setBootID(pid, uid, gid, "")
		}
	}
	if err == nil && gate != nil && !gate() {
		err = errors.New("the start was cancelled before the VE's init ran")
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

// cgroupsUsable refuses a start where the cgroup hierarchies are read-only or not ours:
// vectl runs inside a VE that may not run containers (no nesting).
func cgroupsUsable() error {
	dir := "/sys/fs/cgroup"
	if !cgroups.IsCgroup2UnifiedMode() {
		dir = "/sys/fs/cgroup/memory"
	}
	// EACCES: the directory belongs to a host uid that this user namespace does not map.
	if err := unix.Access(dir, unix.W_OK); errors.Is(err, unix.EROFS) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s is not writable here: vectl runs inside a VE that may not run containers "+
			"(on its host: vectl set ID --nesting yes --save, then restart that VE)", dir)
	}
	return nil
}

// cgroupsWritable reports whether a VE's spec mounts its cgroup hierarchies writable, by
// libcontainer or by the init wrapper (cgroupTreeLabel).
func cgroupsWritable(cfg configs.Config) bool {
	for _, l := range cfg.Labels {
		if state, ok := strings.CutPrefix(l, cgroupTreeLabel); ok {
			return state == "rw"
		}
	}
	for _, mnt := range cfg.Mounts {
		if mnt.Destination == "/sys/fs/cgroup" && mnt.Device == "cgroup" {
			return mnt.Flags&unix.MS_RDONLY == 0
		}
	}
	return false
}

// nestedLeaf makes room for VE cgroups when vectl runs inside a VE on cgroup v2: there its
// cgroup namespace's root is the outer VE's delegated cgroup, which holds the outer VE's
// processes, and the kernel does not enable controllers for the children of a non-root
// cgroup that has processes of its own (no internal processes: cgroup.subtree_control gives
// EBUSY), so a VE started there would get no limits. As systemd does with init.scope and
// Docker-in-Docker with /init, the processes move to a leaf, init.scope, first; the outer
// VE's limits apply to the leaf as before. Nothing happens on a host (its /sys/fs/cgroup is
// the root cgroup, which has no cgroup.type) or when the root holds no process.
func nestedLeaf() error {
	const root = "/sys/fs/cgroup"
	if !cgroups.IsCgroup2UnifiedMode() {
		return nil
	}
	if _, err := os.Stat(filepath.Join(root, "cgroup.type")); err != nil {
		return nil
	}
	leaf := filepath.Join(root, "init.scope")
	for try := 0; try < 10; try++ {
		procs, err := os.ReadFile(filepath.Join(root, "cgroup.procs"))
		if err != nil || len(strings.TrimSpace(string(procs))) == 0 {
			return nil
		}
		if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("move this VE's processes to a leaf cgroup: %w", err)
		}
		for _, pid := range strings.Fields(string(procs)) {
			if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(pid), 0); err != nil &&
				!errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("move process %s of this VE to a leaf cgroup: %w", pid, err)
			}
		}
	}
	return errors.New("move this VE's processes to a leaf cgroup: they keep coming back")
}

// delegateCgroup hands a user-namespace VE's own cgroup subtree to its root, as systemd
// delegates a subtree to a service: the directory and the files that create and populate
// child cgroups (cgroup.procs, cgroup.threads, cgroup.subtree_control; tasks on v1) belong to
// the VE's root, so its systemd, or a container runtime inside, can manage cgroups below its
// own. The files that set the VE's limits stay host root's, so the VE can never raise them.
// On cgroup v1 that is done in every hierarchy when the VE mounts them writable (nesting), so
// vectl counts a VE's processes in its whole subtree (cgroupPids); otherwise in the
// name=systemd hierarchy only.
func (m *Manager) delegateCgroup(id string, uid, gid int, all bool) error {
	if uid == 0 && gid == 0 {
		return nil
	}
	dirs := []string{filepath.Join("/sys/fs/cgroup", m.cgroupPath(id))}
	files := []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control"}
	if !cgroups.IsCgroup2UnifiedMode() {
		dirs = nil
		files = []string{"cgroup.procs", "tasks", "cgroup.clone_children"}
		ents, err := os.ReadDir("/sys/fs/cgroup")
		if err != nil {
			return fmt.Errorf("delegate the VE's cgroup: %w", err)
		}
		for _, e := range ents {
			// cpu and cpuacct are symlinks to their shared hierarchy; unified is cgroup2's.
			// In devices the VE can make child cgroups but set no rule (the kernel takes
			// device rules only from the host's root).
			if e.IsDir() && e.Name() != "unified" && (all || e.Name() == "systemd") {
				dirs = append(dirs, filepath.Join("/sys/fs/cgroup", e.Name(), m.cgroupPath(id)))
			}
		}
	}
	for _, dir := range dirs {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			continue // a hierarchy the VE has no cgroup in
		}
		own := append([]string{""}, files...)
		if strings.HasPrefix(dir, "/sys/fs/cgroup/systemd/") {
			own = append(own, "notify_on_release") // systemd in the VE sets it in its own hierarchy
		}
		for _, f := range own {
			if err := os.Chown(filepath.Join(dir, f), uid, gid); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("delegate the VE's cgroup: %w", err)
			}
		}
	}
	return nil
}

// setBootID gives a VE a boot id of its own for this boot, as systemd-nspawn does: a file
// with a new random UUID is bind-mounted read-only over /proc/sys/kernel/random/boot_id,
// so journald and systemd see a new boot after an in-VE reboot. libcontainer refuses mounts
// below /proc, so a thread joins the VE's mount namespace while its init still waits to be
// let go (no guest process runs yet) and makes the mount there, from a file on the VE's own
// /dev tmpfs that is unlinked afterwards: the mount shows no host path and is private.
// (A file on a private tmpfs mounted nowhere would do without the temporary file, but
// Linux before 6.15 refuses open_tree(OPEN_TREE_CLONE) on such a mount.)
//
// A restore passes the boot id the VE had when it was checkpointed (a restore is not a
// reboot): CRIU cannot restore a bind mount of an unlinked file, so the one it made is
// replaced.
func (m *Manager) setBootID(pid, uid, gid int, id string) error {
	ns, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	defer unix.Close(ns)
	// In a user-namespace VE the VE's /dev belongs to its user namespace: the file is made
	// as the VE's root (its host ids), which that namespace maps.
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
			if uid != 0 || gid != 0 {
				unix.Setfsgid(gid)
				unix.Setfsuid(uid)
			}
			if id != "" {
				unix.Unmount(bootIDTarget, unix.MNT_DETACH)
			}
			return mountBootID(id)
		}()
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("boot id: %w", err)
	}
	return nil
}

// hostRootOf is the uid and gid that process pid's user namespace maps its id 0 to; 0 and 0
// for a process in our own user namespace (a privileged VE; any VE of a vectl that runs
// nested in a VE), whose map files would show our namespace's own map.
func hostRootOf(pid int) (uid, gid int) {
	var ours, its unix.Stat_t
	if unix.Stat("/proc/self/ns/user", &ours) == nil && unix.Stat(fmt.Sprintf("/proc/%d/ns/user", pid), &its) == nil &&
		ours.Ino == its.Ino && ours.Dev == its.Dev {
		return 0, 0
	}
	return mapRoot(pid, "uid_map"), mapRoot(pid, "gid_map")
}

// mapRoot reads the host id of id 0 from /proc/PID/uid_map or gid_map (0 when unreadable).
func mapRoot(pid int, file string) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, file))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "0" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// bootIDSource is the temporary file in the VE's /dev the boot id mount is made from.
const bootIDSource = "/dev/.vectl-boot-id"

// bootIDTarget is where the kernel shows the boot id.
const bootIDTarget = "/proc/sys/kernel/random/boot_id"

// mountBootID runs in the VE's mount namespace (root and cwd are the VE's root).
func mountBootID(id string) error {
	if id == "" {
		id = newUUID()
	}
	fd, err := unix.Open(bootIDSource, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", bootIDSource, err)
	}
	defer unix.Unlink(bootIDSource)
	_, err = unix.Write(fd, []byte(id+"\n"))
	unix.Close(fd)
	if err != nil {
		return err
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, bootIDSource, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree: %w", err)
	}
	defer unix.Close(tree)
	attr := &unix.MountAttr{
		Attr_set:    unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC,
		Propagation: unix.MS_PRIVATE,
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("mount_setattr: %w", err)
	}
	return unix.MoveMount(tree, "", unix.AT_FDCWD, bootIDTarget, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// startOneProc is c.Start with GOMAXPROCS=1 in the environment of libcontainer's init. The
// init's first act is runtime.GOMAXPROCS(1), a stop-the-world of its fresh runtime, and
// libcontainer passes it this process's GOMAXPROCS variable: started with 1, the runtime
// makes one P and the call returns at once. The variable is set only while Start runs (a
// CNI plugin spawned meanwhile sees it too, as the network package gives every plugin it
// runs anyway); an administrator's own GOMAXPROCS is left alone.
func startOneProc(c *libcontainer.Container, p *libcontainer.Process) error {
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		return c.Start(p)
	}
	os.Setenv("GOMAXPROCS", "1")
	defer os.Unsetenv("GOMAXPROCS")
	return c.Start(p)
}
