package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/container/store"
)

// A VE started with start --foreground (a systemd unit's main process) has a foreground vectl
// as its monitor, whose exit status its unit reads: 0 for a VE that was shut down, anything
// else (a SIGKILL included) for a failure, which Restart=on-failure answers by starting the
// VE again. So no operation kills it: teardown leaves it alone, and once its init is gone and
// the VE's lock is free it finds its run over and exits 0 by itself (Stop waits for that).
// An operation that stops the VE only to start it again (restart, backup --mode stop) asks
// it to boot the VE again instead, so that the VE stays in its unit: a restart request.

// foreground is a VE's monitor that is a live foreground vectl other than this process.
type foreground struct {
	pid int
	fd  int // a pidfd of it
}

// foregroundMonitor returns VE id's monitor when it is a live foreground vectl (its run
// directory's foregroundFile) other than this process, else nil.
func (m *Manager) foregroundMonitor(id string) *foreground {
	if !m.foregroundRun(id) {
		return nil
	}
	pid, alive := readPidFile(m.runFile(id, monitorPIDFile))
	if !alive || pid == os.Getpid() {
		return nil
	}
	return openForeground(pid)
}

// openForeground returns process pid as a foreground monitor (nil: gone).
func openForeground(pid int) *foreground {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	return &foreground{pid: pid, fd: fd}
}

// foregroundRun reports whether VE id's current run is monitored by a foreground vectl.
func (m *Manager) foregroundRun(id string) bool {
	_, err := os.Stat(m.runFile(id, foregroundFile))
	return err == nil
}

func (f *foreground) close() {
	if f != nil {
		unix.Close(f.fd)
	}
}

// ended reports whether the process has ended.
func (f *foreground) ended() bool {
	n, _ := unix.Poll([]unix.PollFd{{Fd: int32(f.fd), Events: unix.POLLIN}}, 0)
	return n > 0
}

// awaitEnd waits for the monitor to end by itself, up to monitorEndWait, and kills it if it
// has not (as teardown kills any other monitor). Called without the VE's lock.
func (f *foreground) awaitEnd() {
	if f == nil {
		return
	}
	waitPidfds([]int{f.fd}, monitorEndWait)
	if !f.ended() {
		unix.PidfdSendSignal(f.fd, unix.SIGKILL, nil, 0)
		waitPidfds([]int{f.fd}, 2*time.Second)
	}
}

// monitorEndWait is how long Stop waits for a foreground monitor to end by itself.
const monitorEndWait = 10 * time.Second

// restartWait is how long a restart waits for a foreground monitor to report the VE's new
// boot once the VE's lock is let go.
const restartWait = 10 * time.Minute

// The restart request is RunDir/ve/ID.restart (beside the run directory, which the stop
// removes): "MONITOR START REQUESTER START", the pid and start time of the foreground
// vectl asked and of the vectl asking. The monitor honours it only while the requester
// lives, removes it once the new boot succeeded, and replaces it with "error: MESSAGE" when
// that boot failed.
func (m *Manager) restartFile(id string) string { return m.runDir(id) + ".restart" }

// askRestart asks the foreground monitor f of VE id to boot the VE again once its run has
// been ended (with the VE's lock held, before the stop).
func (m *Manager) askRestart(id string, f *foreground) error {
	mst, err := join.StartTime(f.pid)
	if err != nil {
		return err
	}
	self := os.Getpid()
	sst, err := join.StartTime(self)
	if err != nil {
		return err
	}
	return store.ReplaceFile(m.restartFile(id), fmt.Appendf(nil, "%d %d %d %d\n", f.pid, mst, self, sst), 0o600)
}

