package container

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"

	"github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/store"
	"golang.org/x/sys/unix"
)

// consoleLogMax caps a VE's console log; when it is reached the log is rotated once to
// <id>.console.1.
const consoleLogMax = 1 << 20

// consoleLog is this process's handle on a VE's console log. Package idle writes it (one
// writer: the console relay's output and the monitor's own lines agree on its size, its
// rotation and carriage returns).
type consoleLog struct{ path string }

func openConsoleLog(path string) (*consoleLog, error) {
	fd, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	idle.LogOpen(fd, path, consoleLogMax)
	return &consoleLog{path: path}, nil
}

// openLogFile opens a console log for appending, making its directory if needed.
func openLogFile(path string) (int, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return -1, err
	}
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_WRONLY|unix.O_APPEND|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// appendLog opens a console log as a file for a child's output (a monitor's last words, a
// VE without a monitor).
func appendLog(path string) (*os.File, error) {
	fd, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (l *consoleLog) Write(p []byte) (int, error) {
	idle.LogWrite(p)
	return len(p), nil
}

// Printf writes one vectl message line into the log.
func (l *consoleLog) Printf(format string, args ...any) {
	fmt.Fprintf(l, "vectl: "+format+"\n", args...)
}

func (l *consoleLog) Close() error {
	idle.LogClose()
	return nil
}

// MonitorOptions control RunMonitor.
type MonitorOptions struct {
	// Ready receives "ok" or "error: ..." once the first boot succeeded or failed
	// (background monitors).
	Ready *os.File
	// Lock is the VE's lock inherited from the starting vectl; it is closed (released) once
	// the first boot succeeded or failed.
	Lock *os.File
	// Booted is called once the first boot succeeded or failed (start --foreground).
	Booted func(error)
	// Terminal is attached as the VE's console in the foreground (nil: none).
	Terminal *os.File
	// Signals delivers signals sent to a foreground vectl: SIGTERM, SIGINT and SIGHUP stop
	// the VE gracefully, others are forwarded to its init.
	Signals <-chan os.Signal
	// Self is the command line that runs this monitor again (this binary with the global
	// options and "__monitor"). A background monitor with Self set rests in the idle loop
	// (package idle) between boots and comes back through it.
	Self []string
	// Resume is set when the idle loop executed the monitor again after the init exited.
	Resume *Resume
	// Gate, when set, is asked before the first boot executes the VE's init (which waits,
	// created, in its namespaces meanwhile); false cancels the boot. See AwaitGoAhead.
	Gate func() bool
}

// Resume is what the idle loop hands back to the Go monitor.
type Resume struct {
	RunID      string
	InitStatus syscall.WaitStatus
	ListenFD   int
	ClientFDs  []int
}

// Ending tells how a monitored VE ended.
type Ending int

// How a VE ended.
const (
	EndShutdown Ending = iota // poweroff, halt, or a stop request
	EndFailed                 // the VE could not be (re)started
	EndCrashed                // the init exited or was killed on its own
)

// RunMonitor is the per-VE monitor: the parent of the VE's init. It creates the container,
// holds the console pty (log, vectl console), turns an in-VE reboot into a restart and a
// poweroff or halt into a full teardown. stop tears the VE down itself; the monitor then
// just exits. It is the hidden "__monitor" command, and start --foreground runs it
// in-process. In the background, the monitor waits for the init in the idle loop.
func (m *Manager) RunMonitor(ctx context.Context, id string, o MonitorOptions) (Ending, error) {
	log, err := openConsoleLog(m.consoleLog(id))
	if err != nil {
		return EndFailed, m.report(o, err)
	}
	defer log.Close()
	var lfd int // the console socket's listener
	var clients []int
	var runID string
	if r := o.Resume; r != nil {
		runID, lfd, clients = r.RunID, r.ListenFD, r.ClientFDs
		// The idle loop handed them over without close-on-exec; no child may inherit them.
		for _, fd := range append([]int{lfd}, clients...) {
			unix.CloseOnExec(fd)
		}
	} else {
		data, _ := os.ReadFile(m.runFile(id, runIDFile))
		runID = string(data)
		if err := writePidFile(m.runFile(id, monitorPIDFile), os.Getpid()); err != nil {
			return EndFailed, m.report(o, err)
		}
		sockPath := m.runFile(id, consoleSock)
		os.Remove(sockPath)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
		if err != nil {
			return EndFailed, m.report(o, err)
		}
		os.Chmod(sockPath, 0o600)
		lf, err := ln.File() // a duplicate, close-on-exec: the relay accepts on it
		ln.SetUnlinkOnClose(false)
		ln.Close()
		if err != nil {
			return EndFailed, m.report(o, err)
		}
		lfd = int(lf.Fd())
		defer lf.Close()
	}
	idleMode := o.Self != nil && o.Terminal == nil && o.Signals == nil
	term := -1
	if o.Terminal != nil {
		term = int(o.Terminal.Fd())
	}

	var held *store.Lock // during an in-VE reboot: held from the decision to the new boot
	ws := syscall.WaitStatus(0)
	if o.Resume != nil {
		ws = o.Resume.InitStatus
	}
	for boot := 1; ; boot++ {
		if o.Resume == nil || boot > 1 {
			gate := o.Gate
			if boot > 1 {
				gate = nil
			}
			c, p, pty, err := m.bootMonitored(id, gate)
			held.Unlock()
			held = nil
			if boot == 1 {
				// The starting vectl may have been killed meanwhile; the VE runs regardless.
				m.report(o, err)
			}
			if err != nil {
				log.Printf("boot failed: %v", err)
				m.finish(id, runID, log)
				return EndFailed, err
			}
			pid := mustPid(p)
			log.Printf("VE %s booted (init pid %d)", id, pid)
			if idleMode {
				err := m.execIdle(id, pid, pty, lfd, log, clients, o.Self, runID)
				// Only a failed exec returns; keep monitoring in this process.
				log.Printf("idle loop: %v", err)
				idleMode = false
			}
			var stopped bool
			ws, stopped, clients = m.relayUntilExit(id, c, p, pty, lfd, clients, term, o.Signals, log)
			closePty(pty) // a reboot brings a new console
			if stopped {
				return EndShutdown, nil
			}
		}
		reason := describeExit(ws)
		log.Printf("init %s", reason)

		l, err := m.store.LockVE(id, 10*time.Minute)
		if err != nil {
			return EndFailed, err
		}
		if !m.ownsRun(id, runID) {
			l.Unlock() // a stop or a new start has taken over
			return EndShutdown, nil
		}
		if ws.Signaled() && ws.Signal() == unix.SIGHUP {
			log.Printf("in-VE reboot: starting again")
			if err := m.destroyContainer(id); err != nil {
				log.Printf("%v", err)
			}
			held = l
			continue
		}
		m.finish(id, runID, log)
		l.Unlock()
		if ws.Signaled() && ws.Signal() == unix.SIGINT {
			return EndShutdown, nil
		}
		return EndCrashed, fmt.Errorf("VE %s: init %s", id, reason)
	}
}

// execIdle replaces the monitor with the idle loop (package idle) until the init exits. The
// pty, the console socket, the log and connected clients are handed over as open file
// descriptors, named in the hand-over message. It returns only if the exec failed.
func (m *Manager) execIdle(id string, pid int, pty *os.File, lfd int, log *consoleLog, clients []int,
	self []string, runID string) error {
	h := idle.Handover{VEID: id, RunID: runID, InitPID: pid, PtyFD: int(pty.Fd()), ListenFD: lfd,
		LogFD: idle.LogFD(), LogPath: log.path, LogMax: consoleLogMax, ClientFDs: clients, ResumeArgv: self}
	for _, fd := range append([]int{h.PtyFD, h.ListenFD, h.LogFD}, clients...) {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return err
		}
	}
	msg, err := h.Hex()
	if err != nil {
		return err
	}
	// After the message, for ps (and nothing else): what the loop will run again.
	argv := append(append([]string{"vectl", idle.Arg, msg, "--"}, self...), id)
	return unix.Exec("/proc/self/exe", argv, os.Environ())
}

