package container

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/criuwrap"
	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/monitor"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
)

// A dump is a directory of CRIU images plus dumpMetaFile. While it is written it is named
// DIR.new; a failed dump leaves only its log, in DIR.failed. The VE's own directory holds
// dumpPointerFile naming the dump of a VE that is down with one ("suspended").
const (
	dumpMetaFile    = "vectl-dump.json"
	dumpPointerFile = "dump.json"
	dumpLog         = "dump.log"
	restoreLog      = "restore.log"
	restoreWrapLog  = "restore-wrapper.log" // the stderr of criu's wrapper for a user-namespace VE
	restoreFile     = "restore"             // run dir: the dump the monitor restores instead of booting
	criuConfFile    = "criu.conf"           // a dump's criu configuration for a user-namespace VE's restore
)

// DumpMeta describes a dump: what it was made from, to tell a stale or foreign one.
type DumpMeta struct {
	ID           string    `json:"id"`
	Created      time.Time `json:"created"`
	Kernel       string    `json:"kernel"`
	CriuVersion  int       `json:"criu_version"`
	LeaveRunning bool      `json:"leave_running"`
	// Private is a digest of the VE's private area (names, sizes, times) once the VE was
	// down; empty for a dump taken with --leave-running.
	Private string `json:"private,omitempty"`
	// IPs are the VE's configured addresses: a restore needs the same.
	IPs []string `json:"ips"`
	// Lazy: the memory is not in the dump; a lazy-pages daemon fetches it from the source
	// (migrate --lazy).
	Lazy bool `json:"lazy,omitempty"`
	// BootID is the VE's boot id, which a restore keeps.
	BootID string `json:"boot_id"`
	// Cgroups maps the pid (inside the VE) of each process not in the VE's top cgroup to its
	// cgroup below it (cgroup v2; on v1 in the name=systemd hierarchy): systemd's services.
	Cgroups map[int]string `json:"cgroups,omitempty"`
	// ByBoot: made by boot --stop --suspend; the next boot restores the VE.
	ByBoot bool `json:"by_boot,omitempty"`
}

// CheckpointOptions control Checkpoint.
type CheckpointOptions struct {
	Dir          string // dump directory (default: ROOT/dump/ID)
	LeaveRunning bool   // dump and keep the VE running
	byBoot       bool   // a host shutdown (Boot with Suspend): the next Boot restores it
	// keepFrozen dumps a VE its caller froze (a snapshot's final pass) as it is: CRIU finds
	// the cgroup frozen and leaves it so.
	keepFrozen bool
	// lazy dumps all but the memory and serves the pages from here (post-copy): see lazyDump.
	lazy *lazyDump
	// prepared is the VE's container made ready before the frozen moment (prepareDump).
	prepared preparedDump
	// dumped, when the VE stops, is called with the dump directory once the dump is
	// complete there, before the VE is torn down here: an online migration sends the dump
	// and makes its final copy of the private area while the teardown runs.
	dumped func(dir string)
}

// preparedDump waits for the container prepareDump loads.
type preparedDump func() (*libcontainer.Container, error)

// prepareDump loads a running VE's container for a dump to come and has libcontainer ask
// criu for its version right away, in a goroutine, while the VE still runs: Checkpoint asks
// once per Container, by running criu (10 to 25 ms here, which would otherwise be frozen
// time), and returns just after asking when given no images directory. The function
// returned waits for it.
func (m *Manager) prepareDump(id string) preparedDump {
	type loaded struct {
		c   *libcontainer.Container
		err error
	}
	ch := make(chan loaded, 1)
	go func() {
		c, err := libcontainer.Load(m.lcRoot(), id)
		if err == nil {
			_ = c.Checkpoint(&libcontainer.CriuOpts{}) // "invalid directory", after the version
		}
		ch <- loaded{c, err}
	}()
	return sync.OnceValues(func() (*libcontainer.Container, error) {
		l := <-ch
		return l.c, l.err
	})
}

// lazyDump is a dump for post-copy migration (criu dump --lazy-pages): CRIU writes every
// image but the memory's, then keeps the VE's tasks frozen and serves their pages on
// 127.0.0.1:port until a lazy-pages daemon (on the destination) has taken them all; then it
// kills them. ready runs once the images are complete in the dump directory (the tasks still
// frozen here): it moves them and restores the VE there, whose first connection to the port
// takes the pages. When ready fails, or the pages stop moving, CRIU resumes the tasks here.
type lazyDump struct {
	port  int
	ready func(dir string) error
	// restored is set by ready once the destination runs the VE: from then on a failed
	// transfer loses the VE (it runs there without all its memory), and it must not go on
	// here too.
	restored bool
}

