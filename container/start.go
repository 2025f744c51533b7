package container

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/console"

	"github.com/vectl/vectl/container/idmap"
	"github.com/vectl/vectl/container/monitor"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/network"
	"github.com/vectl/vectl/template"
)

// ErrWait means start --wait gave up before the VE reported boot complete (exit 133).
var ErrWait = errors.New("VE did not finish booting")

// StartOptions control how a VE is started.
type StartOptions struct {
	NoMonitor   bool          // no resident process: no console, reboot means stop
	Wait        bool          // return once the VE reports boot complete
	WaitTimeout time.Duration // for Wait (default 120s)
	// MonitorArgs is how to run this binary's hidden monitor command for the VE:
	// argv without the id (for example [/proc/self/exe --root R ... __monitor]).
	MonitorArgs []string
	// Force starts a VE set --disabled yes.
	Force bool
	// Become makes this process the VE's monitor instead of spawning one (a start forked
	// by monitor's constructor, see monitor.Forked; not with Wait): once the init runs,
	// Started is called, the process detaches from its caller (monitor.Detach) and stays as
	// the monitor, so Start returns only if the boot failed or the monitor ended.
	Become  bool
	Started func()
}

// Start boots a VE: mount its root, pin a network namespace, write the OCI spec, and have a
// monitor process create the container with the template's /sbin/init as PID 1 (or create it
// directly with NoMonitor). Every step registers its undo; a failure undoes what was done.
func (m *Manager) Start(ctx context.Context, ref string, o StartOptions) error {
	m.warmCgroupAttach()
	go warmJSON(o.Become) // the monitor's container config too, when this process becomes it
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	cfg, err := m.startable(id)
	if err == nil && cfg.Disabled && !o.Force {
		err = fmt.Errorf("%w: use start --force, or set --disabled no --save", ErrDisabled)
	}
	if err != nil {
		l.Unlock()
		return fmt.Errorf("start %s: %w", id, err)
	}
	if o.Become && !o.Wait && !o.NoMonitor && !cfg.NoMonitor {
		return m.startAsMonitor(ctx, id, l, o)
	}
	// The monitor is started first and waits for the go-ahead: its runtime comes up (about
	// 4 ms for a Go process of this size) while this vectl prepares the VE.
	var mon *monitor.Spawned
	if !o.NoMonitor && !cfg.NoMonitor {
		if mon, err = monitor.Spawn(o.MonitorArgs, id, l.File(), m.consoleLog(id)); err != nil {
			l.Unlock()
			return fmt.Errorf("start %s: %w", id, err)
		}
	}
	// The network is attached from when its namespace is ready (prepare); with a monitor the
	// init is executed once that and the container's creation are done, without one the
	// container is created once the network is attached.
	_, initType, attached, err := m.prepare(ctx, id, o.NoMonitor, netAttach)
	switch {
	case err != nil && mon != nil:
		mon.Cancel()
	case err != nil:
	case mon == nil:
		if err = attached(); err == nil {
			err = m.runDetached(id)
		}
	default:
		err = mon.Boot(attached)
	}
	if err != nil {
		err = errors.Join(err, m.teardown(id, false))
		l.Unlock()
		return fmt.Errorf("start %s: %w", id, err)
	}
	l.Unlock()
	if o.Wait {
		return m.waitBooted(ctx, id, initType, o.WaitTimeout)
	}
	return nil
}

// startAsMonitor is Start in a process that becomes the VE's monitor (StartOptions.Become):
// the network is attached while the root is mounted and the monitor's boot creates the
// container, as with a spawned monitor, and the init is executed once both are done. l, the
// VE's lock, is released once the boot is done, before the process detaches.
func (m *Manager) startAsMonitor(ctx context.Context, id string, l *store.Lock, o StartOptions) error {
	_, _, attached, err := m.prepare(ctx, id, false, netAttach)
	if err != nil {
		err = errors.Join(err, m.teardown(id, false))
		l.Unlock()
		return fmt.Errorf("start %s: %w", id, err)
	}
	booted, err := m.runAsMonitor(ctx, id, attached, l, o.MonitorArgs, func() int {
		if o.Started != nil {
			o.Started()
		}
		return 0
	})
	if booted {
		// The monitor ended: it could not rest in the idle loop and the VE has ended since.
		return err
	}
	err = errors.Join(err, m.teardown(id, false))
	l.Unlock()
	return fmt.Errorf("start %s: %w", id, err)
}

