package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/join"
	"github.com/vectl/vectl/resources"
)

// ErrFrozen means a command needs the VE's processes to run, but they are frozen.
var ErrFrozen = errors.New("VE is frozen: thaw it first (vectl thaw)")

// ExecOptions describe a command to run in a VE.
type ExecOptions struct {
	Args []string
	Env  []string // added to the VE's environment
	TTY  bool     // give the command a pty on this terminal (Stdin must be a terminal)
	// Stdio of the command; with TTY, Stdin and Stdout are the user's terminal.
	Stdin, Stdout, Stderr *os.File
}

// loadRunning loads the libcontainer container of a running, not suspended VE.
func (m *Manager) loadRunning(id string) (*libcontainer.Container, error) {
	c, err := libcontainer.Load(m.lcRoot(), id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, ErrNotRunning)
	}
	st, err := c.Status()
	switch {
	case err != nil:
		return nil, err
	case st == libcontainer.Paused:
		return nil, fmt.Errorf("%s: %w", id, ErrFrozen)
	case st == libcontainer.Created:
		return nil, fmt.Errorf("%s: %w: it is starting (its init has not run yet)", id, ErrNotRunning)
	case st != libcontainer.Running:
		return nil, fmt.Errorf("%s: %w", id, ErrNotRunning)
	}
	return c, nil
}

// Exec runs a command inside a running VE with the VE's environment and capabilities,
// forwards signals to it, and returns its exit status (128+N when killed by signal N).
func (m *Manager) Exec(ctx context.Context, ref string, o ExecOptions) (int, error) {
	m.warmCgroupAttach()
	id, err := m.resolve(ref)
	if err != nil {
		return 0, err
	}
	c, err := m.loadRunning(id)
	if err != nil {
		return 0, err
	}
	env := append(append([]string(nil), veEnv...), o.Env...)
	if o.TTY {
		term := os.Getenv("TERM")
		if term == "" {
			term = "xterm"
		}
		env = append(env, "TERM="+term)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwardedSignals()...)
	start := m.execStarter(c, o.Args, env)
	if o.TTY {
		return runTTY(start, o, sigs)
	}
	p, _, err := start([3]*os.File{o.Stdin, o.Stdout, o.Stderr}, nil)
	if err != nil {
		return 0, fmt.Errorf("exec %s: %w", id, m.explainExecFailure(id, err))
	}
	return waitForwarding(p, sigs, nil), nil
}

// execStarter returns how to start args in the running VE c (package join): the function
// takes the command's stdio (unused with a pty) and the size of a pty from the VE (nil: no
// pty), and returns the process and the pty master.
func (m *Manager) execStarter(c *libcontainer.Container, args, env []string) func([3]*os.File, *join.PtySize) (join.Proc, *os.File, error) {
	return func(stdio [3]*os.File, tty *join.PtySize) (join.Proc, *os.File, error) {
		p, master, err := m.joiner.Start(c, args, env, stdio, tty)
		if errors.Is(err, join.ErrGone) {
			err = fmt.Errorf("%s: %w", c.ID(), ErrNotRunning)
		}
		return p, master, err
	}
}

// explainExecFailure adds the likely cause when a VE is at its numproc limit: exec needs two
// process slots inside the VE's pids limit (the joiner and the command; libcontainer's exec
// helper, where it is used, a few threads more).
func (m *Manager) explainExecFailure(id string, err error) error {
	u, rerr := resources.ReadUsage(m.cgroupPath(id))
	if rerr == nil && u.TasksLimit != resources.Unlimited && u.Tasks >= u.TasksLimit-2 {
		return fmt.Errorf("%w (the VE is at its numproc limit %d: exec needs a few free process slots; raise it with vectl set --numproc)",
			err, u.TasksLimit)
	}
	return err
}

// forwardedSignals are the signals exec passes on to the command (SIGWINCH resizes its pty
// instead): every standard signal a process can catch but SIGCHLD, SIGURG (the Go runtime's
// own), SIGPIPE and SIGPROF, which the runtime keeps. Not the realtime ones, and exec does
// not stop the forwarding when the command ends (vectl exits then): os/signal enables and
// disables each signal with a round trip to a thread of its own, two context switches, and
// all 65 signals, both ways, cost more CPU than the rest of an exec's Go side (2.1 ms of 9.6
// here, perf stat).
func forwardedSignals() []os.Signal {
	var l []os.Signal
	for s := unix.Signal(1); s < 32; s++ {
		switch s {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE, unix.SIGPROF:
		default:
			l = append(l, s)
		}
	}
	return l
}

