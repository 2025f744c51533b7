// Package monitor is a VE's supervisor: the process that is the parent of the VE's init. It
// owns the console (the pty, the log with its rotation, the console socket that vectl
// console connects to), the boot loop (an in-VE reboot is a new boot, a poweroff or halt a
// teardown), the hand-over to the C idle loop (package idle) between boots and the way back,
// and the start-up handshake with the vectl that spawned it (the descriptors it inherits, the
// go-ahead and the readiness report). A plain "vectl start" spawns none: a C constructor
// forks it before the Go runtime starts and the child becomes the monitor (startfork.c,
// Forked, Detach).
//
// It does not know how a VE is built, locked or torn down: package container implements VE
// for it. It must not import package container.
package monitor

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idle"
	"github.com/vectl/vectl/container/store"
	"github.com/vectl/vectl/container/wire"
)

// VE is the lifecycle side of one VE that the monitor drives.
type VE interface {
	ID() string
	// Create makes the VE's container and its init process, not yet running. release frees
	// the process's files once the init runs.
	Create() (c *libcontainer.Container, p *libcontainer.Process, release func(), err error)
	// RunInit runs the init p in c; gate, when not nil, must say yes before the init is
	// executed (Options.Gate).
	RunInit(c *libcontainer.Container, p *libcontainer.Process, gate func() bool) error
	// Lock takes the VE's lock, once the init has exited.
	Lock() (*store.Lock, error)
	// OwnsRun reports whether the VE's current run is still runID and no live stop is taking
	// care of it.
	OwnsRun(runID string) bool
	// Reset drops the container of an init that asked for a reboot.
	Reset() error
	// Teardown ends the run of a VE that ended by itself.
	Teardown() error
	// Stop stops the VE gracefully (a signal to a foreground vectl).
	Stop(ctx context.Context) error
}

// Settler is a VE with work to do after a boot was reported (Settle), before the monitor
// rests in the idle loop.
type Settler interface {
	Settle()
}

// Options control Run.
type Options struct {
	// LogPath is the VE's console log, SocketPath its console socket.
	LogPath, SocketPath string
	// RunID identifies the VE's run this monitor starts with (ignored with Resume).
	RunID string
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
	// Load is where the console relay keeps the VE's load average (idle.Load).
	Load idle.Load
	// Views are the VE's /proc and /sys views the relay keeps (idle.Relay.Views); "" for none.
	Views string
	// StopMark is the file a stop writes before it ends the init (idle.Handover.StopMark):
	// the idle loop leaves the teardown to a live stop instead of resuming this monitor.
	StopMark string
	// IdleExe, when set, returns the idle loop as a program of its own (idle.HelperPath),
	// which the monitor executes instead of this binary to rest; "" or an error: this
	// binary. It is asked only once the VE runs (after the first boot's report).
	IdleExe func() (string, error)
	// LayOut, when set, is called with the idle loop's program (IdleExe) before the monitor
	// executes it, or once the first boot runs when it relays in this process: it may start
	// that program's layout helper (idle.LayOut). Its error goes to the console log only.
	LayOut func(helper string) error
	// StopArgv, with Self and Signals and without a Terminal, has a foreground monitor rest
	// in the idle loop too, restDelay after Rest is closed (the first boot, once its
	// readiness was reported: READY=1 must come from this process while it runs Go) or after
	// a later boot: the loop runs StopArgv on a signal of StopSignals (the graceful stop that
	// Stop makes here), forwards ForwardedSignals to the init, and resumes Self, which must
	// then run this monitor again with the resume (a VE that lives less than restDelay, a run
	// to exit, stays here).
	StopArgv []string
	Rest     <-chan struct{}
}

// restDelay is how long a foreground monitor relays in Go after its boot before it rests in
// the idle loop.
const restDelay = time.Second

// restAfter returns the channel closed restDelay after ready is (nil ready: after the delay),
// which a foreground monitor's relay rests at.
func restAfter(ready <-chan struct{}) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		if ready != nil {
			<-ready
		}
		time.Sleep(restDelay)
		close(c)
	}()
	return c
}

