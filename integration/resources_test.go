//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// v2Files are the cgroup v2 names of the v1 files the tests read.
var v2Files = map[string]string{
	"memory.limit_in_bytes": "memory.max", "pids.max": "pids.max", "pids.current": "pids.current",
	"cpu.cfs_quota_us": "cpu.max",
}

// cgroupValue reads a cgroup file of a VE by its v1 name (mapped to v2 where needed;
// memory.memsw.limit_in_bytes becomes memory.max + memory.swap.max).
func cgroupValue(t *testing.T, ctl, id, file string) int64 {
	t.Helper()
	if cgroupV2() {
		switch file {
		case "memory.memsw.limit_in_bytes":
			return cgroupValue(t, "memory", id, "memory.limit_in_bytes") + readV2Int(t, id, "memory.swap.max")
		case "cpuacct.usage":
			return cgroupV2CPU(t, id)
		}
		return readV2Int(t, id, v2Files[file])
	}
	data, err := os.ReadFile(filepath.Join(veCgroupDir(ctl, id), file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, data)
	}
	return n
}

func readV2Int(t *testing.T, id, file string) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(veCgroupDir("", id), file))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data)) // cpu.max is "QUOTA PERIOD"
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", file, data)
	}
	return n
}

func cgroupV2CPU(t *testing.T, id string) int64 {
	data, err := os.ReadFile(filepath.Join(veCgroupDir("", id), "cpu.stat"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n * 1000
		}
	}
	return 0
}

// cpuShare measures the share of one CPU a VE got over d, from its cgroup's CPU time.
func cpuShare(t *testing.T, id string, d time.Duration) float64 {
	t.Helper()
	before := cgroupValue(t, "cpuacct", id, "cpuacct.usage")
	start := time.Now()
	time.Sleep(d)
	used := cgroupValue(t, "cpuacct", id, "cpuacct.usage") - before
	return float64(used) / float64(time.Since(start).Nanoseconds())
}

// ubc returns a VE's beancounters from vectl ubc --json, by resource.
func (e *env) ubc(id string) map[string]map[string]*int64 {
	e.t.Helper()
	var ves []struct {
		ID        string `json:"ctid"`
		Resources []struct {
			Resource                               string
			Held, MaxHeld, Barrier, Limit, Failcnt *int64
		} `json:"resources"`
	}
	if err := json.Unmarshal([]byte(e.must("ubc", id, "--json").stdout), &ves); err != nil || len(ves) != 1 {
		e.t.Fatalf("ubc --json: %v %v", err, ves)
	}
	out := map[string]map[string]*int64{}
	for _, r := range ves[0].Resources {
		out[r.Resource] = map[string]*int64{"held": r.Held, "maxheld": r.MaxHeld, "barrier": r.Barrier, "limit": r.Limit, "failcnt": r.Failcnt}
	}
	return out
}

func TestResourceForkBomb(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	bomb, other := uniqueID(t), uniqueID(t)
	e.must("create", bomb, "--ostemplate", tmpl, "--numproc", "100")
	e.must("create", other, "--ostemplate", tmpl)
	e.must("start", bomb, "--wait")
	e.must("start", other, "--wait")
	if got := cgroupValue(t, "pids", bomb, "pids.max"); got != 100 {
		t.Fatalf("pids.max = %d", got)
	}
	e.exec(bomb, "sh", "-c", "f(){ f | f & }; f")
	eventually(t, 20*time.Second, "the fork bomb to hit numproc", func() bool {
		c := e.ubc(bomb)["numproc"]["failcnt"]
		return c != nil && *c > 0
	})
	// The host and another VE stay responsive.
	start := time.Now()
	e.out(other, "true")
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("exec into the other VE took %v during the fork bomb", d)
	}
	if n := cgroupValue(t, "pids", bomb, "pids.current"); n > 100 {
		t.Errorf("pids.current = %d above numproc 100", n)
	}
	start = time.Now()
	e.must("stop", bomb, "--timeout", "10")
	t.Logf("stop under a fork bomb took %v", time.Since(start))
	e.wantNoTrace(bomb)
}

