// Package network gives VEs their network: the pinned network namespace of a running VE, CNI
// attachments and live addresses. It is the only vectl package that imports libcni and
// netlink; it takes plain values and imports no other vectl package.
package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PinNetns creates a new network namespace with its loopback up and keeps it alive by
// bind-mounting it on path (like ip netns add), so that the VE can join it and CNI can attach
// to it before the VE's init exists, and detach from it after the init is gone.
func PinNetns(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("pin netns: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		errc <- onThread(func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
			if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind %s: %w", path, err)
			}
			return setUpNetns()
		})
	}()
	if err := <-errc; err != nil {
		return errors.Join(fmt.Errorf("pin netns %s: %w", path, err), UnpinNetns(path))
	}
	return nil
}

// SetUpNetns prepares a network namespace pinned on path by someone else (a user-namespace
// VE's, which its user namespace owns) as PinNetns prepares its own.
func SetUpNetns(path string) error {
	if err := doInNetns(path, setUpNetns); err != nil {
		return fmt.Errorf("set up netns %s: %w", path, err)
	}
	return nil
}

// doInNetns runs f on a thread that has entered the network namespace pinned at path (for
// what netlink handles cannot do: the sysctls under /proc/sys/net are the calling thread's
// namespace's).
func doInNetns(path string, f func() error) error {
	ns, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ns)
	errc := make(chan error, 1)
	go func() {
		errc <- onThread(func() error {
			if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
				return err
			}
			return f()
		})
	}()
	return <-errc
}

// onThread runs f, which may move the calling thread into another network namespace, with
// the calling goroutine locked to its thread, and puts the thread back into the namespace it
// was in afterwards, so that the Go runtime can use it again. Only when that fails does the
// thread stay locked, and the runtime discards it with the calling goroutine, which must end
// after onThread returns (as every such thread was discarded before 2026-12-08). A thread
// discarded and made again costs about 0.1 ms of CPU (2026-12-08); a VE's start moves one
// into its network namespace.
func onThread(f func() error) error {
	runtime.LockOSThread()
	back, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(back)
	err = f()
	if unix.Setns(back, unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// setUpNetns readies the calling thread's network namespace for a VE: loopback up, no IPv6
// duplicate address detection (it would hold every VE address, and CNI ADD, for ~1.8 s; VE
// addresses are unique by construction).
func setUpNetns() error {
	for _, f := range []string{"all", "default"} {
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+f+"/accept_dad", []byte("0"), 0)
	}
	// A new namespace's loopback is always interface 1 (LOOPBACK_IFINDEX): set it up by
	// index, without a netlink round trip to look it up by name first.
	err := netlink.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 1, Name: "lo"}})
	if err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// UnpinNetns releases a pinned network namespace. A missing pin is not an error.
func UnpinNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin netns: %w", err)
	}
	return nil
}