// waitForwarding waits for p, forwarding the signals vectl receives; onWinch resizes a pty.
func waitForwarding(p join.Proc, sigs chan os.Signal, onWinch func()) int {
	done := make(chan int, 1)
	go func() {
		ps, err := p.Wait()
		done <- exitCode(ps, err)
	}()
	for {
		select {
		case code := <-done:
			return code
		case sig := <-sigs:
			switch sig {
			case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE:
			case unix.SIGWINCH:
				if onWinch != nil {
					onWinch()
				}
			default:
				p.Signal(sig)
			}
		}
	}
}

// exitCode turns a wait result into a shell-style exit status.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 255
	}
	// os.ProcessState.Sys is syscall.WaitStatus (asserting unix.WaitStatus would fail and
	// report signal deaths as 255).
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// runTTY starts the command on a new pty in the VE and relays it to the user's terminal in
// raw mode, following window size changes.
func runTTY(start func([3]*os.File, *join.PtySize) (join.Proc, *os.File, error), o ExecOptions, sigs chan os.Signal) (int, error) {
	cur, err := console.ConsoleFromFile(o.Stdin)
	if err != nil {
		return 0, fmt.Errorf("a terminal is needed on stdin: %w", err)
	}
	size, _ := cur.Size()
	p, master, err := start([3]*os.File{}, &join.PtySize{Cols: size.Width, Rows: size.Height})
	if err != nil {
		return 0, fmt.Errorf("exec: %w", err)
	}
	defer master.Close()
	mc, err := console.ConsoleFromFile(master)
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return 0, err
	}
	if err := cur.SetRaw(); err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return 0, err
	}
	defer cur.Reset()
	resize := func() {
		if s, err := cur.Size(); err == nil {
			mc.Resize(s)
		}
	}
	resize()
	go io.Copy(master, o.Stdin)
	out := make(chan struct{})
	go func() {
		io.Copy(o.Stdout, master)
		close(out)
	}()
	code := waitForwarding(p, sigs, resize)
	<-out // the pty reports EOF/EIO once the command and its children closed it
	return code, nil
}

// ExecOutput runs a command in a VE without a terminal and returns its standard output and
// exit status. The command is killed when ctx ends.
func (m *Manager) ExecOutput(ctx context.Context, id string, args ...string) (string, int, error) {
	c, err := m.loadRunning(id)
	if err != nil {
		return "", 0, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return "", 0, err
	}
	defer devnull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	p, _, err := m.execStarter(c, args, veEnv)([3]*os.File{devnull, w, devnull}, nil)
	w.Close()
	if err != nil {
		return "", 0, err
	}
	stop := context.AfterFunc(ctx, func() { p.Signal(unix.SIGKILL) })
	defer stop()
	var out bytes.Buffer
	io.Copy(&out, r)
	ps, werr := p.Wait()
	code := exitCode(ps, werr)
	if ctx.Err() != nil {
		return out.String(), code, ctx.Err()
	}
	if code != 0 {
		return out.String(), code, fmt.Errorf("%v: exit status %d", args, code)
	}
	return out.String(), 0, nil
}

// initPid returns the host pid of a running VE's init.
func (m *Manager) initPid(id string) (int, error) {
	c, err := libcontainer.Load(m.lcRoot(), id)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", id, ErrNotRunning)
	}
	st, err := c.State()
	if err != nil {
		return 0, err
	}
	return st.InitProcessPid, nil
}

// Enter opens an interactive root login shell in a running VE on the user's terminal, like
// vzctl enter: bash if the VE has it, else sh.
func (m *Manager) Enter(ctx context.Context, ref string, o ExecOptions) (int, error) {
	id, err := m.resolve(ref)
	if err != nil {
		return 0, err
	}
	pid, err := m.initPid(id)
	if err != nil {
		return 0, err
	}
	shell := "/bin/sh"
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/root/bin/bash", pid)); err == nil {
		shell = "/bin/bash"
	}
	if len(o.Args) > 0 {
		// vzctl enter --exec: the command runs in the login shell's terminal first, and the
		// shell stays for the user afterwards.
		cmd := strings.Join(o.Args, " ")
		o.Args = []string{shell, "-c", cmd + "\nexec " + shell + " -l", shell}
	} else {
		o.Args = []string{shell, "-l"}
	}
	o.TTY = true
	return m.Exec(ctx, id, o)
}