// runAsMonitor runs this process as VE id's monitor, in a start or restore that becomes it:
// the network is attached while the monitor creates the container (await waits for that and
// says how it went), and the init is run (or the dump restored) once both are done. Once the
// VE runs, ready is called, still under l, the VE's lock; then l is released and the process
// detaches from its caller, reporting the exit status ready returned. booted says whether
// that happened: then err is the monitor's end, else why the VE did not come up (the caller
// tears it down).
func (m *Manager) runAsMonitor(ctx context.Context, id string, await func() error, l *store.Lock, self []string, ready func() int) (booted bool, err error) {
	_, err = m.RunMonitor(ctx, id, monitor.Options{
		Self: self,
		Gate: func() bool { return await() == nil },
		Booted: func(err error) {
			if err != nil {
				return
			}
			booted = true
			status := ready()
			l.Unlock()
			if err := monitor.Detach(m.consoleLog(id), status); err != nil {
				m.opts.Warn(fmt.Sprintf("VE %s: %v", id, err))
			}
		},
	})
	if booted {
		return true, err
	}
	if aerr := await(); aerr != nil {
		err = aerr // the boot was cancelled for it
	}
	return false, err
}

// awaitAttach returns the function that waits for a network attachment's result on c (once;
// nil c: none runs) and says how it went.
func awaitAttach(c <-chan error) func() error {
	var err error
	waited := c == nil
	return func() error {
		if !waited {
			if err, waited = <-c, true; err != nil {
				err = fmt.Errorf("network: %w", err)
			}
		}
		return err
	}
}

// ForegroundOptions are those of StartForeground.
type ForegroundOptions struct {
	// In becomes the VE's console when it is a terminal.
	In *os.File
	// Signals delivers the signals of monitor.ForegroundSignals sent to this process.
	Signals <-chan os.Signal
	// Wait, when above 0, has READY=1 wait for the VE's boot to complete (waitBooted).
	Wait  time.Duration
	Force bool
	// Self runs this foreground vectl again (this binary, its global options and "start
	// --foreground" with its options; the idle loop adds --resume MESSAGE ID), Stop stops
	// the VE (this binary, its global options and "stop"; the VE's id is added): with both,
	// the monitor rests in the idle loop once the VE runs (monitor.Options.StopArgv).
	Self, Stop []string
	// Resume is the idle loop's hand-back (start --foreground --resume MESSAGE): this process
	// goes on as the monitor it replaced.
	Resume string
}

// StartForeground starts a VE and runs its monitor loop in this process until the VE ends,
// for systemd units: the console is on o.In's terminal when there is one, SIGTERM, SIGINT
// and SIGHUP stop the VE gracefully and other signals are forwarded to its init. Without a
// terminal the monitor rests in the idle loop (the same process) once the VE runs, as a
// background one does, and comes back here through o.Resume.
//
// A restart request (restart, backup --mode stop; foreground.go) that ends the VE's run makes
// it boot the VE again in this process, and the loop goes on.
func (m *Manager) StartForeground(ctx context.Context, ref string, o ForegroundOptions) (monitor.Ending, error) {
	if o.Resume == "" {
		// As a background start does (Start): the grace period of the first cgroup attach
		// and the JSON tables of the spec and the container's config, off the critical path.
		m.warmCgroupAttach()
		go warmJSON(true)
	}
	restart := false
	for {
		reported := false
		var id string
		var end monitor.Ending
		var err error
		if o.Resume != "" {
			id, end, err = m.resumeForeground(ctx, ref, o)
			o.Resume = ""
		} else {
			id, end, err = m.startForeground(ctx, ref, o, restart, &reported)
		}
		if restart && !reported && m.restartAsked(id) { // the new boot failed before it was reported
			m.restartDone(id, cmp.Or(err, errors.New("the VE ended before its boot was reported")))
		}
		if end != monitor.EndShutdown || err != nil || !m.restartAsked(id) {
			return end, err
		}
		restart, ref = true, id
	}
}