// Resume is what the idle loop hands back to the Go monitor.
type Resume struct {
	RunID      string
	InitStatus syscall.WaitStatus
	ListenFD   int
	ClientFDs  []int
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

// Ending tells how a monitored VE ended.
type Ending int

// How a VE ended.
const (
	EndShutdown Ending = iota // poweroff, halt, or a stop request
	EndFailed                 // the VE could not be (re)started
	EndCrashed                // the init exited or was killed on its own
)

// Run is the monitor of ve: it boots the VE, holds the console pty (log, vectl console),
// turns an in-VE reboot into a restart and a poweroff or halt into a full teardown. A stop
// tears the VE down itself; the monitor then just exits. It is the hidden "__monitor"
// command, and start --foreground runs it in-process. In the background, the monitor waits
// for the init in the idle loop.
func Run(ctx context.Context, ve VE, o Options) (Ending, error) {
	id := ve.ID()
	log, err := OpenLog(o.LogPath)
	if err != nil {
		return EndFailed, o.Report(err)
	}
	defer log.Close()
	var lfd int // the console socket's listener
	var clients []int
	runID := o.RunID
	if r := o.Resume; r != nil {
		runID, lfd, clients = r.RunID, r.ListenFD, r.ClientFDs
		// The idle loop handed them over without close-on-exec; no child may inherit them.
		for _, fd := range append([]int{lfd}, clients...) {
			unix.CloseOnExec(fd)
		}
	} else {
		os.Remove(o.SocketPath)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.SocketPath, Net: "unix"})
		if err != nil {
			return EndFailed, o.Report(err)
		}
		os.Chmod(o.SocketPath, 0o600)
		lf, err := ln.File() // a duplicate, close-on-exec: the relay accepts on it
		ln.SetUnlinkOnClose(false)
		ln.Close()
		if err != nil {
			return EndFailed, o.Report(err)
		}
		lfd = int(lf.Fd())
		defer lf.Close()
	}
	idleMode := o.Self != nil && o.Terminal == nil && o.Signals == nil
	fgIdle := o.Self != nil && o.Terminal == nil && o.Signals != nil && len(o.StopArgv) > 0
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
			p, pty, err := bootConsole(ve, gate)
			held.Unlock()
			held = nil
			if boot == 1 {
				// The starting vectl may have been killed meanwhile; the VE runs regardless.
				o.Report(err)
			}
			if err != nil {
				log.Printf("boot failed: %v", err)
				finish(ve, runID, log)
				return EndFailed, err
			}
			pid, _ := p.Pid()
			log.Printf("VE %s booted (init pid %d)", id, pid)
			if s, ok := ve.(Settler); ok {
				s.Settle()
			}
			if idleMode {
				err := execIdle(id, pid, pty, lfd, log, clients, runID, o, false)
				// Only a failed exec returns; keep monitoring in this process.
				log.Printf("idle loop: %v", err)
				idleMode = false
			} else if boot == 1 && o.IdleExe != nil {
				// A foreground monitor (a unit's, a run to exit) keeps what it maps of this
				// binary as it is while it lives in Go; the helper lays out the rest.
				if path, err := o.IdleExe(); err == nil && path != "" {
					layOut(o, path, log)
					idle.UseCloserProgram(path)
				}
			}
			var rest <-chan struct{}
			if fgIdle && boot == 1 {
				rest = restAfter(o.Rest)
			} else if fgIdle {
				rest = restAfter(nil)
			}
			var stopped, handover bool
			for {
				ws, stopped, clients, handover = relayUntilExit(ve, p, pty, lfd, clients, term, o.Signals, rest, log, o.Load, o.Views)
				if !handover {
					break
				}
				err := execIdle(id, pid, pty, lfd, log, clients, runID, o, true)
				log.Printf("idle loop: %v", err) // only a failed exec returns
				rest, fgIdle = nil, false
			}
			closePty(pty) // a reboot brings a new console
			if stopped {
				return EndShutdown, nil
			}
		}
		reason := describeExit(ws)
		log.Printf("init %s", reason)

		l, err := ve.Lock()
		if err != nil {
			return EndFailed, err
		}
		if !ve.OwnsRun(runID) {
			l.Unlock() // a stop or a new start has taken over
			return EndShutdown, nil
		}
		if ws.Signaled() && ws.Signal() == unix.SIGHUP {
			log.Printf("in-VE reboot: starting again")
			if err := ve.Reset(); err != nil {
				log.Printf("%v", err)
			}
			held = l
			continue
		}
		finish(ve, runID, log)
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
//
// A foreground monitor's (fg: Options.StopArgv) hands its signals over too (holdSignals) and
// no stop marker: it resumes after every end of the init.
func execIdle(id string, pid int, pty *os.File, lfd int, log *Log, clients []int, runID string, o Options, fg bool) error {
	h := idle.Handover{VEID: id, RunID: runID, InitPID: pid, PtyFD: int(pty.Fd()), ListenFD: lfd,
		LogFD: idle.LogFD(), LogPath: log.path, LogMax: LogMax, ClientFDs: clients, ResumeArgv: o.Self,
		Load: o.Load, Views: o.Views, StopMark: o.StopMark}
	var path string
	if o.IdleExe != nil {
		var err error
		if path, err = o.IdleExe(); err != nil {
			log.Printf("idle loop: %v; it runs in vectl's binary", err)
		}
		layOut(o, path, log) // before the hand-over's descriptors are made inheritable below
	}
	if fg {
		h.StopMark, h.StopArgv = "", o.StopArgv
		h.StopSignals, h.ForwardSignals = signalInts(StopSignals), signalInts(ForwardedSignals)
		release, err := holdSignals(o.Signals)
		if err != nil {
			return err
		}
		defer release() // the exec failed
	}
	for _, fd := range append([]int{h.PtyFD, h.ListenFD, h.LogFD}, clients...) {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return err
		}
	}
	run := func(exe string) error {
		msg, err := h.Hex()
		if err != nil {
			return err
		}
		// After the message, for ps (and nothing else): what the loop will run again.
		argv := append(append([]string{"vectl", idle.Arg, msg, "--"}, o.Self...), id)
		return unix.Exec(exe, argv, os.Environ())
	}
	// The loop as a program of its own resumes this monitor through an O_PATH descriptor
	// of this binary (not close-on-exec here; the loop makes it so).
	if path != "" {
		if fd, err := unix.Open("/proc/self/exe", unix.O_PATH, 0); err == nil {
			h.ExeFD = fd
			err := run(path)
			log.Printf("idle loop: %s: %v; it runs in vectl's binary", path, err)
			unix.Close(fd)
			h.ExeFD = 0
		}
	}
	return run("/proc/self/exe")
}

