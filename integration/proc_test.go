//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// veUptime is the first field of /proc/uptime inside a VE: seconds since its boot.
func (e *env) veUptime(id string) float64 {
	e.t.Helper()
	out := e.out(id, "cat", "/proc/uptime")
	up, err := strconv.ParseFloat(strings.Fields(out)[0], 64)
	if err != nil {
		e.t.Fatalf("/proc/uptime of VE %s: %q", id, out)
	}
	return up
}

// TestTimeNamespace (issue 19): each VE boots in a time namespace of its own whose
// monotonic and boot-time clocks start at 0, so /proc/uptime, /proc/stat's btime and the
// start times in /proc/PID/stat are the VE's; exec'd processes join it; an in-VE reboot
// starts the clocks again. Checkpoint and restore carry them on (TestCheckpointRestore).
func TestTimeNamespace(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	hostNS, err := os.Readlink("/proc/self/ns/time")
	if err != nil {
		t.Fatal(err)
	}
	for _, userns := range []string{"yes", "no"} {
		id := uniqueID(t)
		e.must("create", id, "--ostemplate", tmpl, "--userns", userns)
		before := time.Now()
		e.must("start", id, "--wait", "--timeout", "60")
		up := e.veUptime(id)
		if d := age(before); up > d+1 {
			t.Errorf("userns %s: uptime %.2f s right after a start %.2f s ago", userns, up, d)
		}
		initNS := e.out(id, "readlink", "/proc/1/ns/time")
		if initNS == hostNS {
			t.Fatalf("userns %s: the VE's init is in the host's time namespace %s", userns, hostNS)
		}
		if got := e.out(id, "readlink", "/proc/self/ns/time"); got != initNS {
			t.Errorf("userns %s: an exec'd process is in time namespace %s, the init in %s", userns, got, initNS)
		}
		// Both clocks are set back, by about the host's uptime.
		offs := map[string]float64{}
		for _, line := range strings.Split(e.out(id, "cat", "/proc/1/timens_offsets"), "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				s, _ := strconv.ParseFloat(f[1], 64)
				ns, _ := strconv.ParseFloat(f[2], 64)
				offs[f[0]] = s + ns/1e9
			}
		}
		hostUp := hostUptime(t)
		if b := offs["boottime"]; math.Abs(-b-hostUp) > age(before)+1 {
			t.Errorf("userns %s: boot-time offset %.2f s, host uptime %.2f s", userns, b, hostUp)
		}
		if offs["monotonic"] >= 0 {
			t.Errorf("userns %s: monotonic clock not set back: offsets %v", userns, offs)
		}
		// The boot time /proc/stat shows inside is the VE's.
		for _, line := range strings.Split(e.out(id, "cat", "/proc/stat"), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				btime, _ := strconv.ParseInt(v, 10, 64)
				if d := btime - before.Unix(); d < -1 || d > int64(age(before))+1 {
					t.Errorf("userns %s: btime inside %d, the VE started at %d", userns, btime, before.Unix())
				}
			}
		}
		time.Sleep(2 * time.Second)
		up1 := e.veUptime(id)
		if up1 < up+1.5 {
			t.Errorf("userns %s: uptime %.2f s, then %.2f s two seconds later", userns, up, up1)
		}
		// An in-VE reboot is a new boot: the clocks start again.
		init1 := e.initStart(id)
		e.exec(id, "reboot")
		eventually(t, 20*time.Second, "the reboot", func() bool {
			n := e.initStartNow(id)
			return n != 0 && n != init1 && e.exec(id, "true").code == 0
		})
		if up2 := e.veUptime(id); up2 >= up1 {
			t.Errorf("userns %s: uptime %.2f s after an in-VE reboot, %.2f s before it", userns, up2, up1)
		}
		e.must("stop", id)
		e.wantNoTrace(id)
	}
}

// hostFile is a file of the host's (/proc/uptime, /proc/cpuinfo, ...).
func hostFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// hostUptime is the host's /proc/uptime.
func hostUptime(t *testing.T) float64 {
	t.Helper()
	up, _ := strconv.ParseFloat(strings.Fields(hostFile(t, "/proc/uptime"))[0], 64)
	return up
}