// relayUntilExit relays the VE's console in this process (package idle's relay, on a
// thread of its own) while waitInit waits for the init, and returns the init's status,
// whether it was stopped, and the console clients still connected.
func (m *Manager) relayUntilExit(id string, c *libcontainer.Container, p *libcontainer.Process, pty *os.File,
	lfd int, clients []int, term int, sigs <-chan os.Signal, log *consoleLog) (syscall.WaitStatus, bool, []int) {
	stopR, stopW, err := os.Pipe()
	if err != nil {
		log.Printf("console relay: %v", err)
		ws, stopped := m.waitInit(id, c, p, sigs, log)
		return ws, stopped, clients
	}
	r := &idle.Relay{Pty: int(pty.Fd()), Listen: lfd, Clients: clients, TermIn: term, TermOut: term, Stop: int(stopR.Fd())}
	done := make(chan struct{})
	go func() {
		r.Run()
		close(done)
	}()
	ws, stopped := m.waitInit(id, c, p, sigs, log)
	stopW.Close() // the relay drains the console and returns
	<-done
	stopR.Close()
	return ws, stopped, r.Clients
}

// ParseResume reads the message the idle loop hands back to the monitor (vectl __monitor
// --resume MSG) and returns the VE it is about and how to resume.
func ParseResume(msg string) (string, *Resume, error) {
	r, err := idle.ParseResume(msg)
	if err != nil {
		return "", nil, err
	}
	return r.VEID, &Resume{RunID: r.RunID, InitStatus: syscall.WaitStatus(r.InitStatus), ListenFD: r.ListenFD,
		ClientFDs: r.ClientFDs}, nil
}

