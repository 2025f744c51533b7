//go:build integration

package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestExecLikeInit checks that the VE's init (started through vectl's init wrapper) and a
// command started by vectl exec (vectl's own namespace joiner, not libcontainer's exec helper)
// are confined alike: the init without CAP_SYS_ADMIN, and the command with the same namespaces,
// cgroups, capability sets, no_new_privs and a seccomp program that decides every system
// call like the init's; and that no descriptor of vectl's reaches it.
// Both for a privileged VE and for one with its own user namespace (whose init keeps every
// capability of its namespace, CAP_SYS_ADMIN and mount(2) included).
func TestExecLikeInit(t *testing.T) {
	for _, userns := range []string{"no", "yes"} {
		t.Run("userns="+userns, func(t *testing.T) { execLikeInit(t, userns == "yes") })
	}
}

func execLikeInit(t *testing.T, userns bool) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--hostname", "h"+id, "--userns", map[bool]string{true: "yes", false: "no"}[userns])
	e.must("start", id, "--wait", "--timeout", "60")

	status := func(path string) map[string]string {
		m := map[string]string{}
		for _, line := range strings.Split(e.out(id, "cat", path), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (strings.HasPrefix(k, "Cap") || strings.HasPrefix(k, "Seccomp") || k == "NoNewPrivs") {
				m[k] = strings.TrimSpace(v)
			}
		}
		return m
	}
	self, init := status("/proc/self/status"), status("/proc/1/status")
	if len(init) < 8 || init["Seccomp"] != "2" || init["Seccomp_filters"] != "1" {
		t.Fatalf("VE init's status fields: %v", init)
	}
	// The init wrapper loaded the program and gave up CAP_SYS_ADMIN before executing the init.
	if bnd, err := strconv.ParseUint(init["CapBnd"], 16, 64); err != nil || !userns && bnd&(1<<unix.CAP_SYS_ADMIN) != 0 {
		t.Errorf("VE init's bounding set %s has CAP_SYS_ADMIN", init["CapBnd"])
	}
	if exe, init := e.out(id, "readlink", "/proc/1/exe"), e.out(id, "readlink", "-f", "/sbin/init"); exe != init {
		t.Errorf("VE's PID 1 runs %q, not its init %q", exe, init)
	}
	for k, v := range init {
		if self[k] != v {
			t.Errorf("exec'd process: %s = %q, VE init: %q", k, self[k], v)
		}
	}
	for _, ns := range []string{"mnt", "pid", "uts", "ipc", "net", "cgroup", "user"} {
		if a, b := e.out(id, "readlink", "/proc/self/ns/"+ns), e.out(id, "readlink", "/proc/1/ns/"+ns); a != b {
			t.Errorf("%s namespace of exec = %s, of init = %s", ns, a, b)
		}
	}
	if a, b := e.out(id, "cat", "/proc/self/cgroup"), e.out(id, "cat", "/proc/1/cgroup"); a != b {
		t.Errorf("cgroups of exec:\n%s\nof init:\n%s", a, b)
	}
	// (the "; true" keeps the shell from executing ls in its own place)
	if fds := strings.Fields(e.out(id, "sh", "-c", "ls /proc/$$/fd; true")); !slices.Equal(fds, []string{"0", "1", "2"}) {
		t.Errorf("descriptors of an exec'd shell: %v, want 0 1 2", fds)
	}
	if got := e.out(id, "sh", "-c", "cat /proc/$$/stat | cut -d' ' -f6"); got == "0" {
		t.Errorf("exec'd process has no session of its own")
	}

	// The seccomp programs, read from the host with PTRACE_SECCOMP_GET_FILTER.
	c := e.cmd("exec", id, "sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Signal(unix.SIGTERM); c.Wait() })
	var sleepPid, initPid int
	eventually(t, 10*time.Second, "the exec'd sleep to run", func() bool {
		sleepPid, initPid = 0, 0
		procs, _ := os.ReadFile(filepath.Join(veCgroupDir("pids", id), "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			pid, _ := strconv.Atoi(f)
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(st), "\n") {
				if ns, ok := strings.CutPrefix(line, "NSpid:"); ok {
					if f := strings.Fields(ns); len(f) == 2 && f[1] == "1" {
						initPid = pid
					}
				}
			}
			if bytes.HasPrefix(cmdline, []byte("sleep\x0060")) {
				sleepPid = pid
			}
		}
		return sleepPid != 0 && initPid != 0
	})
	// The exec'd process runs the cached program; runc's ENOSYS stub orders its architecture
	// checks by a map iteration, so programs compiled from one profile may differ in bytes
	// but not in what they decide, which is compared for every syscall number of each ABI.
	cached, _ := filepath.Glob(filepath.Join(e.run, "seccomp", "*.bpf"))
	if len(cached) != 1 {
		t.Fatalf("compiled seccomp programs in the run dir: %v, want one", cached)
	}
	want, err := os.ReadFile(cached[0])
	if err != nil {
		t.Fatal(err)
	}
	initProg, execProg := seccompProgram(t, initPid), seccompProgram(t, sleepPid)
	if !bytes.Equal(execProg, want) {
		t.Fatalf("the exec'd process does not run the cached seccomp program")
	}
	const x8664, i386 = 0xc000003e, 0x40000003
	var args [6]uint64
	// Sanity of the interpreter: read(2) is allowed, mount(2) fails with EPERM.
	if r, err := runBPF(execProg, unix.SYS_READ, x8664, args); err != nil || r != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("read(2): %#x, %v", r, err)
	}
	if r, err := runBPF(execProg, unix.SYS_MOUNT, x8664, args); err != nil || !userns && r != unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM) {
		t.Fatalf("mount(2): %#x, %v", r, err)
	}
	for _, arch := range []uint32{x8664, i386, 0x12345678} {
		for nr := uint32(0); nr < 1100; nr++ {
			for _, n := range []uint32{nr, nr | 0x40000000} { // and the x32 numbers
				for _, a := range []uint64{0, ^uint64(0), 0x7e020000} { // clone flags, personality...
					args = [6]uint64{a, a, a, a, a, a}
					ri, err1 := runBPF(initProg, n, arch, args)
					re, err2 := runBPF(execProg, n, arch, args)
					if err1 != nil || err2 != nil {
						t.Fatalf("running the programs: %v, %v", err1, err2)
					}
					if ri != re {
						t.Fatalf("arch %#x syscall %#x args %#x: init's program returns %#x, exec's %#x", arch, n, a, ri, re)
					}
				}
			}
		}
	}
}

