package monitor

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/idle"
)

// LogMax caps a VE's console log; when it is reached the log is rotated once to
// <id>.console.1.
const LogMax = 1 << 20

// Log is this process's handle on a VE's console log. Package idle writes it (one writer:
// the console relay's output and the monitor's own lines agree on its size, its rotation and
// carriage returns).
type Log struct{ path string }

// OpenLog opens a VE's console log as this process's one log.
func OpenLog(path string) (*Log, error) {
	fd, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	idle.LogOpen(fd, path, LogMax)
	return &Log{path: path}, nil
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

// AppendLog opens a console log as a file for a child's output (a monitor's last words, a
// VE without a monitor).
func AppendLog(path string) (*os.File, error) {
	fd, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func (l *Log) Write(p []byte) (int, error) {
	idle.LogWrite(p)
	return len(p), nil
}

// Printf writes one vectl message line into the log.
func (l *Log) Printf(format string, args ...any) {
	fmt.Fprintf(l, "vectl: "+format+"\n", args...)
}

// Close closes the log.
func (l *Log) Close() error {
	idle.LogClose()
	return nil
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