// foregroundIdle fills in what a foreground monitor of VE id needs to rest in the idle loop.
func (o ForegroundOptions) foregroundIdle(id string, mo *monitor.Options) {
	if len(o.Self) > 0 && len(o.Stop) > 0 {
		mo.Self, mo.StopArgv = o.Self, append(slices.Clip(o.Stop), id)
	}
}

// resumeForeground goes on with the foreground monitor of VE id that the idle loop executed
// again once the VE's init had exited.
func (m *Manager) resumeForeground(ctx context.Context, id string, o ForegroundOptions) (string, monitor.Ending, error) {
	of, r, err := monitor.ParseResume(o.Resume)
	if err != nil {
		return id, monitor.EndFailed, err
	}
	if of != id {
		return id, monitor.EndFailed, fmt.Errorf("foreground vectl of VE %s resumed with the hand-back of VE %s", id, of)
	}
	mo := monitor.Options{Signals: o.Signals, Resume: r}
	o.foregroundIdle(id, &mo)
	end, err := m.RunMonitor(ctx, id, mo)
	return id, end, err
}

// startForeground is one run of StartForeground; restart: it answers a restart request
// (once its boot is reported, which sets reported).
func (m *Manager) startForeground(ctx context.Context, ref string, o ForegroundOptions, restart bool, reported *bool) (string, monitor.Ending, error) {
	id, l, err := m.lock(ref)
	if err != nil {
		return "", monitor.EndFailed, err
	}
	unlock := func() {
		if l != nil {
			l.Unlock()
			l = nil
		}
	}
	defer unlock()
	if cfg, err := m.startable(id); err != nil {
		return id, monitor.EndFailed, fmt.Errorf("start %s: %w", id, err)
	} else if cfg.Disabled && !o.Force {
		return id, monitor.EndFailed, fmt.Errorf("start %s: %w: use start --force, or set --disabled no --save", id, ErrDisabled)
	}
	_, initType, attached, err := m.prepare(ctx, id, false, netAttach)
	if err != nil {
		return id, monitor.EndFailed, fmt.Errorf("start %s: %w", id, errors.Join(err, m.teardown(id, false)))
	}
	// The network is attached while the container is created, as in a background start
	// (runAsMonitor): the init runs once both are done.
	var netErr error
	gate := func() bool {
		netErr = attached()
		return netErr == nil
	}
	var term *os.File
	if cur, err := console.ConsoleFromFile(o.In); err == nil && cur.SetRaw() == nil {
		defer cur.Reset()
		term = o.In
	}
	// The lock is held until the first boot is done (and, when it failed, the VE torn down),
	// as a background start holds it until its monitor reports. Under systemd (Type=notify)
	// READY=1 follows the boot, or the VE's own readiness with o.Wait > 0; the monitor may
	// rest in the idle loop (rest) only once it has been sent.
	rest := make(chan struct{})
	booted := func(err error) {
		if err == nil {
			unlock()
		} else if aerr := attached(); aerr != nil {
			// The monitor tears the VE down next, under the lock (released on return) and
			// with no plugin still running; the boot was cancelled for the network's error.
			err = aerr
		}
		*reported = true
		if restart {
			m.restartDone(id, err)
		}
		if err != nil {
			return
		}
		go func() {
			if o.Wait > 0 && m.waitBooted(ctx, id, initType, o.Wait) != nil {
				return
			}
			monitor.Notify("READY=1\nSTATUS=VE " + id + " is up")
			close(rest)
		}()
	}
	mo := monitor.Options{Terminal: term, Signals: o.Signals, Booted: booted, Gate: gate, Rest: rest}
	o.foregroundIdle(id, &mo)
	end, err := m.RunMonitor(ctx, id, mo)
	if netErr != nil {
		return id, end, fmt.Errorf("start %s: %w", id, errors.Join(netErr, m.teardown(id, false)))
	}
	return id, end, err
}

