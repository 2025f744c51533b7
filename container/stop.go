package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"

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
func (m *Manager) Stop(ctx context.Context, ref string, o StopOptions) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return m.stop(ctx, id, o)
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
	if halt {
		go m.ExecOutput(ctx, id, "/sbin/halt")
	} else {
		if err := m.signalInit(id, sig); err != nil {
			return err
		}
	}
	for m.populated(id) {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("the VE's init did not shut it down within %v", timeout)
			}
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// Restart stops a VE (gracefully unless o.Fast) and starts it again.
func (m *Manager) Restart(ctx context.Context, ref string, o StopOptions, so StartOptions) error {
	if err := m.Stop(ctx, ref, o); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return m.Start(ctx, ref, so)
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
