package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/template"
)

// ErrStop means a VE could not be stopped (exit 33).
var ErrStop = errors.New("unable to stop VE")

// DefaultStopTimeout is how long stop waits for a graceful shutdown, as vzctl does.
const DefaultStopTimeout = 120 * time.Second

// StopOptions control Stop.
type StopOptions struct {
	Fast    bool          // kill at once instead of asking the init to shut down
	Timeout time.Duration // graceful shutdown limit (0: the VE's stop_timeout or 120s)
}

// Stop shuts a VE down: the shutdown request its init expects (systemd: SIGRTMIN+3,
// busybox: SIGUSR2, sysvinit: halt), a wait of up to the stop timeout, then SIGKILL for
// everything left in its cgroup, then teardown in reverse order of start. Stop on a VE that
// is not running but has leftovers of a crashed run only finishes the teardown.
//
// A foreground monitor (start --foreground, a systemd unit's main process) is not killed
// (foreground.go): once its init is gone and the VE's lock is free it finds its run over and
// exits 0, which its unit takes for a clean stop. Stop waits for that, up to monitorEndWait,
// and kills it only if it has not ended.
func (m *Manager) Stop(ctx context.Context, ref string, o StopOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	fg := m.foregroundMonitor(id)
	defer fg.close()
	err = m.stop(ctx, id, o)
	l.Unlock()
	if err == nil { // after a failed stop the VE may run on, and its monitor with it
		fg.awaitEnd()
	}
	return err
}

// stop is Stop with the VE's lock held.
func (m *Manager) stop(ctx context.Context, id string, o StopOptions) error {
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		return err
	}
	if !m.populated(id) {
		if !m.leftovers(id) {
			return fmt.Errorf("stop %s: %w", id, ErrNotRunning)
		}
		return m.teardown(id, false)
	}
	// The marker names this stop, so that a monitor can tell an abandoned stop (its vectl was
	// killed) from one in progress.
	if err := writePidFile(m.runFile(id, stoppingFile), os.Getpid()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	if !o.Fast {
		timeout := o.Timeout
		if timeout == 0 && cfg.StopTimeout > 0 {
			timeout = time.Duration(cfg.StopTimeout) * time.Second
		}
		if timeout == 0 {
			timeout = DefaultStopTimeout
		}
		if err := m.shutdown(ctx, id, cfg, timeout); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("stop %s: %w", id, err)
			}
			// Said, so that a guest whose init ignores the request is noticed.
			m.opts.Warn(fmt.Sprintf("stop %s: %v; killing what is left", id, err))
		}
	}
	if err := m.killAll(id, 10*time.Second); err != nil {
		return fmt.Errorf("stop %s: %w: %v", id, ErrStop, err)
	}
	return m.teardown(id, false)
}

// shutdown asks the VE's init to shut down and waits up to timeout for the VE to be empty.
// The caller kills what remains.
func (m *Manager) shutdown(ctx context.Context, id string, cfg *Config, timeout time.Duration) error {
	initType := readTrim(m.runFile(id, initTypeFile))
	if initType == "" {
		initType = template.DetectInit(m.store.RootDir(id))
	}
	sig, halt, err := stopSignalFor(initType, cfg.StopSignal)
	if err != nil {
		return err
	}
	if m.frozen(id) {
		m.thaw(id)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var req *shutdownSignal
	// runit ignores a shutdown request during its stage 1 (/etc/runit/1, the first second
	// or so of its boot), and being asked again is harmless to it (runit-init 0 marks
	// /etc/runit/stopit and sends SIGCONT): it is asked every second. Other inits halt at
	// once when asked a second time while they shut down (sysvinit's halt in runlevel 0).
	haltAgain := halt && initType == "runit"
	haltAt := time.Now()
	if halt {
		go m.ExecOutput(ctx, id, "/sbin/halt")
	} else {
		pid, fd, err := m.openInit(id)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		req = &shutdownSignal{pid: pid, fd: fd, sig: sig}
		if err := req.send(); err != nil {
			return err
		}
	}
	for i := 1; m.populated(id); i++ {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the VE's init did not shut it down within %v", timeout)
			}
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
		if req != nil && i%4 == 0 {
			req.again()
		}
		if haltAgain && time.Since(haltAt) >= time.Second {
			haltAt = time.Now()
			go m.ExecOutput(ctx, id, "/sbin/halt")
		}
	}
	return nil
}