// startable checks, before anything is changed, that a VE can be started, and returns its
// configuration.
func (m *Manager) startable(id string) (*Config, error) {
	cfg, err := m.loadComplete(id)
	if err != nil {
		return nil, err
	}
	if m.populated(id) {
		return nil, ErrRunning
	}
	if pid := m.restarting(id); pid != 0 {
		return nil, fmt.Errorf("%w: its foreground vectl (pid %d) is starting it again", ErrRunning, pid)
	}
	return cfg, nil
}

// netPrep says what prepare does with a VE's network besides its namespace.
type netPrep int

const (
	netNone   netPrep = iota // nothing: the VE runs without its addresses (runscript)
	netAttach                // the guest's network files and the attachment (CNI ADD)
	netLocked                // the same, the namespace locked first (network.LockNetns): a restore
)

// prepare does the part of a start that happens under the VE's lock in the starting vectl:
// clean up a previous crashed run, mount, pin the network namespace and write the spec.
// Unless net is netNone it also writes the guest's network files and attaches the network
// on a goroutine from when the namespace is ready, while the root is mounted; attached waits
// for that and says how it went (at once when none runs): the caller calls it before the VE's
// init runs (or its dump is restored). The caller has checked startable and tears down on
// error; no attachment is under way then.
func (m *Manager) prepare(ctx context.Context, id string, noMonitor bool, net netPrep) (cfg *Config, initType string, attached func() error, err error) {
	cfg, err = m.store.LoadConfig(id)
	if err != nil {
		return nil, "", nil, err
	}
	if m.leftovers(id) {
		if err := m.teardown(id, true); err != nil {
			return nil, "", nil, fmt.Errorf("clean up the previous run: %w", err)
		}
	}
	// The run directory comes first: whatever a start killed after this point leaves behind,
	// the next stop, start or destroy sees it and tears it down (the mount included).
	if err := os.MkdirAll(m.runDir(id), 0o700); err != nil {
		return nil, "", nil, err
	}
	if err := os.WriteFile(m.runFile(id, runIDFile), []byte(newRunID()), 0o600); err != nil {
		return nil, "", nil, err
	}
	// A user-namespace VE's network namespace belongs to its user namespace (so that its root
	// manages its own interfaces, routes and firewall); the user namespace is pinned before
	// the root is mounted through it, the network namespace beside that mount (below).
	var holder *idmap.Holder
	if u := cfg.UserNS; u != nil {
		if err := m.reachRoots(u.UID); err != nil {
			return nil, "", nil, err
		}
		if holder, err = idmap.Hold(m.runFile(id, usernsFile), u.UID, u.GID); err != nil {
			return nil, "", nil, err
		}
		defer holder.Close()
	}
	// The network namespace is made (the kernel takes 1 to 4 ms here) and made ready (loopback
	// up) while the root is mounted and looked at; nothing below needs it. A user-namespace
	// VE's belongs to its user namespace: its holder makes it. The CNI plugins then attach
	// the network in it (two programs, each a Go runtime: 15 to 20 ms here) while the root is
	// mounted and, with a monitor, the container is created.
	netns := make(chan error, 1)
	var cni chan error
	if net != netNone && (len(cfg.IPs) > 0 || len(cfg.NetIfs) > 0) {
		cni = make(chan error, 1)
	}
	await := awaitAttach(cni)
	defer func() {
		if err != nil {
			await() // no plugin is still running when the caller tears down
		}
	}()
	go func() {
		var err error
		if holder == nil {
			err = network.PinNetns(m.netnsPath(id))
		} else if err = holder.PinNet(m.netnsPath(id)); err == nil {
			err = network.SetUpNetns(m.netnsPath(id))
		}
		if err == nil && net == netLocked {
			err = network.LockNetns(m.netnsPath(id))
		}
		netns <- err
		if cni != nil {
			if err == nil {
				err = m.attachCNI(ctx, cfg)
			}
			cni <- err
		}
	}()
	initType, err = m.prepareRoot(ctx, cfg)
	if nerr := <-netns; err == nil {
		err = nerr
	}
	if err != nil {
		return nil, "", nil, err
	}
	root := m.store.RootDir(id)
	if net != netNone {
		if err := m.writeGuestNet(cfg, root); err != nil {
			return nil, "", nil, err
		}
	}
	hostname, err := guestHostname(cfg, id, root, m.templates.LowerDir(cfg.OSTemplate))
	if err != nil {
		return nil, "", nil, err
	}
	spec, err := buildSpec(specOptions{
		cfg: cfg, rootfs: root, netns: m.netnsPath(id), hostname: hostname, userns: m.usernsPath(cfg),
		// A user-namespace VE's systemd mounts /tmp itself; a privileged VE's may not.
		tmpfsTmp: cfg.UserNS == nil && initType == "systemd" && template.WantsTmpfsTmp(root),
		console:  !noMonitor && !cfg.NoMonitor,
		cgroup:   m.specCgroupsPath(id), cgroupV1: m.cgroupPath(id), criuConf: m.criuConfPath(),
	})
	if err != nil {
		return nil, "", nil, err
	}
	if err := m.applyResources(cfg, spec.Linux.Resources, nil); err != nil {
		return nil, "", nil, err
	}
	if nf := cfg.Resources.NumFile; nf != nil {
		rl := &spec.Process.Rlimits[0]
		rl.Soft, rl.Hard = min(*nf, rl.Hard), min(*nf, rl.Hard)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, "", nil, err
	}
	if err := store.ReplaceFile(m.ociPath(id), append(data, '\n'), 0o600); err != nil {
		return nil, "", nil, err
	}
	m.spec.Lock()
	m.spec.id, m.spec.s = id, spec
	m.spec.Unlock()
	return cfg, initType, await, nil
}

