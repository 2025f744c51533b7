package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The cost of an operation, from the kernel's own accounting rather than the wall clock.
//
// Every command the bench runs, timed or not, starts in the cgroup2 cgroup vectl-bench/run
// (clone3 with CLONE_INTO_CGROUP), and every contender keeps what it starts below
// vectl-bench: vectl's VEs and monitors, the OCI runtimes' containers, LXC's monitor and
// payload, nspawn. So the cgroup vectl-bench holds, during a timed command, the command, all
// its children and daemons, and the monitors and containers it talks to, and nothing else
// (the harness and the background load of -load stay outside). For each timed command the
// bench reads, before and after:
//
//   - cpu.stat of vectl-bench: usage_usec, user_usec, system_usec, the CPU time of every task
//     below it (cgroup2 keeps this without any controller enabled);
//   - per-CPU perf counters in cgroup mode on vectl-bench: software page faults (minor and
//     major), and the tracepoints sched:sched_process_exec (programs executed) and
//     sched:sched_process_fork (processes and threads created).
//
// A host without cgroup2 or perf gets wall-clock rows only, with a note.

// cost is what one timed command (or the sum of a pass's timed commands) used.
type cost struct {
	CPU    float64 `json:"cpu_ms"`      // user + system
	User   float64 `json:"user_ms"`     //
	Sys    float64 `json:"system_ms"`   //
	Faults float64 `json:"page_faults"` // minor and major
	Execs  float64 `json:"execs"`       // programs executed (execve)
	Forks  float64 `json:"forks"`       // processes and threads created
}

func (c cost) add(d cost) cost {
	return cost{c.CPU + d.CPU, c.User + d.User, c.Sys + d.Sys, c.Faults + d.Faults, c.Execs + d.Execs, c.Forks + d.Forks}
}

func (c cost) sub(d cost) cost {
	return cost{c.CPU - d.CPU, c.User - d.User, c.Sys - d.Sys, c.Faults - d.Faults, c.Execs - d.Execs, c.Forks - d.Forks}
}

// accounting reads the counters of the bench's cgroup.
type accounting struct {
	dir  string // the cgroup2 directory vectl-bench
	perf bool   // faults, execs and forks are counted
	fds  [3][]int
}

// acctRunFD is vectl-bench/run, the cgroup every command starts in (command() reads it);
// -1 without accounting.
var acctRunFD = -1

// cgroup2Mount is where the cgroup2 hierarchy is mounted: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one, "" without.
func cgroup2Mount() string {
	for _, d := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return d
		}
	}
	return ""
}

// setupAccounting makes vectl-bench/run in the cgroup2 hierarchy and opens the counters.
// What fails is said in a note and leaves the rows without that part of the cost.
func (b *bench) setupAccounting() {
	mnt := cgroup2Mount()
	if mnt == "" {
		b.note("cost columns: no cgroup2 hierarchy on this host; only wall-clock times")
		return
	}
	a := &accounting{dir: filepath.Join(mnt, cgBench)}
	run := filepath.Join(a.dir, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		b.note("cost columns: %v; only wall-clock times", err)
		return
	}
	fd, err := unix.Open(run, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.note("cost columns: %v; only wall-clock times", err)
		return
	}
	if _, err := a.cpuStat(); err != nil {
		unix.Close(fd)
		b.note("cost columns: %v; only wall-clock times", err)
		return
	}
	acctRunFD = fd
	b.acct = a
	b.onCleanup("cost counters", func() error {
		a.closePerf()
		unix.Close(acctRunFD)
		acctRunFD = -1
		return nil
	})
	if err := a.openPerf(); err != nil {
		a.closePerf()
		b.note("cost columns: page faults and processes not counted: %v", err)
		return
	}
	a.perf = true
}

func (a *accounting) openPerf() error {
	cg, err := unix.Open(a.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(cg)
	exec, err := tracepointID("sched/sched_process_exec")
	if err != nil {
		return err
	}
	fork, err := tracepointID("sched/sched_process_fork")
	if err != nil {
		return err
	}
	events := [3]struct {
		typ uint32
		cfg uint64
	}{{unix.PERF_TYPE_SOFTWARE, unix.PERF_COUNT_SW_PAGE_FAULTS}, {unix.PERF_TYPE_TRACEPOINT, exec},
		{unix.PERF_TYPE_TRACEPOINT, fork}}
	cpus, err := onlineCPUs()
	if err != nil {
		return err
	}
	for i, ev := range events {
		for _, cpu := range cpus {
			attr := unix.PerfEventAttr{Type: ev.typ, Config: ev.cfg, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{}))}
			fd, err := unix.PerfEventOpen(&attr, cg, cpu, -1, unix.PERF_FLAG_PID_CGROUP|unix.PERF_FLAG_FD_CLOEXEC)
			if err != nil {
				return fmt.Errorf("perf_event_open (cgroup %s, cpu %d): %w", a.dir, cpu, err)
			}
			a.fds[i] = append(a.fds[i], fd)
		}
	}
	return nil
}