// RestoreOptions control Restore.
type RestoreOptions struct {
	Dir string // dump directory (default: where the last checkpoint put it)
	// Force restores a dump although the private area changed since (or it was taken with
	// --leave-running).
	Force bool
	// MonitorArgs runs this binary's monitor (StartOptions.MonitorArgs).
	MonitorArgs []string
	// Become makes this process the VE's monitor instead of spawning one, as
	// StartOptions.Become does for a start (a restore forked by monitor's constructor): once
	// the VE runs and its dump is removed, Started is called with what the removal returned
	// and the process detaches, reporting the exit status Started returns to its caller.
	Become  bool
	Started func(error) int
	// cpuChecked: this CPU was checked against the dumped one already (a migration's
	// preflight ran criu cpuinfo check on the source's cpuinfo image), so the restore does
	// not run criu once more for it while the VE is frozen.
	cpuChecked bool
}

// DumpDir is the default dump directory of a VE.
func (m *Manager) DumpDir(id string) string { return filepath.Join(m.opts.Root, "dump", id) }

// dumpOf returns the dump a VE that is down was checkpointed to ("" for none).
func (m *Manager) dumpOf(id string) string {
	data, err := os.ReadFile(filepath.Join(m.store.VEDir(id), dumpPointerFile))
	if err != nil {
		return ""
	}
	var p struct {
		Dir string `json:"dir"`
	}
	if json.Unmarshal(data, &p) != nil || p.Dir == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(p.Dir, dumpMetaFile)); err != nil {
		return ""
	}
	return p.Dir
}

// Checkpoint dumps a running VE with CRIU (processes, memory, open files, established TCP
// connections, timers, its console) into a dump directory and, unless o.LeaveRunning, stops
// it and tears it down except its private area: it is then "suspended" until Restore. A
// dump that fails leaves the VE running and no dump under the final name.
func (m *Manager) Checkpoint(ctx context.Context, ref string, o CheckpointOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := m.checkpoint(ctx, id, o); err != nil {
		return fmt.Errorf("chkpnt %s: %w", id, err)
	}
	return nil
}