// restartRequest reads VE id's restart request: the pids of the foreground vectl asked and
// of the asking vectl, and whether each is still the process that was named.
func (m *Manager) restartRequest(id string) (mon, req int, monAlive, reqAlive, ok bool) {
	data, err := os.ReadFile(m.restartFile(id))
	if err != nil {
		return 0, 0, false, false, false
	}
	var mst, rst uint64
	if _, err := fmt.Sscanf(string(data), "%d %d %d %d", &mon, &mst, &req, &rst); err != nil {
		return 0, 0, false, false, false
	}
	return mon, req, sameProcess(mon, mst), sameProcess(req, rst), true
}

// restartAsked reports whether this process, a foreground monitor of VE id, has been asked
// to boot the VE again by a vectl that still waits for it. A request whose requester is gone
// is removed.
func (m *Manager) restartAsked(id string) bool {
	mon, _, monAlive, reqAlive, ok := m.restartRequest(id)
	if !ok || mon != os.Getpid() || !monAlive {
		return false
	}
	if !reqAlive {
		os.Remove(m.restartFile(id))
	}
	return reqAlive
}

// restarting returns the foreground vectl, other than this process, that a live restart
// request of VE id names (it and its requester alive): it is about to boot the VE, which no
// one else may start meanwhile (startable).
func (m *Manager) restarting(id string) int {
	mon, _, monAlive, reqAlive, ok := m.restartRequest(id)
	if !ok || !monAlive || !reqAlive || mon == os.Getpid() {
		return 0
	}
	return mon
}

// restartDone is the monitor's answer to a restart request: the request goes once the new
// boot succeeded; a failure is written in its place for the requester.
func (m *Manager) restartDone(id string, err error) {
	if err == nil {
		os.Remove(m.restartFile(id))
		return
	}
	store.ReplaceFile(m.restartFile(id), []byte("error: "+strings.ReplaceAll(err.Error(), "\n", "; ")+"\n"), 0o600)
}

// errUnanswered: the foreground monitor ended without answering a restart request (a vectl
// from before restart requests, or one killed meanwhile); the asking vectl then starts the
// VE itself, in the background.
var errUnanswered = errors.New("ended without starting it again")

// restartOrStart waits for the answer to a restart request (awaitRestart), and with o.Wait
// for the VE's boot to complete; when the foreground vectl ended without an answer, it starts
// the VE in the background with o, saying so.
func (m *Manager) restartOrStart(ctx context.Context, id string, f *foreground, o StartOptions) error {
	err := m.awaitRestart(id, f)
	if err == nil && o.Wait {
		return m.waitBooted(ctx, id, readTrim(m.runFile(id, initTypeFile)), o.WaitTimeout)
	}
	if !errors.Is(err, errUnanswered) {
		return err
	}
	m.opts.Warn(fmt.Sprintf("%v; starting it in the background", err))
	return m.Start(ctx, id, o)
}

// awaitRestart waits, without the VE's lock, for the foreground monitor f of VE id to answer
// the restart request: nil once the VE runs again under it. (A request gone while the VE does
// not run was a failure another waiting restart took; the monitor then ends.)
func (m *Manager) awaitRestart(id string, f *foreground) error {
	deadline := time.Now().Add(restartWait)
	for {
		data, err := os.ReadFile(m.restartFile(id))
		switch {
		case errors.Is(err, os.ErrNotExist) && m.populated(id):
			return nil
		case err == nil && strings.HasPrefix(string(data), "error: "):
			os.Remove(m.restartFile(id))
			return fmt.Errorf("VE %s: its foreground vectl (pid %d) could not start it again: %s", id, f.pid,
				strings.TrimSpace(strings.TrimPrefix(string(data), "error: ")))
		case f.ended():
			os.Remove(m.restartFile(id))
			return fmt.Errorf("VE %s: its foreground vectl (pid %d) %w", id, f.pid, errUnanswered)
		case time.Now().After(deadline):
			os.Remove(m.restartFile(id))
			return fmt.Errorf("VE %s: its foreground vectl (pid %d) did not start it again within %v", id, f.pid, restartWait)
		}
		waitPidfds([]int{f.fd}, 20*time.Millisecond)
	}
}
