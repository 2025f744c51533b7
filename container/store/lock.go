package store

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked means another vectl invocation holds a lock that was needed.
var ErrLocked = errors.New("locked by another vectl invocation")

// LockedError tells which lock could not be taken in time and who holds it.
type LockedError struct {
	Path   string // the lock file
	Holder int    // pid of the holder as it recorded itself, 0 if unknown
}

func (e *LockedError) Error() string {
	if e.Holder > 0 {
		return fmt.Sprintf("%s is held by vectl pid %d", e.Path, e.Holder)
	}
	return e.Path + " is held by another vectl invocation"
}

// Unwrap makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is an exclusive flock(2) on a file. The kernel drops it when the holder exits, so a
// killed invocation never leaves a stale lock behind.
type Lock struct {
	f *os.File
}

// Acquire takes the exclusive lock on path, creating the file if needed. It retries until
// timeout has passed and then returns a *LockedError. A timeout of 0 tries once.
func Acquire(path string, timeout time.Duration) (*Lock, error) {
	deadline := time.Now().Add(timeout)
	delay := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open lock: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil && samePath(f, path):
			return takeover(f), nil
		case err == nil:
			// The file was unlinked (a destroy removed it) between our open and our flock:
			// the lock we hold is on an orphan inode. Start over on the current file.
		case !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR):
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			holder := readHolder(f)
			f.Close()
			return nil, &LockedError{Path: path, Holder: holder}
		}
		f.Close()
		time.Sleep(min(delay, left))
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// samePath reports whether the open lock file is still the one path names.
func samePath(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func takeover(f *os.File) *Lock {
	// Record the holder for the error message of whoever waits next; best effort. The
	// record has a fixed width (pids have at most 7 digits) so that it overwrites the
	// previous holder's without a truncate, which costs a metadata update on every lock.
	_, _ = f.WriteAt([]byte(fmt.Sprintf("%-10d\n", os.Getpid())), 0)
	return &Lock{f: f}
}

func readHolder(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// Remove unlinks the lock file while the lock is still held, for a VE that is being destroyed.
// Waiters notice the unlink and retry on a fresh file.
func (l *Lock) Remove() error {
	if l == nil || l.f == nil {
		return nil
	}
	if err := os.Remove(l.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// File is the open lock file. The lock belongs to its open file description, so a child
// process that inherits it keeps the lock held even after this process exits; the lock is
// released when the last holder closes it.
func (l *Lock) File() *os.File { return l.f }

// Unlock releases the lock. It is safe to call on a nil Lock and more than once.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	// Closing the last descriptor releases the flock.
	err := l.f.Close()
	l.f = nil
	return err
}