// prepareRoot mounts a VE's root, gives a clone its own identity at its first start, and
// finds the VE's init.
func (m *Manager) prepareRoot(ctx context.Context, cfg *Config) (string, error) {
	if err := m.mountRoot(cfg); err != nil {
		return "", err
	}
	root := m.store.RootDir(cfg.ID)
	if cfg.NewIdentity {
		if err := m.newIdentity(ctx, cfg, root); err != nil {
			return "", fmt.Errorf("the clone's own machine-id and SSH host keys: %w", err)
		}
		cfg.NewIdentity = false
		if err := m.store.SaveConfig(cfg); err != nil {
			return "", err
		}
	}
	initType := template.DetectInit(root)
	if initType == "" {
		return "", fmt.Errorf("%w: no /sbin/init in its root (template %s)", ErrNoInit, cfg.OSTemplate)
	}
	if err := os.WriteFile(m.runFile(cfg.ID, initTypeFile), []byte(initType), 0o600); err != nil {
		return "", err
	}
	if initType == "sysvinit" || initType == "openrc" {
		// openrc-init (no inittab) is waited for through OpenRC's own state instead.
		if err := template.AddBootedMark(root); err != nil && (initType == "sysvinit" || !errors.Is(err, template.ErrNoInittab)) {
			m.opts.Warn(fmt.Sprintf("start %s: %v: start --wait will wait for its timeout", cfg.ID, err))
		}
	}
	return initType, nil
}

// reachRoots lets a user-namespace VE's root (host uid) look up its own root directory by
// the host path, as its init does while it is set up: search-only ACL entries on the state
// root and on the directory of the mounted roots. Every directory above the state root must
// be searchable by anyone.
func (m *Manager) reachRoots(uid uint32) error {
	for dir := filepath.Dir(m.opts.Root); ; dir = filepath.Dir(dir) {
		st, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s is not searchable by other users, which the root of a user-namespace VE (host uid %d) needs to reach its root below %s: chmod o+x %s",
				dir, uid, m.opts.Root, dir)
		}
		if dir == "/" {
			break
		}
	}
	for _, dir := range []string{m.opts.Root, m.store.RootDir("")} {
		if err := idmap.GrantSearch(dir, uid, true); err != nil {
			return err
		}
	}
	return nil
}