func (m *Manager) checkpoint(ctx context.Context, id string, o CheckpointOptions) error {
	tool, err := m.criu()
	if err != nil {
		return err
	}
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return err
	}
	if !m.populated(id) {
		return ErrNotRunning
	}
	if !tool.NestedMounts {
		if err := m.nestedMounts(id); err != nil {
			return err
		}
	}
	if tool.NoInetSockets {
		if n, err := m.inetSockets(id); err != nil {
			return err
		} else if n > 0 {
			return fmt.Errorf("%w: the VE holds %d TCP, UDP or raw sockets, which criu %d.%d.%d cannot dump on this kernel (Linux 6.16 and later refuse SO_PASSCRED on them; fixed in criu 4.2, which make criu installs): the VE keeps running untouched",
				ErrCheckpoint, n, tool.Version/10000, tool.Version/100%100, tool.Version%100)
		}
	}
	dir := o.Dir
	if dir == "" {
		dir = m.DumpDir(id)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	tmp, failed := dir+".new", dir+".failed"
	os.RemoveAll(tmp)
	os.RemoveAll(failed)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	if !o.LeaveRunning {
		// As a stop does: the monitor sees its init killed and leaves the teardown to us.
		if err := writePidFile(m.runFile(id, stoppingFile), os.Getpid()); err != nil {
			os.RemoveAll(tmp)
			return err
		}
	}
	bootID, root := "", m.store.RootDir(id)
	pid, ok := readPidFile(m.runFile(id, initPidFile))
	if ok {
		root = fmt.Sprintf("/proc/%d/root", pid)
		bootID = readTrim(root + bootIDTarget)
	}
	placed := m.taskCgroups(id)
	var c *libcontainer.Container
	if o.prepared != nil {
		if c, err = o.prepared(); err == nil {
			if st, serr := c.State(); serr != nil || st.InitProcessPid != pid {
				c, err = libcontainer.Load(m.lcRoot(), id) // started again since
			}
		}
	} else {
		c, err = libcontainer.Load(m.lcRoot(), id)
	}
	if err == nil {
		if m.frozen(id) && !o.keepFrozen {
			m.thaw(id) // CRIU freezes the cgroup itself and expects it thawed
		}
		// Link remaps (an open file that was deleted is linked back into its filesystem
		// until the restore) only when the VE stops: CRIU removes them again when the tasks
		// go on running, so a dump that leaves them running stores such files' contents
		// itself (ghost files), and the VE's files are not touched while it is dumped.
		opts := &libcontainer.CriuOpts{ImagesDirectory: tmp, LeaveRunning: o.LeaveRunning,
			TcpEstablished: true, FileLocks: true, LinkRemap: !o.LeaveRunning, ManageCgroupsMode: "soft", StatusFd: -1}
		err = m.dumpConf(c.Config(), tool.NftLock, localtimeScan(root))
		if err == nil && o.lazy != nil {
			err = m.lazyCheckpoint(c, opts, o.lazy, func() error {
				// The images are complete: what a restore needs besides them goes in now.
				meta := DumpMeta{ID: id, Created: time.Now().UTC(), Kernel: kernelRelease(), CriuVersion: tool.Version,
					IPs: cfg.IPs, BootID: bootID, Cgroups: placed, Lazy: true}
				if err := os.WriteFile(filepath.Join(tmp, "cpuinfo.img"), tool.CPUInfo, 0o600); err != nil {
					return err
				}
				if err := writeDumpMeta(tmp, &meta, true); err != nil {
					return err
				}
				os.RemoveAll(dir)
				if err := os.Rename(tmp, dir); err != nil {
					return err
				}
				return o.lazy.ready(dir)
			})
			if err == nil {
				// The VE runs on the destination with all its memory; the tasks here are gone.
				os.Remove(m.runFile(id, stoppingFile))
				return errors.Join(m.teardown(id, false), os.RemoveAll(dir))
			}
			var me *MigrateError
			if errors.As(err, &me) {
				// The migration failed (not CRIU), which resumed the VE here.
				os.Remove(m.runFile(id, stoppingFile))
				os.RemoveAll(dir)
				return err
			}
			os.Rename(dir, tmp) // the log goes to DIR.failed below
		} else if err == nil {
			err = c.Checkpoint(opts)
		}
	}
	if err != nil {
		os.Remove(m.runFile(id, stoppingFile))
		log, _ := os.ReadFile(filepath.Join(tmp, dumpLog))
		reason := criuReason(log, err.Error())
		os.RemoveAll(tmp)
		if os.Mkdir(failed, 0o700) == nil {
			os.WriteFile(filepath.Join(failed, dumpLog), log, 0o600)
		}
		if m.populated(id) {
			return fmt.Errorf("%w: criu: %s (the VE keeps running; log in %s)", ErrCheckpoint, reason, failed)
		}
		return fmt.Errorf("%w: criu: %s (log in %s)", ErrCheckpoint, reason, failed)
	}
	if cfg.UserNS != nil {
		if err := adoptNamespaces(tmp); err != nil {
			return fmt.Errorf("%w: %v (the VE is down; its dump is in %s)", ErrCheckpoint, err, tmp)
		}
	}
	// The dump is completed before the teardown (whose network detach takes most of its
	// time): the VE's tasks are gone, and nothing of the teardown touches the private area,
	// so the digest is the same before and after it.
	meta := DumpMeta{ID: id, Created: time.Now().UTC(), Kernel: kernelRelease(), CriuVersion: tool.Version,
		LeaveRunning: o.LeaveRunning, IPs: cfg.IPs, BootID: bootID, Cgroups: placed, ByBoot: o.byBoot}
	var errs []error
	if !o.LeaveRunning {
		if err := m.killAll(id, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
		if meta.Private, err = m.privateDigest(id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "cpuinfo.img"), tool.CPUInfo, 0o600); err != nil {
		errs = append(errs, err)
	}
	err = writeDumpMeta(tmp, &meta, !o.keepFrozen)
	if err == nil {
		os.RemoveAll(dir)
		err = os.Rename(tmp, dir)
	}
	if err == nil && !o.LeaveRunning {
		data, _ := json.Marshal(map[string]string{"dir": dir})
		err = store.WriteFileAtomic(filepath.Join(m.store.VEDir(id), dumpPointerFile), append(data, '\n'), 0o600)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if !o.LeaveRunning {
		if len(errs) == 0 && o.dumped != nil {
			o.dumped(dir)
		}
		if err := m.teardown(id, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Restore brings a checkpointed VE back: its network is set up again as at start (same
// addresses), and its monitor restores the dump instead of booting, so that it is again the
// parent of the VE's init. The VE continues where it was: same processes and PIDs, open
// connections, console, uptime. A failed restore leaves the dump as it was and the VE down.
func (m *Manager) Restore(ctx context.Context, ref string, o RestoreOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	if err := m.restore(ctx, id, l, o); err != nil {
		return fmt.Errorf("restore %s: %w", id, err)
	}
	return nil
}

// Suspended reports whether a VE is down with a dump to restore.
func (m *Manager) Suspended(id string) bool { return m.dumpOf(id) != "" }

// RestoresAtStart reports whether a start of ref restores it instead of booting it, as
// vzctl's start of a checkpointed VE does: it exists, is down, and has a dump. It is what
// Status says (Status.Suspended) without reading mountinfo and the VE's config, which a
// start does not need for it.
func (m *Manager) RestoresAtStart(ref string) bool {
	id, err := m.resolve(ref)
	return err == nil && m.store.Exists(id) && !m.populated(id) && m.Suspended(id)
}

func (m *Manager) restore(ctx context.Context, id string, l *store.Lock, o RestoreOptions) error {
	defer l.Unlock()
	if _, err := m.criu(); err != nil {
		return err
	}
	if _, err := m.startable(id); err != nil {
		return err
	}
	dir := o.Dir
	if dir == "" {
		if dir = m.dumpOf(id); dir == "" {
			return fmt.Errorf("%w: no dump (checkpoint it with vectl chkpnt %s, or name one with --dumpfile)", ErrRestore, id)
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := m.restorable(id, dir, o.Force, o.cpuChecked); err != nil {
		return err
	}
	m.warmCgroupAttach()
	if o.Become && monitor.Forked() {
		return m.restoreAsMonitor(ctx, id, dir, l, o)
	}
	mon, err := monitor.Spawn(o.MonitorArgs, id, l.File(), m.consoleLog(id))
	if err != nil {
		return err
	}
	attached, err := m.prepareRestore(ctx, id, dir)
	if err != nil {
		mon.Cancel()
	} else {
		err = mon.Boot(attached)
	}
	if err != nil {
		return m.restoreFailed(id, dir, err)
	}
	return m.restored(id, dir)
}

// prepareRestore is what a restore does under the VE's lock before its monitor restores the
// dump: a start's preparation, its network namespace locked before the network is attached,
// and the note that tells the monitor which dump to restore instead of booting. attached
// waits for the attachment (prepare).
func (m *Manager) prepareRestore(ctx context.Context, id, dir string) (attached func() error, err error) {
	// The VE's addresses come up before CRIU has put its TCP sockets back: until then the
	// network namespace drops what comes in, or a peer's retransmission would be answered
	// with a reset. The monitor opens it once the restore is done (restoreDump); a failed
	// restore's teardown removes the namespace.
	_, _, attached, err = m.prepare(ctx, id, false, netLocked)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(m.runFile(id, restoreFile), []byte(dir), 0o600); err != nil {
		attached() // no plugin is still running when the caller tears down
		return nil, err
	}
	return attached, nil
}

// restoreFailed tears down a restore that failed with err and returns the error to report,
// with CRIU's reason when its log has one. The dump is kept.
func (m *Manager) restoreFailed(id, dir string, err error) error {
	log, _ := os.ReadFile(filepath.Join(dir, restoreLog))
	err = fmt.Errorf("%w: %s (the dump in %s is kept; the VE is down)", ErrRestore, criuReason(log, err.Error()), dir)
	if terr := m.teardown(id, false); terr != nil {
		return errors.Join(err, terr)
	}
	// The attempt mounted the root and made mount points in it: the private area is as
	// the dump needs it, and the next restore must not call the dump stale for that.
	return errors.Join(err, m.redigest(id, dir))
}

// restored finishes a restore once the VE runs again: its dump is removed (a lazy one is
// left to migrate-in pages, whose lazy-pages daemon still works in it).
func (m *Manager) restored(id, dir string) error {
	if meta, err := readDumpMeta(dir); err == nil && meta.Lazy {
		if err := os.Remove(filepath.Join(m.store.VEDir(id), dumpPointerFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := m.dropDump(id, dir); err != nil {
		return fmt.Errorf("VE restored; remove its dump: %w", err)
	}
	return nil
}

// restoreAsMonitor is restore in a process that becomes the VE's monitor
// (RestoreOptions.Become), as startAsMonitor is for a start: the network is attached while
// the monitor creates the container, the dump is restored once both are done, and l is
// released once the dump is removed, before the process detaches.
func (m *Manager) restoreAsMonitor(ctx context.Context, id, dir string, l *store.Lock, o RestoreOptions) error {
	attached, err := m.prepareRestore(ctx, id, dir)
	if err != nil {
		return m.restoreFailed(id, dir, err)
	}
	booted, err := m.runAsMonitor(ctx, id, attached, l, o.MonitorArgs, func() int {
		rerr := m.restored(id, dir)
		if o.Started != nil {
			return o.Started(rerr)
		}
		return 0
	})
	if booted {
		// The monitor ended: it could not rest in the idle loop and the VE has ended since.
		return err
	}
	return m.restoreFailed(id, dir, err)
}

// dropDump removes a VE's dump and the note that the VE is suspended with it.
func (m *Manager) dropDump(id, dir string) error {
	err := os.Remove(filepath.Join(m.store.VEDir(id), dumpPointerFile))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, os.RemoveAll(dir))
}

// DropDump forgets the dump of a suspended VE (start --skip-restore).
func (m *Manager) DropDump(ref string) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if dir := m.dumpOf(id); dir != "" {
		return m.dropDump(id, dir)
	}
	return nil
}

// readDumpMeta reads the metadata of the dump in dir.
func readDumpMeta(dir string) (*DumpMeta, error) {
	path := filepath.Join(dir, dumpMetaFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var meta DumpMeta
	if err := json.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &meta, nil
}

// redigest records the private area's current digest in a dump's metadata.
func (m *Manager) redigest(id, dir string) error {
	meta, err := readDumpMeta(dir)
	if err != nil || meta.LeaveRunning {
		return err
	}
	if meta.Private, err = m.privateDigest(id); err != nil {
		return err
	}
	return writeDumpMeta(dir, meta, true)
}

// writeDumpMeta writes the metadata of the dump in dir, made durable when sync. A dump taken
// in a snapshot's or backup's frozen moment is not: the fsync would be frozen time (and can
// wait for the commit of the gigabyte the copy before it wrote), and criu does not sync the
// images either.
func writeDumpMeta(dir string, meta *DumpMeta, sync bool) error {
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if !sync {
		return store.ReplaceFile(filepath.Join(dir, dumpMetaFile), append(data, '\n'), 0o600)
	}
	return store.WriteFileAtomic(filepath.Join(dir, dumpMetaFile), append(data, '\n'), 0o600)
}

// nestedMounts refuses a VE one of whose processes is in a mount namespace of its own
// (systemd's PrivateTmp=, ProtectSystem=, PrivateIPC=, ... make one for a service) when criu
// is not vectl's build: criu 4.2.1 dumps it but cannot restore it, failing at the first file
// bind mount in it (every VE has some: /dev/null) because it binds "FILE/" (mount.c
// do_bind_mount; container/criupatch fixes it). Refused before the dump, the VE keeps running.
func (m *Manager) nestedMounts(id string) error {
	initPid, ok := readPidFile(m.runFile(id, initPidFile))
	if !ok {
		return nil
	}
	top, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", initPid))
	if err != nil {
		return nil
	}
	pids, err := m.cgroupPids(id)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if err != nil || ns == top {
			continue
		}
		what := readTrim(fmt.Sprintf("/proc/%d/comm", pid))
		if unit := systemdUnit(pid); unit != "" {
			what += " of " + unit
		}
		return fmt.Errorf("%w: process %d (%s) is in a mount namespace of its own (systemd's PrivateTmp=, ProtectSystem=, PrivateIPC= and the like make one), which this criu cannot restore (file bind mounts in nested mount namespaces; make criu builds one that can): stop that service, or use that criu; the VE keeps running untouched",
			ErrCheckpoint, pidInside(pid), what)
	}
	return nil
}

// systemdUnit names the systemd unit a process of a VE runs in ("" if none).
func systemdUnit(pid int) string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && (f[1] == "name=systemd" || f[0] == "0" && f[1] == "") {
			if b := filepath.Base(f[2]); strings.Contains(b, ".") && b != "init.scope" {
				return b
			}
		}
	}
	return ""
}

// restorable checks a dump before anything is changed: it is there, was made on this kernel
// for this VE on a compatible CPU, and the private area is as the dump left it.
func (m *Manager) restorable(id, dir string, force, cpuChecked bool) error {
	meta, err := readDumpMeta(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no dump in %s", ErrRestore, dir)
	} else if err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	if meta.ID != id {
		return fmt.Errorf("%w: the dump in %s is of VE %s, not %s", ErrRestore, dir, meta.ID, id)
	}
	if k := kernelRelease(); meta.Kernel != k {
		return fmt.Errorf("%w: the dump was made on kernel %s, this host runs %s: start the VE afresh (vectl start --skip-restore)",
			ErrRestore, meta.Kernel, k)
	}
	if !cpuChecked {
		// A dump made on this CPU carries this boot's image of it (criuTool.CPUInfo): only
		// another one is worth a criu run.
		tool, _ := m.criu()
		img, _ := os.ReadFile(filepath.Join(dir, "cpuinfo.img"))
		if len(tool.CPUInfo) == 0 || !bytes.Equal(img, tool.CPUInfo) {
			if out, err := exec.Command(tool.Path, "cpuinfo", "check", "-D", dir).CombinedOutput(); err != nil {
				return fmt.Errorf("%w: this CPU lacks features the dumped processes may use (criu cpuinfo check: %s)",
					ErrRestore, lastLine(out, err))
			}
		}
	}
	if force {
		return nil
	}
	if meta.LeaveRunning {
		return fmt.Errorf("%w: the dump was taken with --leave-running, the VE's files have changed since: pass --force to restore it anyway",
			ErrRestore)
	}
	if d, err := m.privateDigest(id); err != nil {
		return err
	} else if d != meta.Private {
		return fmt.Errorf("%w: the dump is stale: the VE's private area changed since %s: pass --force to restore it anyway, or start the VE afresh (vectl start --skip-restore)",
			ErrRestore, meta.Created.Format(time.RFC3339))
	}
	return nil
}

// privateDigest digests the names, types, sizes and times of everything in a VE's private
// area: a file changed while the VE was down changes it.
func (m *Manager) privateDigest(id string) (string, error) {
	h := sha256.New()
	root := m.store.PrivateDir(id)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%o %d %d.%d %d.%d %d\n", path[len(root):], st.Mode, st.Size,
			st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Ino)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("private area: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// restoreDump is run by the monitor in place of the first boot when the restoring vectl
// named a dump: it restores the VE's processes into c, with p as the restored init (its
// console socket receives the new pty master).
func (m *Manager) restoreDump(id, dir string, c *libcontainer.Container, p *libcontainer.Process, gate func() bool) error {
	os.Remove(m.runFile(id, restoreFile))
	os.Remove(filepath.Join(dir, restoreLog)) // an error quotes this attempt's logs only
	os.Remove(filepath.Join(dir, restoreWrapLog))
	if _, err := m.criu(); err != nil {
		return err
	}
	if gate != nil && !gate() {
		return errors.New("restore cancelled")
	}
	// The sources of the VE's binds must be there again; the VE's own cgroup directories
	// (the name=systemd bind on cgroup v1) only appear once a start creates them.
	for _, mnt := range c.Config().Mounts {
		if mnt.Device == "bind" && strings.HasPrefix(mnt.Source, "/sys/fs/cgroup/") {
			if err := os.MkdirAll(mnt.Source, 0o755); err != nil {
				return err
			}
		}
	}
	cgMode := "soft"
	if len(c.Config().UIDMappings) > 0 {
		undo, err := m.criuInUserNS(id, dir)
		if err != nil {
			return err
		}
		defer undo()
		// criu, inside the VE's namespaces, cannot rebuild the VE's cgroups (it would need
		// the host's cgroup paths): it leaves them alone, and placeTasks puts systemd's
		// services back where the dump found them.
		cgMode = "ignore"
	}
	// The monitor ignores SIGTERM and friends, and ignored signals stay ignored across
	// exec: criu's helpers would too, and criu, which ends its cgroup daemon with SIGTERM,
	// would wait for it forever. Caught instead (and dropped), they are reset in children.
	ignored := []os.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE}
	signal.Notify(make(chan os.Signal, 8), ignored...)
	defer signal.Ignore(ignored...)
	// A lazy dump's memory comes from the lazy-pages daemon migrate-in pages runs in dir.
	meta, merr := readDumpMeta(dir)
	if cgMode == "ignore" && merr == nil && len(meta.Cgroups) > 0 {
		defer m.keepCgroupAttachWarm()()
	}
	if err := c.Restore(p, &libcontainer.CriuOpts{ImagesDirectory: dir, TcpEstablished: true, FileLocks: true,
		ManageCgroupsMode: cgMode, StatusFd: -1, LazyPages: merr == nil && meta.Lazy}); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, restoreLog))
		if wrap, _ := os.ReadFile(filepath.Join(dir, restoreWrapLog)); len(log) == 0 && len(wrap) > 0 {
			return fmt.Errorf("criu: %v (%s)", err, lastLine(wrap, nil))
		}
		return fmt.Errorf("criu: %s", criuReason(log, err.Error()))
	}
	pid, err := p.Pid()
	uid, gid := hostRootOf(pid)
	if err == nil {
		err = m.delegateCgroup(id, uid, gid, cgroupsWritable(c.Config()))
	}
	if err == nil && cgMode == "ignore" {
		// The container keeps its labels: later dumps must read a configuration of the VE's
		// own (dumpConf completes it), not the one of this restore (which goes with its dump).
		cfg := c.Config()
		if err = m.writeVECriuConf(&cfg, nil, m.runFile(id, criuConfFile)); err == nil {
			err = c.Set(cfg)
		}
	}
	if err == nil && merr == nil && meta.BootID != "" {
		err = m.setBootID(pid, uid, gid, meta.BootID)
	}
	if err == nil && merr == nil && cgMode == "ignore" {
		err = m.placeTasks(id, meta.Cgroups, uid, gid)
	}
	if err == nil {
		// The restoring vectl locked the network (restore); the lock's table goes once the
		// monitor has reported the VE restored (monitored.Settle).
		err = network.OpenNetns(m.netnsPath(id))
	}
	if err == nil {
		err = writePidFile(m.runFile(id, initPidFile), pid)
	}
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
	}
	return err
}

// restoreSearchDirs are the directories that outlive a VE's run which criuInUserNS lets the
// root of a user-namespace VE search; removeVE takes the grants back.
func (m *Manager) restoreSearchDirs(id string) []string {
	return []string{m.opts.RunDir, filepath.Dir(m.runDir(id)), m.lcRoot(), filepath.Dir(m.DumpDir(id))}
}

// criuInUserNS prepares the restore of a user-namespace VE by a criu that runs as the VE's
// root inside its pinned user and network namespaces, in a mount, UTS and cgroup namespace
// of its own made there (once libcontainer has put it into the VE's cgroups), with the VE's
// host name set: the dump's inventory names the user and UTS namespaces as criu's own
// (adoptNamespaces), so the restored tasks stay in them. libcontainer runs "criu" from PATH: a wrapper in the VE's run
// directory does this. criu, as the VE's root, runs unprivileged (--unprivileged), reads
// the dump as its owner and reaches the VE's run and state directories through search-only
// ACL entries. The returned function undoes what outlives the restore.
func (m *Manager) criuInUserNS(id, dir string) (func(), error) {
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return nil, err
	}
	u := cfg.UserNS
	if u == nil {
		return nil, errors.New("no user namespace in the VE's config")
	}
	tool, err := m.criu()
	if err != nil {
		return nil, err
	}
	hostname, err := guestHostname(cfg, id, m.store.RootDir(id), m.templates.LowerDir(cfg.OSTemplate))
	if err != nil {
		return nil, err
	}
	for _, d := range append(m.restoreSearchDirs(id), m.runDir(id), filepath.Join(m.lcRoot(), id), filepath.Dir(dir)) {
		if err := idmap.GrantSearch(d, u.UID, true); err != nil {
			return nil, err
		}
	}
	chown := func(uid, gid int) error {
		return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, uid, gid)
		})
	}
	// criu takes the images and work directory from this file (libcontainer would name
	// them as this monitor's /proc/PID/fd, which the VE's root may not open); it readlink()s
	// the images directory, hence a symlink.
	link := filepath.Join(dir, "images")
	os.Remove(link)
	conf := fmt.Sprintf("images-dir %s\nwork-dir %s\nunprivileged\ncgroup-root /\n%s", link, dir, m.criuVerbosity())
	if err := os.Symlink(dir, link); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, criuConfFile), []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := chown(int(u.UID), int(u.GID)); err != nil {
		return nil, err
	}
	// criu inside the VE's namespaces: see package criuwrap.
	wrap := criuwrap.Params{Criu: tool.Path, Log: filepath.Join(dir, restoreWrapLog),
		UserNS: m.runFile(id, usernsFile), NetNS: m.netnsPath(id), Hostname: hostname}
	if mono, boot, ok, err := dumpedClocks(dir); err != nil {
		return nil, err
	} else if ok {
		if wrap.Mono, err = clockOffset(unix.CLOCK_MONOTONIC, mono); err != nil {
			return nil, err
		}
		if wrap.Boot, err = clockOffset(unix.CLOCK_BOOTTIME, boot); err != nil {
			return nil, err
		}
		wrap.TimeNS = true
	}
	wrapDir := m.runFile(id, "criu-bin")
	params, err := criuwrap.Install(wrapDir, wrap)
	if err != nil {
		os.RemoveAll(wrapDir)
		return nil, err
	}
	path := os.Getenv("PATH")
	os.Setenv("PATH", wrapDir+":"+path)
	os.Setenv(criuwrap.Env, params)
	return func() {
		os.Setenv("PATH", path)
		os.Unsetenv(criuwrap.Env)
		os.RemoveAll(wrapDir)
		chown(0, 0) // a dump kept after a failure stays host root's
	}, nil
}