func TestResourceMemoryOOM(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--ram", "128M", "--swap", "0")
	e.must("start", id, "--wait")
	if got := cgroupValue(t, "memory", id, "memory.limit_in_bytes"); got != 128<<20 {
		t.Fatalf("memory limit %d", got)
	}
	if got := cgroupValue(t, "memory", id, "memory.memsw.limit_in_bytes"); got != 128<<20 {
		t.Fatalf("memory+swap limit %d (swap 0)", got)
	}
	init1 := e.initStart(id)
	hog := []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=160M", "count=1"}
	if r := e.exec(id, hog...); r.code != 137 {
		t.Fatalf("the hog was not OOM-killed:\n%s", r)
	}
	// Only the hog died: the VE's init and its console process still run.
	if init2 := e.initStart(id); init2 != init1 {
		t.Fatal("the VE's init was killed")
	}
	e.wantStatus(id, "exist mounted running")
	if oom := e.ubc(id)["oomguarpages"]["failcnt"]; oom == nil || *oom < 1 {
		t.Fatalf("ubc shows no OOM kill: %v", oom)
	}
	// Raising ram live lets the same hog finish.
	e.must("set", id, "--ram", "256M")
	if r := e.exec(id, hog...); r.code != 0 {
		t.Fatalf("the hog still fails with ram 256M:\n%s", r)
	}
}

func TestResourceCPU(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	busy := []string{"sh", "-c", "while :; do :; done >/dev/null 2>&1 &"}

	lim := uniqueID(t)
	e.must("create", lim, "--ostemplate", tmpl, "--cpulimit", "50")
	e.must("start", lim, "--wait")
	e.out(lim, busy...)
	e.out(lim, busy...) // two loops: the limit, not one thread, must cap it
	if share := cpuShare(t, lim, 5*time.Second); share < 0.40 || share > 0.60 {
		t.Errorf("cpulimit 50: the VE got %.0f%% of one CPU, want 40-60%%", share*100)
	}
	e.must("stop", "--fast", lim)

	// Two busy VEs on one CPU share it 1:3 by cpuunits.
	a, b := uniqueID(t), uniqueID(t)
	e.must("create", a, "--ostemplate", tmpl, "--cpuunits", "1000", "--cpumask", "1")
	e.must("create", b, "--ostemplate", tmpl, "--cpuunits", "3000", "--cpumask", "1")
	e.must("start", a, "--wait")
	e.must("start", b, "--wait")
	e.out(a, busy...)
	e.out(b, busy...)
	time.Sleep(500 * time.Millisecond)
	ua0, ub0 := cgroupValue(t, "cpuacct", a, "cpuacct.usage"), cgroupValue(t, "cpuacct", b, "cpuacct.usage")
	time.Sleep(5 * time.Second)
	ua := cgroupValue(t, "cpuacct", a, "cpuacct.usage") - ua0
	ub := cgroupValue(t, "cpuacct", b, "cpuacct.usage") - ub0
	ratio := float64(ub) / float64(ua)
	t.Logf("cpuunits 1000 vs 3000: %.2fs vs %.2fs, ratio %.2f", float64(ua)/1e9, float64(ub)/1e9, ratio)
	if ratio < 3*0.8 || ratio > 3*1.2 {
		t.Errorf("CPU shares ratio %.2f, want 3 within 20%%", ratio)
	}
	// Live change: cpulimit on a running VE applies at once.
	e.must("set", a, "--cpulimit", "20")
	if q := cgroupValue(t, "cpu", a, "cpu.cfs_quota_us"); q != 20000 {
		t.Fatalf("cfs quota after set --cpulimit 20: %d", q)
	}
}