// finish tears down the monitor's own run after the VE ended by itself.
func (m *Manager) finish(id, runID string, log *consoleLog) {
	if !m.ownsRun(id, runID) {
		return
	}
	if err := m.teardown(id, false); err != nil {
		log.Printf("%v", err)
	} else {
		log.Printf("VE %s stopped", id)
	}
}

// ownsRun reports whether the VE's current run is still the one this monitor started with
// and no live stop is taking care of it. A stop whose vectl died is abandoned: the monitor
// then finishes the teardown itself.
func (m *Manager) ownsRun(id, runID string) bool {
	cur, err := os.ReadFile(m.runFile(id, runIDFile))
	if err != nil || string(cur) != runID {
		return false
	}
	_, stopperAlive := readPidFile(m.runFile(id, stoppingFile))
	return !stopperAlive
}

func (m *Manager) report(o MonitorOptions, err error) error {
	if o.Lock != nil {
		o.Lock.Close()
	}
	if o.Booted != nil {
		o.Booted(err)
		o.Booted = nil
	}
	ready := o.Ready
	if ready == nil {
		return err
	}
	msg := "ok\n"
	if err != nil {
		msg = "error: " + oneLine(err.Error()) + "\n"
	}
	_, werr := ready.WriteString(msg)
	ready.Close()
	if err == nil && werr != nil {
		return fmt.Errorf("report: %w", werr)
	}
	return err
}

func oneLine(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte("; "))) }

func mustPid(p *libcontainer.Process) int {
	pid, _ := p.Pid()
	return pid
}

// The descriptors a starting vectl gives the monitor it spawns, defined once for both sides:
// the readiness pipe, the VE's lock, the go-ahead pipe.
const (
	monitorReadyFD = 3 + iota // ExtraFiles start at 3
	monitorLockFD
	monitorGoFD
)

// monitorStartFiles places the starting vectl's ends in the monitor's ExtraFiles.
func monitorStartFiles(ready, lock, goAhead *os.File) []*os.File {
	files := make([]*os.File, 3)
	files[monitorReadyFD-3], files[monitorLockFD-3], files[monitorGoFD-3] = ready, lock, goAhead
	return files
}

// MonitorStartFiles returns, in a freshly spawned monitor, what the starting vectl passed it:
// where to report readiness, the VE's lock, and where the go-ahead comes from.
func MonitorStartFiles() (ready, lock, goAhead *os.File) {
	return os.NewFile(monitorReadyFD, "ready"), os.NewFile(monitorLockFD, "lock"), os.NewFile(monitorGoFD, "go-ahead")
}

// AwaitGoAhead blocks a freshly spawned monitor until the starting vectl has prepared the VE
// and sends "go" on f. It returns nil when f reaches its end first: the start failed or was
// killed, and the monitor must leave everything as it is and exit. Otherwise it returns the
// gate of the first boot (MonitorOptions.Gate): the starting vectl attaches the VE's network
// while the monitor creates the container, and sends "run" once the init may be executed.
func AwaitGoAhead(f *os.File) func() bool {
	r := bufio.NewReader(f)
	if line, _ := r.ReadString('\n'); line != "go\n" {
		f.Close()
		return nil
	}
	return func() bool {
		defer f.Close()
		line, _ := r.ReadString('\n')
		return line == "run\n"
	}
}