// layOut asks o.LayOut to lay out this binary's programs with the idle loop's program at
// path (none: nothing to ask); its error goes to the console log.
func layOut(o Options, path string, log *Log) {
	if path == "" || o.LayOut == nil {
		return
	}
	if err := o.LayOut(path); err != nil {
		log.Printf("page cache layout: %v", err)
	}
}

// relayUntilExit relays the VE's console in this process (package idle's relay, on a
// thread of its own) while waitInit waits for the init, and returns the init's status,
// whether it was stopped, and the console clients still connected.
//
// When rest is closed first (and no stop is under way), it returns with the init still
// running and handover set, the relay ended: the caller rests in the idle loop.
func relayUntilExit(ve VE, p *libcontainer.Process, pty *os.File, lfd int, clients []int, term int,
	sigs <-chan os.Signal, rest <-chan struct{}, log *Log, load idle.Load, views string) (ws syscall.WaitStatus, stopped bool, left []int, handover bool) {
	stopR, stopW, err := os.Pipe()
	if err != nil {
		log.Printf("console relay: %v", err)
		ws, stopped, _ := waitInit(ve, p, sigs, nil, log)
		return ws, stopped, clients, false
	}
	r := &idle.Relay{Pty: int(pty.Fd()), Listen: lfd, Clients: clients, TermIn: term, TermOut: term, Stop: int(stopR.Fd()), Load: load, Views: views}
	done := make(chan struct{})
	go func() {
		r.Run()
		close(done)
	}()
	ws, stopped, handover = waitInit(ve, p, sigs, rest, log)
	stopW.Close() // the relay drains the console and returns
	<-done
	stopR.Close()
	return ws, stopped, r.Clients, handover
}

