package join

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// ExportArg is the argv[1] of the throwaway process that compiles a seccomp profile.
const ExportArg = "__seccomp-export"

// The seccomp program of a VE's processes is compiled by libcontainer (libseccomp plus runc's
// ENOSYS patch) from the VE's profile: 12 ms of CPU here, which libcontainer's exec helper
// spends again on every exec. vectl compiles each profile once per host boot instead, in a
// throwaway process that loads it with libcontainer's own code and is then read back with
// PTRACE_SECCOMP_GET_FILTER, so the cached program is exactly the one the VE's init got.
// The cache lives under the run directory (a tmpfs: gone with the kernel that checked it),
// keyed by the profile, the libseccomp version and the runc module version.

// program returns the path of the compiled program of profile sc, compiling it on
// first use.
func (j *Joiner) program(sc *configs.Seccomp) (string, error) {
	profile, err := json.Marshal(sc)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	a, b, c := seccomp.Version()
	fmt.Fprintf(h, "libseccomp %d.%d.%d\nrunc %s\n", a, b, c, runcVersion())
	h.Write(profile)
	path := filepath.Join(j.CacheDir, hex.EncodeToString(h.Sum(nil))[:32]+".bpf")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	prog, err := compileSeccomp(profile)
	if err != nil {
		return "", fmt.Errorf("compile the VE's seccomp profile: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(prog)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

// seccompFlags are the seccomp(2) flags libcontainer loads profile sc with (its
// patchbpf.filterFlags): the profile's flags that the kernel and libseccomp support.
func seccompFlags(sc *configs.Seccomp) uint {
	api, _ := libseccomp.GetAPI()
	var flags uint
	for _, f := range sc.Flags {
		switch {
		case f == specs.LinuxSeccompFlagLog && api >= 3:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case f == specs.LinuxSeccompFlagSpecAllow && api >= 4:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case f == specs.LinuxSeccompFlagWaitKillableRecv && api >= 7:
			flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		}
	}
	return flags
}

func runcVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/opencontainers/runc" {
				return d.Version
			}
		}
	}
	return "unknown"
}

// compileSeccomp runs "vectl __seccomp-export" with the profile on its stdin; it loads the
// profile into one of its threads with libcontainer's seccomp.InitSeccomp and prints that
// thread's id. The program is then read from the thread as its tracer.
func compileSeccomp(profile []byte) ([]byte, error) {
	cmd := exec.Command("/proc/self/exe", ExportArg)
	cmd.Stderr = nil
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	if _, err := in.Write(append(profile, '\n')); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Wait()
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	tid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return nil, fmt.Errorf("bad thread id %q", line)
	}
	return readSeccompFilter(tid)
}

// readSeccompFilter returns the most recent seccomp program of thread tid (a thread of a
// child of ours), attaching to it for the time of the read.
func readSeccompFilter(tid int) ([]byte, error) {
	runtime.LockOSThread() // ptrace requests must come from the tracer thread
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(tid); err != nil {
		return nil, fmt.Errorf("ptrace: %w", err)
	}
	defer unix.PtraceDetach(tid)
	if err := unix.PtraceInterrupt(tid); err != nil {
		return nil, fmt.Errorf("ptrace interrupt: %w", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		return nil, err
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(tid), 0, 0, 0, 0)
	if errno != 0 {
		return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER: %w", errno)
	}
	if n == 0 || n > 1<<16 {
		return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER: %d instructions", n)
	}
	prog := make([]unix.SockFilter, n)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(tid), 0,
		uintptr(unsafe.Pointer(&prog[0])), 0, 0); errno != 0 {
		return nil, fmt.Errorf("PTRACE_SECCOMP_GET_FILTER: %w", errno)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0]))), nil
}

// ExportMain is the throwaway process of compileSeccomp. It never returns.
func ExportMain() {
	runtime.LockOSThread() // the filter goes on this thread only (no TSYNC)
	var sc configs.Seccomp
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &sc)
	}
	if err == nil && sc.ListenerPath != "" {
		err = errors.New("profiles with a notify listener are not cached")
	}
	for _, call := range sc.Syscalls {
		if err == nil && call != nil && call.Action == configs.Notify {
			err = errors.New("profiles with notify actions are not cached")
		}
	}
	if err == nil {
		_, err = seccomp.InitSeccomp(&sc)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", unix.Gettid())
	io.Copy(io.Discard, in) // until vectl has read the program and kills this process
	os.Exit(0)
}