// shutdownSignal is a shutdown request sent to a VE's init as a signal, sent again when the
// first cannot have reached the VE's init program: the kernel drops a signal that the init
// of a pid namespace neither catches nor blocks (it has no default actions), and one sent
// before the init executed the VE's program went to libcontainer's init (a Go program,
// which ignores it). A start returns before that exec, and an init sets up its signals
// some milliseconds after it: a stop right after a start, or one that waited for an in-VE
// reboot, used to wait out its whole timeout and kill the VE.
type shutdownSignal struct {
	pid, fd int // the init, and a pidfd of it (what the signal goes through)
	sig     unix.Signal
	exe     [2]uint64 // the device and inode of the init's program when last sent
	taken   bool      // the init caught or blocked sig when it was last sent
}

// send sends the signal and notes what the init ran and whether it took the signal.
func (s *shutdownSignal) send() error {
	s.exe, s.taken = initProgram(s.pid), takesSignal(s.pid, s.sig)
	return unix.PidfdSendSignal(s.fd, s.sig, nil, 0)
}

// again sends the signal once more if the last one may have been lost (the init did not
// take it, or has executed another program since) and the init takes it now.
func (s *shutdownSignal) again() {
	if s.taken && initProgram(s.pid) == s.exe {
		return
	}
	if takesSignal(s.pid, s.sig) {
		_ = s.send()
	}
}

// initProgram is the device and inode of the program process pid runs (zero when gone).
func initProgram(pid int) [2]uint64 {
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st) != nil {
		return [2]uint64{}
	}
	return [2]uint64{st.Dev, st.Ino}
}

// takesSignal reports whether process pid catches or blocks sig (a blocked signal waits
// for the signalfd or handler that systemd and others set up) and does not ignore it.
func takesSignal(pid int, sig unix.Signal) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	return signalTaken(string(data), sig)
}

// signalTaken reads sig's bit in the SigBlk, SigIgn and SigCgt masks of a /proc/PID/status.
func signalTaken(status string, sig unix.Signal) bool {
	mask := func(name string) uint64 {
		n, _ := strconv.ParseUint(statusField(status, name), 16, 64)
		return n
	}
	bit := uint64(1) << (uint(sig) - 1)
	return mask("SigIgn")&bit == 0 && (mask("SigBlk")|mask("SigCgt"))&bit != 0
}

// Restart stops a VE (gracefully unless o.Fast) and starts it again. A VE whose monitor is
// a foreground vectl (a systemd unit's) is started again by that vectl, so that it stays in
// its unit: Restart asks it to (a restart request, foreground.go), stops the VE and waits
// for the new boot's report (and with so.Wait for the boot to complete); the start's other
// options are then that vectl's own.
func (m *Manager) Restart(ctx context.Context, ref string, o StopOptions, so StartOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	if pid := m.restarting(id); pid != 0 {
		// Another restart of it is under way: its answer is this one's.
		l.Unlock()
		fg := openForeground(pid)
		if fg == nil {
			return m.Start(ctx, id, so)
		}
		defer fg.close()
		return m.restartOrStart(ctx, id, fg, so)
	}
	fg := m.foregroundMonitor(id)
	defer fg.close()
	if fg != nil {
		err := m.askRestart(id, fg)
		if err == nil {
			if err = m.stop(ctx, id, o); errors.Is(err, ErrNotRunning) {
				err = nil
			}
		}
		l.Unlock()
		if err != nil {
			os.Remove(m.restartFile(id))
			return err
		}
		return m.restartOrStart(ctx, id, fg, so)
	}
	err = m.stop(ctx, id, o)
	l.Unlock()
	if err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return m.Start(ctx, id, so)
}

// Freeze freezes every process of a running VE (vzctl chkpnt --suspend: no dump).
func (m *Manager) Freeze(ref string) error {
	return m.freeze(ref, true)
}

// Thaw thaws a frozen VE (vzctl chkpnt --resume).
func (m *Manager) Thaw(ref string) error {
	return m.freeze(ref, false)
}

func (m *Manager) freeze(ref string, on bool) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	op := map[bool]string{true: "freeze", false: "thaw"}[on]
	if !m.populated(id) {
		return fmt.Errorf("%s %s: %w", op, id, ErrNotRunning)
	}
	c, err := libcontainer.Load(m.lcRoot(), id)
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	if on {
		err = c.Pause()
	} else {
		err = c.Resume()
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	return nil
}

func readTrim(path string) string {
	data, _ := os.ReadFile(path)
	return strings.TrimSpace(string(data))
}