// tracepointID reads a tracepoint's id from tracefs. A host where tracefs is not mounted (a
// fresh machine often has neither /sys/kernel/tracing nor debugfs mounted) gets its own
// tracefs mounted for the one read, in a private mount namespace of a short-lived helper, so
// no mount of the host's changes (unshare --mount makes its mounts private).
func tracepointID(name string) (uint64, error) {
	var errs []error
	for _, d := range []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"} {
		data, err := os.ReadFile(filepath.Join(d, "events", name, "id"))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	}
	out, err := exec.Command("unshare", "--mount", "sh", "-ec",
		`mount -t tracefs tracefs /sys/kernel/tracing && cat "/sys/kernel/tracing/events/$1/id"`, "sh", name).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return 0, fmt.Errorf("tracepoint %s: %w", name, errors.Join(append(errs, fmt.Errorf("a private tracefs: %w", err))...))
	}
	return strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
}

// onlineCPUs lists the CPUs in /sys/devices/system/cpu/online.
func onlineCPUs() ([]int, error) {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	return parseCPUList(string(data))
}

// parseCPUList parses a kernel CPU list such as "0-1,4".
func parseCPUList(data string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(data), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", strings.TrimSpace(data), err)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", strings.TrimSpace(data), err)
			}
		}
		for c := a; c <= z; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

func (a *accounting) closePerf() {
	for i := range a.fds {
		for _, fd := range a.fds[i] {
			unix.Close(fd)
		}
		a.fds[i] = nil
	}
}

// cpuStat reads the CPU time of everything below vectl-bench.
func (a *accounting) cpuStat() (cost, error) {
	f, err := os.Open(filepath.Join(a.dir, "cpu.stat"))
	if err != nil {
		return cost{}, err
	}
	defer f.Close()
	var c cost
	var seen int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		switch k {
		case "usage_usec":
			c.CPU, seen = n/1000, seen+1
		case "user_usec":
			c.User, seen = n/1000, seen+1
		case "system_usec":
			c.Sys, seen = n/1000, seen+1
		}
	}
	if seen != 3 {
		return c, fmt.Errorf("%s: no usage_usec, user_usec and system_usec", f.Name())
	}
	return c, sc.Err()
}

// read returns the counters' totals so far.
func (a *accounting) read() cost {
	c, _ := a.cpuStat()
	if !a.perf {
		return c
	}
	var buf [8]byte
	var sums [3]float64
	for i := range a.fds {
		for _, fd := range a.fds[i] {
			if n, err := unix.Read(fd, buf[:]); err == nil && n == 8 {
				sums[i] += float64(binary.LittleEndian.Uint64(buf[:]))
			}
		}
	}
	c.Faults, c.Execs, c.Forks = sums[0], sums[1], sums[2]
	return c
}

// The background load of -load: one worker per CPU, each this program again with
// loadWorkerEnv set, at normal priority, outside the bench's cgroup.
const loadWorkerEnv = "VECTL_BENCH_LOAD_WORKER"

// loadWorker is the body of a load process: it walks a 32 MiB buffer (CPU, caches and TLB
// busy) and executes /bin/true every 20 ms (the process creation of a busy node), until the
// harness kills it or dies.
func loadWorker() {
	buf := make([]byte, 32<<20)
	for i := 0; ; i++ {
		for j := 0; j < len(buf); j += 64 {
			buf[j]++
		}
		if i%4 == 0 {
			pid, err := forkExecTrue()
			if err == nil {
				var ws unix.WaitStatus
				unix.Wait4(pid, &ws, 0, nil)
			}
		}
		runtime.Gosched()
	}
}

func forkExecTrue() (int, error) {
	return syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{Env: []string{}})
}

// startLoad starts the load workers and registers their end.
func (b *bench) startLoad() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	n := runtime.NumCPU()
	var procs []*os.Process
	b.onCleanup("background load", func() error {
		for _, p := range procs {
			p.Kill()
			p.Wait()
		}
		return nil
	})
	for range n {
		c := exec.Command(self)
		c.Env = append(os.Environ(), loadWorkerEnv+"=1")
		// Its own process group (a Ctrl-C reaches only the harness), killed with it.
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return fmt.Errorf("background load: %w", err)
		}
		procs = append(procs, c.Process)
	}
	b.progress("background load: %d workers at normal priority (a 32 MiB walk and /bin/true every ~20 ms each)", n)
	return nil
}
