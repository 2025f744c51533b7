package monitor

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// The start-up handshake between a starting vectl and the monitor it spawns, defined once
// for both sides. The monitor inherits three descriptors: the readiness pipe it reports on
// ("ok" or "error: ..."), the VE's lock, and the go-ahead pipe ("go", then "run").
const (
	readyFD = 3 + iota // ExtraFiles start at 3
	lockFD
	goFD
)

const (
	goAhead    = "go\n"
	runAhead   = "run\n"
	readyOK    = "ok\n"
	readyError = "error: "
)

// Spawned is a VE's monitor that has been started but waits for the go-ahead.
type Spawned struct {
	cmd     *exec.Cmd
	ready   *os.File      // the monitor writes "ok" or "error: ..." here once the init runs
	goAhead *os.File      // "go" lets it boot the VE; closed unwritten, the monitor just exits
	exited  chan struct{} // closed when the monitor has exited and been reaped
	log     string
}

// Spawn starts a VE's monitor (argv, with the VE's id appended) in its own session, with
// its output in the console log logPath. It comes up and waits, touching nothing, until Boot
// gives the go-ahead. The monitor inherits lock, the VE's lock, and keeps it until its first
// boot is done, so that the VE stays locked even if this vectl is killed meanwhile.
func Spawn(argv []string, id string, lock *os.File, logPath string) (*Spawned, error) {
	if len(argv) == 0 {
		return nil, errors.New("no monitor command")
	}
	log, err := AppendLog(logPath)
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
	cmd := exec.Command(argv[0], append(argv[1:], id)...)
	cmd.Args[0] = "vectl"
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = log, log // a crashing monitor's last words land in the log
	cmd.ExtraFiles = make([]*os.File, 3)
	cmd.ExtraFiles[readyFD-3], cmd.ExtraFiles[lockFD-3], cmd.ExtraFiles[goFD-3] = w, lock, gr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		gw.Close()
		return nil, fmt.Errorf("monitor: %w", err)
	}
	s := &Spawned{cmd: cmd, ready: r, goAhead: gw, exited: make(chan struct{}), log: logPath}
	go func() { // reaps the monitor if it dies while we still run
		cmd.Wait()
		close(s.exited)
	}()
	return s, nil
}

// Boot lets the monitor create the VE's container, runs attach (the VE's network)
// meanwhile, lets the monitor execute the init, and waits until it reports that the init
// runs, or why it does not. When attach fails the monitor cancels its boot, and Boot
// returns once it has exited.
func (s *Spawned) Boot(attach func() error) error {
	defer s.ready.Close()
	if _, err := s.goAhead.WriteString(goAhead); err != nil {
		s.goAhead.Close()
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	if err := attach(); err != nil {
		s.Cancel()
		return err
	}
	_, err := s.goAhead.WriteString(runAhead)
	s.goAhead.Close()
	if err != nil {
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	line, err := bufio.NewReader(s.ready).ReadString('\n')
	switch {
	case line == readyOK:
		return nil
	case strings.HasPrefix(line, readyError):
		return errors.New(strings.TrimSpace(strings.TrimPrefix(line, readyError)))
	case errors.Is(err, io.EOF):
		return fmt.Errorf("the monitor exited before the VE started (see %s)", s.log)
	}
	return fmt.Errorf("monitor: %q %v", strings.TrimSpace(line), err)
}

// Cancel sends the monitor away without a boot and waits until it has exited, so that a
// teardown that follows does not race with it.
func (s *Spawned) Cancel() {
	s.goAhead.Close()
	s.ready.Close()
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// StartFiles returns, in a freshly spawned monitor, what the starting vectl passed it:
// where to report readiness, the VE's lock, and where the go-ahead comes from.
func StartFiles() (ready, lock, goAhead *os.File) {
	return os.NewFile(readyFD, "ready"), os.NewFile(lockFD, "lock"), os.NewFile(goFD, "go-ahead")
}

// AwaitGoAhead blocks a freshly spawned monitor until the starting vectl has prepared the VE
// and sends "go" on f. It returns nil when f reaches its end first: the start failed or was
// killed, and the monitor must leave everything as it is and exit. Otherwise it returns the
// gate of the first boot (Options.Gate): the starting vectl attaches the VE's network
// while the monitor creates the container, and sends "run" once the init may be executed.
func AwaitGoAhead(f *os.File) func() bool {
	r := bufio.NewReader(f)
	if line, _ := r.ReadString('\n'); line != goAhead {
		f.Close()
		return nil
	}
	return func() bool {
		defer f.Close()
		line, _ := r.ReadString('\n')
		return line == runAhead
	}
}

// Notify sends state to systemd (Type=notify) when NOTIFY_SOCKET is set.
func Notify(state string) error {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return nil
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