// runBPF runs a classic BPF seccomp program on a struct seccomp_data and returns its action.
func runBPF(prog []byte, nr, arch uint32, args [6]uint64) (uint32, error) {
	var data [64]byte
	binary.LittleEndian.PutUint32(data[0:], nr)
	binary.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc, x uint32
	var mem [16]uint32
	for pc := 0; pc*8 < len(prog); pc++ {
		code := binary.LittleEndian.Uint16(prog[pc*8:])
		jt, jf := prog[pc*8+2], prog[pc*8+3]
		k := binary.LittleEndian.Uint32(prog[pc*8+4:])
		switch code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if k > 60 {
				return 0, fmt.Errorf("load at %d", k)
			}
			acc = binary.LittleEndian.Uint32(data[k:])
		case unix.BPF_LD | unix.BPF_IMM:
			acc = k
		case unix.BPF_LD | unix.BPF_MEM:
			acc = mem[k%16]
		case unix.BPF_ST:
			mem[k%16] = acc
		case unix.BPF_MISC | unix.BPF_TAX:
			x = acc
		case unix.BPF_MISC | unix.BPF_TXA:
			acc = x
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= k
		case unix.BPF_ALU | unix.BPF_OR | unix.BPF_K:
			acc |= k
		case unix.BPF_ALU | unix.BPF_ADD | unix.BPF_K:
			acc += k
		case unix.BPF_ALU | unix.BPF_SUB | unix.BPF_K:
			acc -= k
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(k)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K,
			unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var ok bool
			switch code & 0xf0 {
			case unix.BPF_JEQ:
				ok = acc == k
			case unix.BPF_JGT:
				ok = acc > k
			case unix.BPF_JGE:
				ok = acc >= k
			case unix.BPF_JSET:
				ok = acc&k != 0
			}
			if ok {
				pc += int(jt)
			} else {
				pc += int(jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return k, nil
		case unix.BPF_RET | unix.BPF_A:
			return acc, nil
		default:
			return 0, fmt.Errorf("instruction %d: opcode %#x not known to this test", pc, code)
		}
	}
	return 0, fmt.Errorf("ran off the end of the program")
}

// seccompProgram reads the newest seccomp program of process pid, stopping it for the read.
func seccompProgram(t *testing.T, pid int) []byte {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		t.Fatalf("ptrace %d: %v", pid, err)
	}
	defer unix.PtraceDetach(pid)
	if err := unix.PtraceInterrupt(pid); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
		t.Fatal(err)
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0, 0, 0, 0)
	if errno != 0 || n == 0 {
		t.Fatalf("PTRACE_SECCOMP_GET_FILTER %d: %d instructions, %v", pid, n, errno)
	}
	prog := make([]unix.SockFilter, n)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(pid), 0,
		uintptr(unsafe.Pointer(&prog[0])), 0, 0); errno != 0 {
		t.Fatal(errno)
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0])))
}