// finish tears down the monitor's own run after the VE ended by itself.
func finish(ve VE, runID string, log *Log) {
	if !ve.OwnsRun(runID) {
		return
	}
	if err := ve.Teardown(); err != nil {
		log.Printf("%v", err)
	} else {
		log.Printf("VE %s stopped", ve.ID())
	}
}

// Report tells whoever started the monitor how its first boot went: it releases the
// inherited lock, calls Booted, and writes "ok" or "error: ..." to Ready. It returns err.
func (o Options) Report(err error) error {
	if o.Lock != nil {
		o.Lock.Close()
	}
	if o.Booted != nil {
		o.Booted(err)
	}
	ready := o.Ready
	if ready == nil {
		return err
	}
	msg := readyOK
	if err != nil {
		msg = readyError + oneLine(err.Error()) + "\n"
	}
	_, werr := ready.WriteString(msg)
	ready.Close()
	if err == nil && werr != nil {
		return fmt.Errorf("report: %w", werr)
	}
	return err
}

func oneLine(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte("\n"), []byte("; "))) }

// bootConsole creates the VE's container and runs its init with a console pty whose master
// the monitor keeps. gate, when not nil, must say yes before the init is executed.
func bootConsole(ve VE, gate func() bool) (*libcontainer.Process, *os.File, error) {
	c, p, release, err := ve.Create()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	parent, child, err := wire.SocketPair()
	if err != nil {
		c.Destroy()
		return nil, nil, err
	}
	defer parent.Close()
	p.ConsoleSocket = child
	p.ConsoleWidth, p.ConsoleHeight = 80, 25
	err = ve.RunInit(c, p, gate)
	child.Close()
	if err != nil {
		c.Destroy()
		return nil, nil, fmt.Errorf("run init: %w", err)
	}
	pty, err := wire.RecvFile(parent)
	if err == nil {
		err = holdPeer(pty)
	}
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		c.Destroy()
		return nil, nil, fmt.Errorf("console: %w", err)
	}
	return p, pty, nil
}

// waitInit waits for the VE's init to end. In the foreground it also handles signals:
// SIGTERM, SIGINT and SIGHUP stop the VE through Stop (stopped is then true), others are
// forwarded to the init.
//
// With rest (a foreground monitor), it watches the init through a pidfd and reaps it only
// once it has exited, so that when rest is closed first, with no stop under way, it can
// return with the init unreaped for the idle loop (handover).
func waitInit(ve VE, p *libcontainer.Process, sigs <-chan os.Signal, rest <-chan struct{}, log *Log) (ws syscall.WaitStatus, stopped, handover bool) {
	done := make(chan syscall.WaitStatus, 1)
	reap := func() {
		ps, _ := p.Wait()
		var ws syscall.WaitStatus
		if ps != nil {
			ws, _ = ps.Sys().(syscall.WaitStatus)
		}
		done <- ws
	}
	var exited chan struct{}
	if pid, err := p.Pid(); rest == nil || err != nil {
		go reap()
	} else {
		exited = make(chan struct{})
		go func() {
			awaitExit(pid)
			close(exited)
		}()
	}
	stopping := false
	stopDone := make(chan error, 1)
	for {
		select {
		case <-exited:
			exited = nil
			go reap()
		case <-rest:
			if !stopping && exited != nil {
				return 0, false, true
			}
			rest = nil
		case ws := <-done:
			if stopping {
				if err := <-stopDone; err != nil {
					log.Printf("stop: %v", err)
				}
				return ws, true, false
			}
			return ws, false, false
		case sig := <-sigs:
			switch sig {
			case unix.SIGTERM, unix.SIGINT, unix.SIGHUP:
				if !stopping {
					stopping = true
					Notify("STOPPING=1")
					log.Printf("%v: stopping the VE", sig)
					go func() { stopDone <- ve.Stop(context.Background()) }()
				}
			default:
				p.Signal(sig)
			}
		}
	}
}

// awaitExit returns once process pid (a child, not reaped) has exited, or cannot be watched.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if err != unix.EINTR {
			return
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