// usernsPath is the pinned user namespace of a user-namespace VE; "" for a privileged one.
func (m *Manager) usernsPath(cfg *Config) string {
	if cfg.UserNS == nil {
		return ""
	}
	return m.runFile(cfg.ID, usernsFile)
}

func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// runDetached creates the VE's container directly, with no monitor: the init's stdio is
// /dev/null and the console log, and the init is re-parented to the host's init when vectl
// exits. Its exit status is then lost, so an in-VE reboot means stop.
func (m *Manager) runDetached(id string) error {
	s, err := m.loadSpec(id)
	if err != nil {
		return err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	log, err := monitor.AppendLog(m.consoleLog(id))
	if err != nil {
		return err
	}
	defer log.Close()
	c, p, done, err := m.newContainer(id, s, false)
	if err != nil {
		return err
	}
	defer done()
	p.Stdin, p.Stdout, p.Stderr = devnull, log, log
	if err := m.runInit(id, c, p, nil); err != nil {
		c.Destroy()
		return fmt.Errorf("run init: %w", err)
	}
	return nil
}

// waitBooted waits until the VE reports boot complete: for systemd guests,
// systemctl is-system-running --wait says running or degraded (degraded is reported); for
// other inits, the file /run/vectl-booted exists inside the VE (the busybox template's rcS
// writes it last; for sysvinit and Debian's OpenRC, the inittab line AddBootedMark adds
// touches it once the runlevel's scripts are done, as vzctl's /.vzfifo), or runit's stage 2
// (runsvdir) runs, or openrc-init's OpenRC has reached its default runlevel.
func (m *Manager) waitBooted(ctx context.Context, id, initType string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 120 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if initType == "systemd" {
		for {
			out, code, _ := m.ExecOutput(ctx, id, "systemctl", "is-system-running", "--wait")
			switch state := strings.TrimSpace(out); {
			case state == "running":
				return nil
			case state == "degraded": // is-system-running exits 1 for it
				m.opts.Warn(fmt.Sprintf("VE %s booted degraded: systemctl --failed inside says which units failed", id))
				return nil
			case ctx.Err() != nil:
				return fmt.Errorf("start %s: %w within %v (systemd says %q, exit %d)", id, ErrWait, timeout, state, code)
			case state != "" && state != "starting" && state != "initializing" && state != "offline":
				// maintenance, stopping: the boot will not complete.
				return fmt.Errorf("start %s: %w: systemd is %s", id, ErrWait, state)
			}
			// Before systemd has its bus up the command fails at once; retry.
			time.Sleep(50 * time.Millisecond)
		}
	}
	for {
		pid, err := m.initPid(id)
		if err != nil {
			return fmt.Errorf("start %s: %w: %v", id, ErrWait, err)
		}
		proot := fmt.Sprintf("/proc/%d/root", pid)
		switch _, err := os.Stat(proot + template.BootedMark); {
		case err == nil:
			return nil
		case initType == "runit" && m.runsCommand(id, "runsvdir"):
			return nil
		case initType == "openrc" && readTrim(proot+"/run/openrc/softlevel") == "default" && !m.runsCommand(id, "openrc"):
			return nil
		}
		select {
		case <-ctx.Done():
			if initType == "runit" {
				return fmt.Errorf("start %s: %w within %v (runit's stage 2 did not start)", id, ErrWait, timeout)
			}
			return fmt.Errorf("start %s: %w within %v (no /run/vectl-booted)", id, ErrWait, timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// runsCommand reports whether a process of the VE runs a program named comm.
func (m *Manager) runsCommand(id, comm string) bool {
	pids, err := m.cgroupPids(id)
	if err != nil {
		return false
	}
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err == nil && strings.TrimSpace(string(data)) == comm {
			return true
		}
	}
	return false
}