func TestResourceImageDisk(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--layout", "image", "--diskspace", "200M")
	e.must("start", id, "--wait")
	df := strings.Fields(strings.Split(e.out(id, "df", "-m", "/"), "\n")[1])
	if size, _ := strconv.Atoi(df[1]); size < 170 || size > 200 {
		t.Fatalf("df inside: %v, want about 200M", df)
	}
	r := e.exec(id, "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=300")
	if r.code == 0 || !strings.Contains(r.stderr, "No space left on device") {
		t.Fatalf("writing 300M into a 200M disk:\n%s", r)
	}
	size := e.out(id, "stat", "-c", "%s", "/fill")
	if written, _ := strconv.ParseInt(size, 10, 64); written < 150<<20 || written > 200<<20 {
		t.Fatalf("ENOSPC after %d bytes, want near 200M", written)
	}
	disk := e.ubc(id)["diskspace"]
	if *disk["held"] < 150*1024 || *disk["limit"] > 200*1024 {
		t.Fatalf("ubc diskspace %d of %d", *disk["held"], *disk["limit"])
	}

	// Growing: online where vectl may resize ext4 online (CAP_SYS_RESOURCE), else the VE
	// must be stopped, and vectl says so.
	if hostHasCap(24) {
		e.must("set", id, "--diskspace", "300M", "--save")
		t.Log("grew the running VE's image online to 300M")
	} else {
		t.Log("no CAP_SYS_RESOURCE here: online growth must be refused; growing the stopped VE's image")
		r := e.expect(32, "set", id, "--diskspace", "300M", "--save")
		if !strings.Contains(r.stderr, "CAP_SYS_RESOURCE") {
			t.Fatalf("refusal does not say why: %q", r.stderr)
		}
		e.must("stop", id)
		e.must("set", id, "--diskspace", "300M", "--save")
		e.must("start", id, "--wait")
	}
	e.out(id, "dd", "if=/dev/zero", "of=/more", "bs=1M", "count=60")
	df = strings.Fields(strings.Split(e.out(id, "df", "-m", "/"), "\n")[1])
	if size, _ := strconv.Atoi(df[1]); size < 260 || size > 300 {
		t.Fatalf("df after growing to 300M: %v", df)
	}
	// Shrinking needs the VE stopped, and the data must fit.
	e.expect(32, "set", id, "--diskspace", "250M", "--save")
	e.must("stop", id)
	e.expect(46, "set", id, "--diskspace", "100M", "--save")
	e.must("start", id)
	e.must("stop", "--fast", id)
	e.wantNoTrace(id)
	if out, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(out), e.root) {
		t.Fatal("image still mounted")
	}
}

// hostHasCap reports whether this process has capability bit c in its effective set.
func hostHasCap(c uint) bool {
	data, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n&(1<<c) != 0
		}
	}
	return false
}

func TestResourceIOLimit(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--iolimit", "10M")
	e.must("start", id, "--wait")
	// busybox dd prints no rate: time the whole write (the exec adds a few milliseconds).
	write := func() float64 {
		start := time.Now()
		r := e.exec(id, "dd", "if=/dev/zero", "of=/var/direct", "bs=1M", "count=40", "oflag=direct")
		if r.code != 0 {
			t.Fatalf("direct write:\n%s", r)
		}
		return 40 / time.Since(start).Seconds()
	}
	rate := write()
	t.Logf("direct-I/O write at %.1f MB/s under iolimit 10M", rate)
	if rate > 11 {
		t.Fatalf("iolimit 10M: direct I/O ran at %.1f MB/s", rate)
	}
	// Lifting the limit live.
	e.must("set", id, "--iolimit", "0")
	if got := cgroupThrottle(t, id); got != "" {
		t.Fatalf("throttle left after --iolimit 0: %q", got)
	}
	t.Logf("after lifting the limit: %.1f MB/s", write())
}

func cgroupThrottle(t *testing.T, id string) string {
	data, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/blkio/vectl", id, "blkio.throttle.write_bps_device"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestResourceBadValuesChangeNothing(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--ram", "256M")
	e.must("start", id, "--wait")
	cfgPath := filepath.Join(e.root, "ve", id, "config.json")
	before, _ := os.ReadFile(cfgPath)
	limBefore := cgroupValue(t, "memory", id, "memory.limit_in_bytes")
	for _, bad := range [][]string{{"--ram", "12Q"}, {"--cpulimit", "-5"}, {"--cpumask", "99"},
		{"--numproc", "3"}, {"--ioprio", "9"}, {"--cpuunits", "7"}} {
		r := e.expect(21, append([]string{"set", id, "--save"}, bad...)...)
		if !strings.Contains(r.stderr, bad[1]) {
			t.Errorf("%v: message does not name the value: %q", bad, r.stderr)
		}
		// A bad value next to a good one: nothing applied.
		e.expect(21, append([]string{"set", id, "--save", "--ram", "512M"}, bad...)...)
	}
	if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
		t.Fatalf("config changed:\n%s", after)
	}
	if got := cgroupValue(t, "memory", id, "memory.limit_in_bytes"); got != limBefore {
		t.Fatalf("memory limit changed to %d", got)
	}
	e.expect(21, "create", uniqueID(t), "--ostemplate", busyboxName, "--ram", "12Q")
	e.expect(21, "create", uniqueID(t), "--ostemplate", busyboxName, "--diskspace", "1G") // overlay
	e.expect(21, "create", uniqueID(t), "--ostemplate", busyboxName, "--layout", "image") // no size
	e.expect(20, "set", id, "--numfile", "2048")                                          // next start only
}