// bootMonitored creates the VE's container and runs its init with a console pty whose master
// the monitor keeps. gate, when not nil, must say yes before the init is executed.
func (m *Manager) bootMonitored(id string, gate func() bool) (*libcontainer.Container, *libcontainer.Process, *os.File, error) {
	m.warmCgroupAttach()
	s, err := m.loadSpec(id)
	if err != nil {
		return nil, nil, nil, err
	}
	c, p, done, err := m.newContainer(id, s)
	if err != nil {
		return nil, nil, nil, err
	}
	defer done()
	parent, child, err := socketpair()
	if err != nil {
		return nil, nil, nil, err
	}
	defer parent.Close()
	p.ConsoleSocket = child
	p.ConsoleWidth, p.ConsoleHeight = 80, 25
	err = m.runInit(id, c, p, gate)
	child.Close()
	if err != nil {
		c.Destroy()
		return nil, nil, nil, fmt.Errorf("run init: %w", err)
	}
	pty, err := recvFile(parent)
	if err == nil {
		err = holdPeer(pty)
	}
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		c.Destroy()
		return nil, nil, nil, fmt.Errorf("console: %w", err)
	}
	return c, p, pty, nil
}

// waitInit waits for the VE's init to end. In the foreground it also handles signals:
// SIGTERM, SIGINT and SIGHUP stop the VE through Stop (stopped is then true), others are
// forwarded to the init.
func (m *Manager) waitInit(id string, c *libcontainer.Container, p *libcontainer.Process,
	sigs <-chan os.Signal, log *consoleLog) (syscall.WaitStatus, bool) {
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		ps, _ := p.Wait()
		var ws syscall.WaitStatus
		if ps != nil {
			ws, _ = ps.Sys().(syscall.WaitStatus)
		}
		done <- ws
	}()
	stopping := false
	stopDone := make(chan error, 1)
	for {
		select {
		case ws := <-done:
			if stopping {
				if err := <-stopDone; err != nil {
					log.Printf("stop: %v", err)
				}
				return ws, true
			}
			return ws, false
		case sig := <-sigs:
			switch sig {
			case unix.SIGTERM, unix.SIGINT, unix.SIGHUP:
				if !stopping {
					stopping = true
					notifyReady("STOPPING=1")
					log.Printf("%v: stopping the VE", sig)
					go func() { stopDone <- m.Stop(context.Background(), id, StopOptions{}) }()
				}
			default:
				p.Signal(sig)
			}
		}
	}
}

func describeExit(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled() && ws.Signal() == unix.SIGHUP:
		return "requested a reboot"
	case ws.Signaled() && ws.Signal() == unix.SIGINT:
		return "requested a poweroff or halt"
	case ws.Signaled():
		return "was killed by " + unix.SignalName(ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

// peers keeps the console slave of each pty master open while the master is in use (see
// holdPeer); closePty releases both.
var peers sync.Map // *os.File (master) -> *os.File (slave)

// holdPeer opens the slave side of a console pty and keeps it: a guest may close
// /dev/console between writes (systemd does), and a master whose slaves are all closed reads
// EIO, after which nothing would drain the console and the guest would block. TIOCGPTPEER
// works for the VE's own devpts instance, which the host cannot reach by path.
func holdPeer(master *os.File) error {
	fd, _, errno := unix.Syscall(unix.SYS_IOCTL, master.Fd(), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return fmt.Errorf("open the console's peer: %w", errno)
	}
	peers.Store(master, os.NewFile(fd, "console-peer"))
	return nil
}

// closePty closes a console pty master and the slave held for it.
func closePty(master *os.File) {
	if peer, ok := peers.LoadAndDelete(master); ok {
		peer.(*os.File).Close()
	}
	master.Close()
}

// socketpair returns a connected pair of unix stream sockets as files.
func socketpair() (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "console-parent"), os.NewFile(uintptr(fds[1]), "console-child"), nil
}

// recvFile receives one file descriptor sent with SCM_RIGHTS (libcontainer sends the console
// pty master this way).
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), name, oob, 0)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("no file descriptor received (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("no file descriptor received (%v)", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