func age(since time.Time) float64 { return time.Since(since).Seconds() }

// freeRow is the total and used of free's "Mem:" or "Swap:" line in out.
func freeRow(out, row string) (total, used int64, ok bool) {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == row+":" {
			total, _ = strconv.ParseInt(f[1], 10, 64)
			used, _ = strconv.ParseInt(f[2], 10, 64)
			return total, used, true
		}
	}
	return 0, 0, false
}

// freeB is the "Mem:" or "Swap:" line of free -b inside a VE: total and used.
func (e *env) freeB(id, row string) (total, used int64) {
	e.t.Helper()
	out := e.out(id, "free", "-b")
	total, used, ok := freeRow(out, row)
	if !ok {
		e.t.Fatalf("free -b in VE %s has no %s line:\n%s", id, row, out)
	}
	return total, used
}

// TestProcViews (issue 19): inside a VE, free, top, lscpu, getconf and /proc/loadavg show
// the VE's own memory, swap, CPUs and load, rendered by its monitor whenever they are
// opened; a limit changed with set shows at once; SIGKILL of the monitor leaves the files
// readable with the VE's last values, and another VE's views alone.
func TestProcViews(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importDebian(), "--ram", "256M", "--swap", "512M", "--cpus", "1")
	e.must("start", id, "--wait", "--timeout", "90")
	other := uniqueID(t)
	e.must("create", other, "--ostemplate", e.importBusybox(), "--ram", "128M")
	e.must("start", other, "--wait", "--timeout", "60")

	if total, _ := e.freeB(id, "Mem"); total != 256<<20 {
		t.Errorf("free -b total memory %d, want %d", total, 256<<20)
	}
	if total, _ := e.freeB(id, "Swap"); total != 512<<20 {
		t.Errorf("free -b total swap %d, want %d", total, 512<<20)
	}
	// 100 MiB held by a process shows as used while it lives.
	_, used0 := e.freeB(id, "Mem")
	r := e.exec(id, "sh", "-c", `a=$(head -c 104857600 /dev/zero | tr '\0' x); free -b; echo ${#a}`)
	_, used1, _ := freeRow(r.stdout, "Mem")
	if d := used1 - used0; d < 90<<20 || d > 250<<20 {
		t.Errorf("used went from %d to %d with 100 MiB held (a shell string of 100 MiB):\n%s", used0, used1, r)
	}
	for name, cmd := range map[string][]string{
		"processors in /proc/cpuinfo":    {"grep", "-c", "^processor", "/proc/cpuinfo"},
		"getconf _NPROCESSORS_ONLN":      {"getconf", "_NPROCESSORS_ONLN"},
		"getconf _NPROCESSORS_CONF":      {"getconf", "_NPROCESSORS_CONF"},
		"lscpu CPU(s)":                   {"sh", "-c", "lscpu | sed -n 's/^CPU(s): *//p'"},
		"nproc":                          {"nproc"},
		"nproc --all":                    {"nproc", "--all"},
		"/sys/devices/system/cpu/online": {"sh", "-c", "cat /sys/devices/system/cpu/online | tr - x"},
	} {
		want := "1"
		if strings.HasPrefix(name, "/sys") {
			want = "0"
		}
		if got := e.out(id, cmd...); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	// /proc/swaps has the VE's swap, /proc/stat its one CPU, /proc/diskstats only host
	// devices, each line in the kernel's 20 fields; vmstat reads them all.
	if swaps := strings.Fields(e.out(id, "tail", "-n", "1", "/proc/swaps")); len(swaps) != 5 || swaps[2] != "524288" {
		t.Errorf("/proc/swaps: %q", swaps)
	}
	if got := e.out(id, "grep", "-c", "^cpu[0-9]", "/proc/stat"); got != "1" {
		t.Errorf("CPUs in /proc/stat: %s", got)
	}
	hostDisks := hostFile(t, "/proc/diskstats")
	for _, line := range strings.Split(e.out(id, "cat", "/proc/diskstats"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && (len(f) != 20 || !strings.Contains(hostDisks, " "+f[2]+" ")) {
			t.Errorf("/proc/diskstats line %q", line)
		}
	}
	e.out(id, "vmstat", "1", "1")
	// The VE's mountinfo shows the views as files of a tmpfs, not by their host path.
	for _, line := range strings.Split(e.out(id, "cat", "/proc/self/mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == "/proc/meminfo" && f[3] != "/meminfo" {
			t.Errorf("the view of /proc/meminfo is mounted from %s", f[3])
		}
	}
	if top := e.out(id, "sh", "-c", "top -bn1 | grep -i 'mem'"); !strings.Contains(top, "256.0 total") || !strings.Contains(top, "512.0 total") {
		t.Errorf("top's header does not show the VE's memory and swap:\n%s", top)
	}
	if n := e.out(other, "grep", "-c", "^processor", "/proc/cpuinfo"); n != strconv.Itoa(hostCPUs(t)) {
		t.Errorf("a VE without a CPU limit sees %s processors, the host has %d", n, hostCPUs(t))
	}

	// A new limit shows at the next read.
	e.must("set", id, "--ram", "512M")
	if total, _ := e.freeB(id, "Mem"); total != 512<<20 {
		t.Errorf("free -b total memory %d right after set --ram 512M", total)
	}

	// Two busy loops raise this VE's load average, not the other's. Each VE's average starts
	// from what its own boot left (the monitor samples at once when it starts to rest, often
	// while the boot's scripts still run), so the other VE is held to its own value before.
	load := func(ve string) float64 {
		f := strings.Fields(e.out(ve, "cat", "/proc/loadavg"))
		if len(f) != 5 {
			t.Fatalf("/proc/loadavg of VE %s: %q", ve, f)
		}
		l, _ := strconv.ParseFloat(f[0], 64)
		return l
	}
	o0 := load(other)
	e.out(id, "sh", "-c", "for i in 1 2; do sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $! >>/tmp/busy; done")
	time.Sleep(11 * time.Second)
	// (Two 5 s samples of 2 running threads make a 1-minute average of about 0.3; a reader
	// of the view caught waiting for it by a sample adds 0.08.)
	l, o := load(id), load(other)
	t.Logf("load average %.2f in the VE with two busy loops; %.2f in the other, %.2f before", l, o, o0)
	if l < 0.25 || o > o0+0.1 || o > l/2+o0 {
		t.Errorf("load average %.2f in the VE with two busy loops, %.2f in the other (%.2f before)", l, o, o0)
	}
	e.out(id, "sh", "-c", "kill $(cat /tmp/busy)")

	// SIGKILL of the monitor: the views stay readable, with the VE's values.
	pids := monitorPids(e, id)
	if len(pids) != 1 {
		t.Fatalf("monitor processes of VE %s: %v", id, pids)
	}
	loop := e.cmd("exec", id, "sh", "-c", `i=0; while [ $i -lt 300 ]; do grep -q '^MemTotal: *524288 kB' /proc/meminfo || { echo "read $i failed"; exit 1; }; i=$((i+1)); done`)
	var out strings.Builder
	loop.Stdout, loop.Stderr = &out, &out
	if err := loop.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := loop.Wait(); err != nil {
		t.Errorf("reading /proc/meminfo while the monitor was killed: %v\n%s", err, out.String())
	}
	if total, _ := e.freeB(id, "Mem"); total != 512<<20 {
		t.Errorf("free -b total memory %d after the monitor was killed", total)
	}
	// (busybox's free asks sysinfo(2), which no view covers: the other VE is read directly.)
	if got := e.out(other, "sed", "-n", "s/^MemTotal: *//p", "/proc/meminfo"); got != "131072 kB" {
		t.Errorf("the other VE's MemTotal: %q", got)
	}
	e.must("stop", id, "--fast")

	// --meminfo none (vzctl's): the host's files inside, from the next start.
	if r := e.expect(21, "set", id, "--meminfo", "pages:1000"); !strings.Contains(r.stderr, "meminfo") {
		t.Errorf("set --meminfo pages:1000: %s", r)
	}
	if got := strings.TrimSpace(e.must("list", "-a", "-H", "-o", "meminfo", id).stdout); got != "privvmpages:1" {
		t.Errorf("list -o meminfo: %q", got)
	}
	e.must("set", id, "--meminfo", "none", "--save")
	var st struct {
		Meminfo string `json:"meminfo"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil || st.Meminfo != "none" {
		t.Errorf("status --json meminfo %q (%v), want none", st.Meminfo, err)
	}
	e.must("start", id, "--wait", "--timeout", "90")
	hostTotal := strings.Fields(hostFile(t, "/proc/meminfo"))[1] + " kB" // MemTotal comes first
	if got := e.out(id, "sed", "-n", "s/^MemTotal: *//p", "/proc/meminfo"); got != hostTotal {
		t.Errorf("MemTotal with --meminfo none: %q, the host's %q", got, hostTotal)
	}
	e.must("stop", id, "--fast")
	e.must("stop", other)
	e.wantNoTrace(id)
	e.wantNoTrace(other)
}

// hostCPUs is the number of CPUs the host has online.
func hostCPUs(t *testing.T) int {
	t.Helper()
	return strings.Count("\n"+hostFile(t, "/proc/cpuinfo"), "\nprocessor")
}

// childrenNamed lists this process's children (a subreaper's, orphans included) whose
// name (/proc/PID/stat's comm) is comm, zombies among them.
// srcuExpedited tells whether this kernel expedites SRCU grace periods (rcu_expedited 1 and
// rcu_normal 0 in /sys/kernel), read here independently of the monitor's own check.
func srcuExpedited() bool {
	return fileText("/sys/kernel/rcu_expedited") == "1\n" && fileText("/sys/kernel/rcu_normal") == "0\n"
}

func childrenNamed(comm string) []int {
	var pids []int
	for _, pid := range hostPids() {
		st := fileText(fmt.Sprintf("/proc/%d/stat", pid))
		i, j := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
		if i < 0 || j < i || st[i+1:j] != comm {
			continue
		}
		if f := strings.Fields(st[j+1:]); len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// pipeHolders lists the processes other than this one with a descriptor of the pipe w.
func pipeHolders(w *os.File) []int {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
		return nil
	}
	want := "pipe:[" + strconv.FormatUint(st.Ino, 10) + "]"
	var pids []int
	for _, pid := range hostPids() {
		if pid == os.Getpid() {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); l == want {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// TestViewsCloser (issue 22): at a VE's end its monitor hands the views' fanotify group and
// files to a closer, "vectl-views-closer __views-closer ..." (the idle loop's program, which
// the foreground Go monitor executes; a copy of the resting monitor, which writes that command
// line over its arguments), whose close waits out the kernel's grace period off the monitor's path. This test
// is a child subreaper, so the closer (an orphan) becomes its child: one closer per end of
// the VE, from the foreground Go monitor and from the resting monitor (vectl-idle); it
// keeps nothing but the pipe, the group and the view files (not the caller's output, which
// reaches EOF when vectl exits) and exits 0 on its own. Where the kernel expedites SRCU
// grace periods (rcu_expedited 1, rcu_normal 0: the close takes a fraction of a
// millisecond) the monitor closes the group itself, and no closer may appear.
func TestViewsCloser(t *testing.T) {
	inPlace := srcuExpedited()
	t.Logf("SRCU grace periods expedited: %v (a closer expected: %v)", inPlace, !inPlace)
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox())
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer func() {
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		for { // whatever became this process's child (the monitor below, closers)
			if pid, _ := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 {
				break
			}
		}
	}()
	// The idle loop's program, extracted at the first start; "" for a build without it.
	var idleProgram string
	findIdleProgram := func() {
		if m, _ := filepath.Glob(filepath.Join(e.root, "idle-bin", "*", "vectl-idle")); len(m) == 1 {
			idleProgram = m[0]
		}
	}

	// closerDone checks the one closer this process adopted and waits for its exit.
	closerDone := func(what string, out *os.File) {
		t.Helper()
		pids := childrenNamed("vectl-views-clo")
		if inPlace {
			if len(pids) != 0 {
				t.Fatalf("%s: SRCU grace periods are expedited here, so the monitor closes its views itself; got closers %v", what, pids)
			}
			if out != nil {
				if h := pipeHolders(out); len(h) > 0 {
					t.Errorf("%s: the caller's output is still held by %v after vectl exited", what, h)
				}
			}
			return
		}
		if len(pids) != 1 {
			t.Fatalf("%s: want one views closer adopted by the test, got %v", what, pids)
		}
		pid := pids[0]
		cmd := fileText(fmt.Sprintf("/proc/%d/cmdline", pid)) // "" once it has exited
		if cmd != "" && !strings.HasPrefix(cmd, "vectl-views-closer\x00__views-closer\x00") {
			t.Errorf("%s: closer %d runs %q", what, pid, cmd)
		}
		// Both monitors' closers run the idle loop's small program (since 2026-12-08 also
		// the Go monitor's, which executed vectl's own binary before), where this build
		// has one (it is extracted to ROOT/idle-bin at a start).
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && idleProgram != "" && exe != idleProgram {
			t.Errorf("%s: closer %d runs %s, not the idle loop's program %s", what, pid, exe, idleProgram)
		}
		if out != nil {
			if h := pipeHolders(out); len(h) > 0 {
				t.Errorf("%s: the caller's output is still held by %v after vectl exited", what, h)
			}
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			// View files read back as paths (relative to their mount once the teardown has
			// detached it); sockets, terminals and the like have no business here.
			if !strings.HasPrefix(l, "pipe:") && l != "anon_inode:[fanotify]" && !strings.HasPrefix(l, "/") {
				t.Errorf("%s: closer %d keeps fd %s -> %s", what, pid, fd.Name(), l)
			}
		}
		var ws unix.WaitStatus
		since := time.Now()
		defer func() {
			t.Logf("%s: the closer exited %v after it was found", what, time.Since(since).Round(time.Millisecond))
		}()
		done := make(chan error, 1)
		go func() {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("%s: closer %d: %v, status %v", what, pid, err, ws)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: closer %d still runs after 10 s", what, pid)
		}
	}

	// A foreground run: the Go monitor spawns the closer.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fg := e.cmd("start", "--foreground", id)
	fg.Stdout, fg.Stderr = w, w
	if err := fg.Start(); err != nil {
		t.Fatal(err)
	}
	defer fg.Process.Kill()
	eventually(t, 20*time.Second, "the foreground VE to run", func() bool {
		return e.exec(id, "test", "-e", "/run/vectl-booted").code == 0
	})
	findIdleProgram()
	t.Logf("the idle loop's program: %q", idleProgram)
	fg.Process.Signal(syscall.SIGTERM) // as systemctl stop does: shut down through the init
	if err := fg.Wait(); err != nil {
		t.Fatalf("foreground vectl: %v", err)
	}
	closerDone("foreground run", w)
	w.Close()
	e.wantNoTrace(id)

	// A background start ended from inside (poweroff): the resting monitor (vectl-idle,
	// adopted by this process when the start's command exited) sees its init exit and
	// spawns the closer before it tears the VE down. (vectl stop would race it: the stop's
	// teardown kills the monitor, which may not have got to its views yet.)
	e.must("start", id)
	eventually(t, 20*time.Second, "the VE to run", func() bool {
		return e.exec(id, "test", "-e", "/run/vectl-booted").code == 0
	})
	e.exec(id, "poweroff")
	began := time.Now()
	eventually(t, 30*time.Second, "the VE to power off", func() bool {
		return e.statusLine(id) == "VEID "+id+" exist unmounted down" && len(monitorPids(e, id)) == 0
	})
	t.Logf("the VE powered off in %v", time.Since(began).Round(time.Millisecond))
	closerDone("background start, poweroff inside", nil)
	e.wantNoTrace(id)
}