// veCgroupBase is the directory of a VE's own cgroup tree that its init manages: the
// unified hierarchy on cgroup v2, name=systemd on v1 ("" when there is none).
func (m *Manager) veCgroupBase(id string) string {
	if cgroups.IsCgroup2UnifiedMode() {
		return filepath.Join("/sys/fs/cgroup", m.cgroupPath(id))
	}
	if _, err := os.Stat("/sys/fs/cgroup/systemd"); err != nil {
		return ""
	}
	return filepath.Join("/sys/fs/cgroup/systemd", m.cgroupPath(id))
}

// taskCgroups records where below the VE's cgroup each of its processes is (veCgroupBase),
// by pid inside the VE.
func (m *Manager) taskCgroups(id string) map[int]string {
	base := m.veCgroupBase(id)
	if base == "" {
		return nil
	}
	prefix := strings.TrimPrefix(base, "/sys/fs/cgroup")
	prefix = strings.TrimPrefix(prefix, "/systemd")
	pids, _ := m.cgroupPids(id)
	out := map[int]string{}
	for _, pid := range pids {
		inside := pidInside(pid)
		for _, l := range strings.Split(readTrim(fmt.Sprintf("/proc/%d/cgroup", pid)), "\n") {
			parts := strings.SplitN(l, ":", 3)
			if len(parts) != 3 || !(parts[1] == "" && cgroups.IsCgroup2UnifiedMode() || parts[1] == "name=systemd") {
				continue
			}
			if rel := strings.TrimPrefix(parts[2], prefix); inside > 0 && rel != parts[2] && rel != "" && rel != "/" {
				out[inside] = rel
			}
		}
	}
	return out
}

