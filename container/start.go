package container

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/console"

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
}

// Start boots a VE: mount its root, pin a network namespace, write the OCI spec, and have a
// monitor process create the container with the template's /sbin/init as PID 1 (or create it
// directly with NoMonitor). Every step registers its undo; a failure undoes what was done.
func (m *Manager) Start(ctx context.Context, ref string, o StartOptions) error {
	m.warmCgroupAttach()
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	cfg, err := m.startable(id)
	if err != nil {
		l.Unlock()
		return fmt.Errorf("start %s: %w", id, err)
	}
	// The monitor is started first and waits for the go-ahead: its runtime comes up (about
	// 4 ms for a Go process of this size) while this vectl prepares the VE.
	var mon *monitorSpawn
	if !o.NoMonitor && !cfg.NoMonitor {
		if mon, err = m.spawnMonitor(id, o.MonitorArgs, l); err != nil {
			l.Unlock()
			return fmt.Errorf("start %s: %w", id, err)
		}
	}
	// With a monitor the network is attached while the monitor creates the container; the
	// init is executed once both are done.
	cfg, initType, err := m.prepare(ctx, id, o.NoMonitor, mon == nil)
	switch {
	case err != nil && mon != nil:
		mon.cancel()
	case err != nil:
	case mon == nil:
		err = m.runDetached(id)
	default:
		err = mon.boot(func() error {
			if err := m.attachNetwork(ctx, cfg, m.store.RootDir(id)); err != nil {
				return fmt.Errorf("network: %w", err)
			}
			return nil
		})
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

// StartForeground starts a VE and runs its monitor loop in this process until the VE ends,
// for systemd units: the console is on in's terminal when there is one, SIGTERM, SIGINT and
// SIGHUP stop the VE gracefully and other signals are forwarded to its init.
func (m *Manager) StartForeground(ctx context.Context, ref string, in *os.File, sigs <-chan os.Signal, wait time.Duration) (Ending, error) {
	id, l, err := m.lock(ref)
	if err != nil {
		return EndFailed, err
	}
	unlock := func() {
		if l != nil {
			l.Unlock()
			l = nil
		}
	}
	defer unlock()
	if _, err := m.startable(id); err != nil {
		return EndFailed, fmt.Errorf("start %s: %w", id, err)
	}
	_, initType, err := m.prepare(ctx, id, false, true)
	if err != nil {
		return EndFailed, fmt.Errorf("start %s: %w", id, errors.Join(err, m.teardown(id, false)))
	}
	var term *os.File
	if cur, err := console.ConsoleFromFile(in); err == nil && cur.SetRaw() == nil {
		defer cur.Reset()
		term = in
	}
	// The lock is held until the first boot is done, as a background start holds it until
	// its monitor reports. Under systemd (Type=notify) READY=1 follows the boot, or the VE's
	// own readiness with wait > 0.
	booted := func(err error) {
		unlock()
		if err != nil {
			return
		}
		go func() {
			if wait > 0 && m.waitBooted(ctx, id, initType, wait) != nil {
				return
			}
			notifyReady("READY=1\nSTATUS=VE " + id + " is up")
		}()
	}
	return m.RunMonitor(ctx, id, MonitorOptions{Terminal: term, Signals: sigs, Booted: booted})
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
	return cfg, nil
}

// prepare does the part of a start that happens under the VE's lock in the starting vectl:
// clean up a previous crashed run, mount, pin the network namespace, attach the network
// (with withNetwork; else the caller does it before the init runs) and write the spec.
// The caller has checked startable and tears down on error.
func (m *Manager) prepare(ctx context.Context, id string, noMonitor, withNetwork bool) (*Config, string, error) {
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return nil, "", err
	}
	if m.leftovers(id) {
		if err := m.teardown(id, true); err != nil {
			return nil, "", fmt.Errorf("clean up the previous run: %w", err)
		}
	}
	// The run directory comes first: whatever a start killed after this point leaves behind,
	// the next stop, start or destroy sees it and tears it down (the mount included).
	if err := os.MkdirAll(m.runDir(id), 0o700); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(m.runFile(id, runIDFile), []byte(newRunID()), 0o600); err != nil {
		return nil, "", err
	}
	if err := m.mountRoot(cfg); err != nil {
		return nil, "", err
	}
	root := m.store.RootDir(id)
	initType := template.DetectInit(root)
	if initType == "" {
		return nil, "", fmt.Errorf("%w: no /sbin/init in its root (template %s)", ErrNoInit, cfg.OSTemplate)
	}
	if err := os.WriteFile(m.runFile(id, initTypeFile), []byte(initType), 0o600); err != nil {
		return nil, "", err
	}
	if err := network.PinNetns(m.netnsPath(id)); err != nil {
		return nil, "", err
	}
	if withNetwork {
		if err := m.attachNetwork(ctx, cfg, root); err != nil {
			return nil, "", fmt.Errorf("network: %w", err)
		}
	}
	hostname := cfg.Hostname
	if hostname == "" {
		hostname = id
	}
	spec, err := buildSpec(specOptions{
		cfg: cfg, rootfs: root, netns: m.netnsPath(id), hostname: hostname,
		console: !noMonitor && !cfg.NoMonitor,
		cgroup:  m.specCgroupsPath(id), cgroupV1: m.cgroupPath(id),
	})
	if err != nil {
		return nil, "", err
	}
	if err := m.applyResources(cfg, spec.Linux.Resources, nil); err != nil {
		return nil, "", err
	}
	if nf := cfg.Resources.NumFile; nf != nil {
		rl := &spec.Process.Rlimits[0]
		rl.Soft, rl.Hard = min(*nf, rl.Hard), min(*nf, rl.Hard)
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return nil, "", err
	}
	if err := store.WriteFileAtomic(m.ociPath(id), append(data, '\n'), 0o600); err != nil {
		return nil, "", err
	}
	return cfg, initType, nil
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
	log, err := appendLog(m.consoleLog(id))
	if err != nil {
		return err
	}
	defer log.Close()
	c, p, done, err := m.newContainer(id, s)
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

// monitorSpawn is a VE's monitor that has been started but waits for the go-ahead.
type monitorSpawn struct {
	cmd     *exec.Cmd
	ready   *os.File      // the monitor writes "ok" or "error: ..." here once the init runs
	goAhead *os.File      // "go" lets it boot the VE; closed unwritten, the monitor just exits
	exited  chan struct{} // closed when the monitor has exited and been reaped
	log     string
}

// spawnMonitor starts the VE's monitor (this binary, re-executed) in its own session. It
// comes up and waits, touching nothing, until boot gives the go-ahead. The monitor inherits
// the VE's lock and keeps it until its first boot is done, so that the VE stays locked even
// if this vectl is killed meanwhile.
func (m *Manager) spawnMonitor(id string, args []string, lock *store.Lock) (*monitorSpawn, error) {
	if len(args) == 0 {
		return nil, errors.New("no monitor command")
	}
	log, err := appendLog(m.consoleLog(id))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	gr, gw, err := os.Pipe()
	if err != nil {
		r.Close()
		return nil, err
	}
	defer gr.Close()
	cmd := exec.Command(args[0], append(args[1:], id)...)
	cmd.Args[0] = "vectl"
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = log, log // a crashing monitor's last words land in the log
	cmd.ExtraFiles = monitorStartFiles(w, lock.File(), gr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		gw.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	s := &monitorSpawn{cmd: cmd, ready: r, goAhead: gw, exited: make(chan struct{}), log: m.consoleLog(id)}
	go func() { // reaps the monitor if it dies while we still run
		cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// boot lets the monitor create the VE's container, runs attach (the VE's network)
// meanwhile, lets the monitor execute the init, and waits until it reports that the init
// runs, or why it does not. When attach fails the monitor cancels its boot, and boot
// returns once it has exited.
func (s *monitorSpawn) boot(attach func() error) error {
	defer s.ready.Close()
	if _, err := s.goAhead.WriteString("go\n"); err != nil {
		s.goAhead.Close()
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	if err := attach(); err != nil {
		s.cancel()
		return err
	}
	_, err := s.goAhead.WriteString("run\n")
	s.goAhead.Close()
	if err != nil {
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	line, err := bufio.NewReader(s.ready).ReadString('\n')
	line = strings.TrimSpace(line)
	switch {
	case line == "ok":
		return nil
	case strings.HasPrefix(line, "error: "):
		return errors.New(strings.TrimPrefix(line, "error: "))
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	return fmt.Errorf("monitor: %q %v", line, err)
}

// cancel sends the monitor away without a boot and waits until it has exited, so that a
// teardown that follows does not race with it.
func (s *monitorSpawn) cancel() {
	s.goAhead.Close()
	s.ready.Close()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// waitBooted waits until the VE reports boot complete: for systemd guests,
// systemctl is-system-running --wait says running or degraded; for other inits, the file
// /run/vectl-booted exists inside the VE (the busybox template's rcS writes it last).
func (m *Manager) waitBooted(ctx context.Context, id, initType string, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 120 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if initType == "systemd" {
		for {
			out, code, err := m.ExecOutput(ctx, id, "systemctl", "is-system-running", "--wait")
			state := strings.TrimSpace(out)
			if err == nil && (state == "running" || state == "degraded") {
				return nil
			}
			// Before systemd has its bus up the command fails at once; retry.
			if ctx.Err() != nil {
				return fmt.Errorf("start %s: %w within %v (systemd says %q, exit %d)", id, ErrWait, timeout, state, code)
			}
			if state != "" && state != "starting" && state != "initializing" && code == 0 {
				return fmt.Errorf("start %s: %w: systemd is %s", id, ErrWait, state)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for {
		pid, err := m.initPid(id)
		if err != nil {
			return fmt.Errorf("start %s: %w: %v", id, ErrWait, err)
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/vectl-booted", pid)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start %s: %w within %v (no /run/vectl-booted)", id, ErrWait, timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
