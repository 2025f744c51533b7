package idle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCgroup writes files into a new directory standing in for a cgroup.
func fakeCgroup(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func renderViews(t *testing.T, mem, cpu, cpuset, load string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	// (the CPU and I/O accounting files are in the cpu and memory directories here)
	if err := RenderViews(strings.Join([]string{dir, mem, cpu, cpuset, cpu, mem, load}, "\n")); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, v := range []string{"meminfo", "cpuinfo", "cpus", "loadavg", "stat", "swaps", "diskstats"} {
		data, err := os.ReadFile(filepath.Join(dir, v))
		if err != nil {
			t.Fatal(err)
		}
		out[v] = string(data)
	}
	return out
}

// meminfoKB is a /proc/meminfo line's value.
func meminfoKB(t *testing.T, meminfo, key string) string {
	t.Helper()
	for _, line := range strings.Split(meminfo, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in\n%s", key, meminfo)
	return ""
}

func TestViewsCgroupV1(t *testing.T) {
	mem := fakeCgroup(t, map[string]string{
		"memory.limit_in_bytes":       "268435456\n",
		"memory.usage_in_bytes":       "109051904\n",
		"memory.memsw.limit_in_bytes": "805306368\n",
		"memory.memsw.usage_in_bytes": "110100480\n",
		"memory.stat":                 "cache 1\nrss 2\ntotal_cache 4194304\ntotal_rss 100663296\ntotal_shmem 1048576\ntotal_active_file 2097152\ntotal_inactive_file 1048576\n",
	})
	// The accounting files: CPU time in clock ticks, I/O on the host's first disk device.
	hostDisk, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(hostDisk))
	dev, devName := f[0]+":"+f[1], f[2]
	if err := os.WriteFile(filepath.Join(mem, "blkio.throttle.io_service_bytes_recursive"),
		[]byte(dev+" Read 1048576\n"+dev+" Write 2097152\n"+dev+" Total 3145728\nTotal 3145728\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mem, "blkio.throttle.io_serviced_recursive"),
		[]byte(dev+" Read 10\n"+dev+" Write 20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cpu := fakeCgroup(t, map[string]string{"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n",
		"cpuacct.stat": "user 500\nsystem 300\n"})
	cpuset := fakeCgroup(t, map[string]string{"cpuset.cpus": "0-1\n"})
	load := filepath.Join(t.TempDir(), "loadavg")
	v := renderViews(t, mem, cpu, cpuset, load)
	for key, want := range map[string]string{
		"MemTotal": "262144 kB", "MemFree": "155648 kB", "Cached": "4096 kB", "Shmem": "1024 kB",
		"AnonPages": "98304 kB", "SwapTotal": "524288 kB", "SwapFree": "523264 kB", "Buffers": "0 kB",
		"MemAvailable": "158720 kB",
	} {
		if got := meminfoKB(t, v["meminfo"], key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	// Lines the VE has no figure for are the host's, in the host's order.
	if !strings.Contains(v["meminfo"], "\nCommitted_AS:") || !strings.HasPrefix(v["meminfo"], "MemTotal:") {
		t.Errorf("meminfo:\n%s", v["meminfo"])
	}
	// A quota of half a CPU is one CPU.
	if v["cpus"] != "0\n" || strings.Count(v["cpuinfo"], "processor\t:") != 1 || !strings.Contains(v["cpuinfo"], "processor\t: 0\n") {
		t.Errorf("cpus %q, cpuinfo:\n%s", v["cpus"], v["cpuinfo"])
	}
	// /proc/stat: one CPU with the cgroup's time, the host's boot time (no process to read
	// a time namespace from), the host's other lines.
	stat := strings.Split(v["stat"], "\n")
	if !strings.HasPrefix(stat[0], "cpu  500 0 300 ") || !strings.HasPrefix(stat[1], "cpu0 500 0 300 ") || strings.HasPrefix(stat[2], "cpu") {
		t.Errorf("stat:\n%s", v["stat"])
	}
	hostStat, _ := os.ReadFile("/proc/stat")
	for _, l := range strings.Split(string(hostStat), "\n") {
		if strings.HasPrefix(l, "btime ") && !strings.Contains(v["stat"], "\n"+l+"\n") {
			t.Errorf("stat without the host's %q:\n%s", l, v["stat"])
		}
	}
	if !strings.HasSuffix(v["swaps"], "virtual\t\t524288\t\t1024\t\t0\n") || !strings.HasPrefix(v["swaps"], "Filename") {
		t.Errorf("swaps:\n%s", v["swaps"])
	}
	if d := strings.Fields(v["diskstats"]); len(d) != 20 || d[2] != devName || d[3] != "10" || d[5] != "2048" || d[7] != "20" || d[9] != "4096" {
		t.Errorf("diskstats %q", v["diskstats"])
	}
	if v["loadavg"] != "0.00 0.00 0.00 0/0 0\n" {
		t.Errorf("loadavg before the first sample: %q", v["loadavg"])
	}
	if err := os.WriteFile(load, []byte("0.52 0.21 0.08 2/17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := renderViews(t, mem, cpu, cpuset, load); v["loadavg"] != "0.52 0.21 0.08 2/17 0\n" {
		t.Errorf("loadavg: %q", v["loadavg"])
	}
}

func TestViewsCgroupV2(t *testing.T) {
	host, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	dir := fakeCgroup(t, map[string]string{
		"memory.max": "max\n", "memory.current": "52428800\n", "memory.swap.max": "max\n", "memory.swap.current": "0\n",
		"memory.stat": "anon 41943040\nfile 8388608\nshmem 0\nslab_reclaimable 1048576\nslab_unreclaimable 524288\n",
		"cpu.max":     "max 100000\n", "cpuset.cpus.effective": "0\n",
	})
	v := renderViews(t, dir, dir, dir, filepath.Join(dir, "none"))
	// No memory limit: the host's total, and the host's swap.
	if got, want := meminfoKB(t, v["meminfo"], "MemTotal"), meminfoKB(t, string(host), "MemTotal"); got != want {
		t.Errorf("MemTotal %q, host %q", got, want)
	}
	if got, want := meminfoKB(t, v["meminfo"], "SwapTotal"), meminfoKB(t, string(host), "SwapTotal"); got != want {
		t.Errorf("SwapTotal %q, host %q", got, want)
	}
	if got := meminfoKB(t, v["meminfo"], "SReclaimable"); got != "1024 kB" {
		t.Errorf("SReclaimable %q", got)
	}
	if got := meminfoKB(t, v["meminfo"], "AnonPages"); got != "40960 kB" {
		t.Errorf("AnonPages %q", got)
	}
	if v["cpus"] != "0\n" {
		t.Errorf("cpus %q for a cpuset of CPU 0", v["cpus"])
	}
	// No cgroup to read (not made yet): the host's own figures.
	v = renderViews(t, filepath.Join(dir, "missing"), dir, dir, "")
	if v["meminfo"] != string(host) && meminfoKB(t, v["meminfo"], "MemTotal") != meminfoKB(t, string(host), "MemTotal") {
		t.Errorf("meminfo without a cgroup:\n%s", v["meminfo"])
	}
}

// TestSRCUExpedited: the views' fanotify group is closed in place only where the kernel
// expedites SRCU grace periods (rcu_expedited 1, rcu_normal 0); anything else, a missing
// or unreadable file among it, keeps the closer.
func TestSRCUExpedited(t *testing.T) {
	for _, c := range []struct {
		files map[string]string
		want  bool
	}{
		{map[string]string{"rcu_expedited": "1\n", "rcu_normal": "0\n"}, true},
		{map[string]string{"rcu_expedited": "0\n", "rcu_normal": "0\n"}, false},
		{map[string]string{"rcu_expedited": "1\n", "rcu_normal": "1\n"}, false},
		{map[string]string{"rcu_expedited": "1\n"}, false},
		{map[string]string{"rcu_normal": "0\n"}, false},
		{map[string]string{"rcu_expedited": "x\n", "rcu_normal": "0\n"}, false},
		{map[string]string{}, false},
	} {
		if got := srcuExpedited(fakeCgroup(t, c.files)); got != c.want {
			t.Errorf("%v: in place %v, want %v", c.files, got, c.want)
		}
	}
	if got := srcuExpedited(filepath.Join(t.TempDir(), "none")); got {
		t.Error("a missing directory: in place, want the closer")
	}
}