// pidInside is process pid's pid in its innermost pid namespace (0 if it is gone).
func pidInside(pid int) int {
	f := strings.Fields(statusField(readTrim(fmt.Sprintf("/proc/%d/status", pid)), "NSpid"))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}

// statusField is the value of the field name (NSpid, TracerPid, SigBlk, ...) in the text of
// a /proc/PID/status, "" when it has none.
func statusField(status, name string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// placeTasks moves the restored processes of a VE back into their cgroups below the VE's
// (taskCgroups), made again as the VE's root's.
func (m *Manager) placeTasks(id string, where map[int]string, uid, gid int) error {
	base := m.veCgroupBase(id)
	if base == "" || len(where) == 0 {
		return nil
	}
	pids, err := m.cgroupPids(id)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		inside := pidInside(pid)
		rel, ok := where[inside]
		if !ok {
			continue
		}
		dir := filepath.Join(base, filepath.Clean("/"+rel))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		// The VE's root manages its tree, as after its own mkdir.
		for d := dir; len(d) > len(base); d = filepath.Dir(d) {
			os.Lchown(d, uid, gid)
			for _, f := range []string{"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks",
				"notify_on_release", "cgroup.clone_children"} {
				os.Lchown(filepath.Join(d, f), uid, gid)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil &&
			!errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
	}
	return nil
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// lazyCheckpoint runs a lazy dump (see lazyDump) and calls ready once CRIU's page server
// listens. It returns when CRIU ends: nil once every page moved, else an error and, unless
// the destination already ran the VE, the VE runs on here.
func (m *Manager) lazyCheckpoint(c *libcontainer.Container, opts *libcontainer.CriuOpts, l *lazyDump, ready func() error) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return err
	}
	r := os.NewFile(uintptr(p[0]), "criu-status")
	defer r.Close()
	opts.LazyPages, opts.StatusFd = true, p[1]
	// criu listens on this port, on 127.0.0.1 only (address in vectl's criu configuration).
	opts.PageServer = libcontainer.CriuPageServerInfo{Address: "127.0.0.1", Port: int32(l.port)}
	done := make(chan error, 1)
	go func() { done <- c.Checkpoint(opts) }()
	status := make(chan bool, 1)
	go func() {
		var b [1]byte
		n, _ := r.Read(b[:])
		status <- n == 1
	}()
	select {
	case ok := <-status:
		if !ok {
			return <-done
		}
	case err := <-done:
		// libcontainer writes the status fd (and closes it) only once criu is ready.
		fds := []unix.PollFd{{Fd: int32(p[0]), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 0); n == 0 {
			unix.Close(p[1])
		}
		if err == nil {
			err = errors.New("criu ended before its page server listened")
		}
		return err
	}
	rerr := ready()
	if rerr != nil {
		// The page server may wait for its one connection still: one that closes at once
		// ends the transfer, and CRIU resumes the tasks.
		if conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", l.port), time.Second); err == nil {
			conn.Close()
		}
	}
	err := <-done
	switch {
	case rerr != nil:
		return rerr
	case err != nil && l.restored:
		return fmt.Errorf("%w: the pages stopped moving after the VE ran on the destination (%v): its memory there is incomplete, and it is lost", ErrCheckpoint, err)
	}
	return err
}