func TestResourceProfiles(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	e.withNetwork()
	ip := testIP("4")
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--config", "vswap-512m", "--hostname", "p.example", "--ipadd", ip)
	out := e.must("list", "-a", "-H", "-o", "ram_limit,swap_limit", id).stdout
	if strings.Join(strings.Fields(out), " ") != "512M 1G" {
		t.Fatalf("vswap-512m gave %q", out)
	}
	e.must("start", id, "--wait")
	e.must("set", id, "--applyconfig", "vswap-1g", "--save")
	if got := cgroupValue(t, "memory", id, "memory.limit_in_bytes"); got != 1<<30 {
		t.Fatalf("applyconfig vswap-1g: live memory limit %d", got)
	}
	out = e.must("list", "-a", "-H", "-o", "ram_limit,hostname,ip", id).stdout
	if strings.Join(strings.Fields(out), " ") != "1G p.example "+ip {
		t.Fatalf("after applyconfig: %q (identity and network must stay)", out)
	}
	// An administrator's JSON profile.
	dir := filepath.Join(e.dir, "profiles")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "small.json"), []byte(`{"ram": "64M", "numproc": 200, "cpuunits": "500"}`), 0o644)
	e.must("--profile-dir", dir, "set", id, "--applyconfig", "small", "--save")
	if got := cgroupValue(t, "pids", id, "pids.max"); got != 200 {
		t.Fatalf("profile small: pids.max %d", got)
	}
	e.expect(92, "--profile-dir", dir, "set", id, "--applyconfig", "nosuch", "--save")
	os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"ram": "lots"}`), 0o644)
	e.expect(21, "--profile-dir", dir, "set", id, "--applyconfig", "broken", "--save")
}

// TestStatsInterrupted: stats --interval waits, so it catches SIGINT and SIGTERM, and either
// ends it with the documented status 130 and a one-line message rather than killing it. (The
// commands that only read and return at once, list and status among them, catch neither.)
func TestStatsInterrupted(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		c := e.cmd("stats", "--interval", "30s")
		var errb bytes.Buffer
		c.Stderr = &errb
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // well into the interval's wait
		if err := c.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signaled() || ws.ExitStatus() != 130 {
			t.Errorf("stats --interval after %v: %v (%s), want exit status 130", sig, c.ProcessState, errb.String())
		}
		if got := errb.String(); !strings.HasPrefix(got, "vectl: ") || strings.Count(got, "\n") != 1 {
			t.Errorf("stats --interval after %v: stderr %q, want one line", sig, got)
		}
	}
}

func TestResourceStats(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	ip := testIP("4")
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--ipadd", ip, "--ram", "256M")
	e.must("start", id, "--wait")
	ping(ip)
	e.out(id, "sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	var st []map[string]any
	if err := json.Unmarshal([]byte(e.must("stats", id, "--json").stdout), &st); err != nil || len(st) != 1 {
		t.Fatalf("stats --json: %v", err)
	}
	s := st[0]
	for _, k := range []string{"cpu_seconds", "memory_bytes", "numproc", "net_in_bytes", "net_out_bytes", "uptime_seconds"} {
		if v, ok := s[k].(float64); !ok || v <= 0 {
			t.Errorf("stats %s = %v", k, s[k])
		}
	}
	u := e.ubc(id)
	if *u["physpages"]["limit"] != 256<<20/4096 || *u["numproc"]["held"] < 1 {
		t.Fatalf("ubc: physpages limit %d, numproc held %d", *u["physpages"]["limit"], *u["numproc"]["held"])
	}
	out := e.must("list", "-H", "-o", "ctid,numproc,physpages,cpu,uptime", id).stdout
	if f := strings.Fields(out); len(f) != 5 || f[1] == "-" || f[2] == "-" {
		t.Fatalf("list usage fields: %q", out)
	}
	if txt := e.must("ubc", id).stdout; !strings.Contains(txt, "physpages") || !strings.Contains(txt, id+":") {
		t.Fatalf("ubc table:\n%s", txt)
	}
}
