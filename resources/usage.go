package resources

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
)

// PageSize is the unit of OpenVZ's physpages and swappages.
const PageSize = 4096

// noLimit is above any real cgroup limit (v1 writes 2^63-4096 for "no limit").
const noLimit = int64(1) << 62

// Usage is what the kernel accounts for one VE's cgroup. Limits are Unlimited when there is
// none; counters the cgroup version does not keep are -1.
type Usage struct {
	CPUTime time.Duration

	MemUsage, MemMax, MemLimit, MemFailcnt  int64 // bytes, failures to charge
	SwapUsage, SwapMax, SwapLimit, SwapFail int64 // bytes
	OOMKills                                int64 // processes the VE's OOM killer killed
	Tasks, TasksMax, TasksLimit, TasksFail  int64 // pids.current, peak, pids.max, forks refused
}

// ReadUsage reads the usage of the cgroup at path (an absolute cgroup path such as
// /vectl/101) with the fs driver's layout, on cgroup v1 or v2.
func ReadUsage(path string) (Usage, error) {
	if cgroups.IsCgroup2UnifiedMode() {
		return readV2(filepath.Join("/sys/fs/cgroup", path))
	}
	return readV1(path)
}

func readV1(path string) (Usage, error) {
	dir := func(ctl string) string { return filepath.Join("/sys/fs/cgroup", ctl, path) }
	u := Usage{SwapMax: -1, TasksMax: -1, SwapFail: -1}
	mem := dir("memory")
	if _, err := os.Stat(mem); err != nil {
		return u, err
	}
	u.CPUTime = time.Duration(readInt(filepath.Join(dir("cpuacct"), "cpuacct.usage")))
	usage := readInt(filepath.Join(mem, "memory.usage_in_bytes"))
	stat := readKeyed(filepath.Join(mem, "memory.stat"))
	// As docker and runc do: page cache that can be dropped at once is not "in use".
	u.MemUsage = max(0, usage-stat["total_inactive_file"])
	u.MemMax = readInt(filepath.Join(mem, "memory.max_usage_in_bytes"))
	u.MemLimit = limit(readInt(filepath.Join(mem, "memory.limit_in_bytes")))
	u.MemFailcnt = readInt(filepath.Join(mem, "memory.failcnt"))
	if memsw := readInt(filepath.Join(mem, "memory.memsw.usage_in_bytes")); memsw >= usage {
		u.SwapUsage = memsw - usage
		u.SwapMax = max(0, readInt(filepath.Join(mem, "memory.memsw.max_usage_in_bytes"))-u.MemMax)
		swlim := limit(readInt(filepath.Join(mem, "memory.memsw.limit_in_bytes")))
		u.SwapLimit = Unlimited
		if swlim != Unlimited && u.MemLimit != Unlimited {
			u.SwapLimit = swlim - u.MemLimit
		}
		u.SwapFail = readInt(filepath.Join(mem, "memory.memsw.failcnt"))
	}
	u.OOMKills = readKeyed(filepath.Join(mem, "memory.oom_control"))["oom_kill"]
	pids := dir("pids")
	u.Tasks = readInt(filepath.Join(pids, "pids.current"))
	u.TasksLimit = limit(readInt(filepath.Join(pids, "pids.max")))
	u.TasksFail = readKeyed(filepath.Join(pids, "pids.events"))["max"]
	return u, nil
}

func readV2(dir string) (Usage, error) {
	u := Usage{SwapFail: -1}
	if _, err := os.Stat(dir); err != nil {
		return u, err
	}
	u.CPUTime = time.Duration(readKeyed(filepath.Join(dir, "cpu.stat"))["usage_usec"]) * time.Microsecond
	stat := readKeyed(filepath.Join(dir, "memory.stat"))
	u.MemUsage = max(0, readInt(filepath.Join(dir, "memory.current"))-stat["inactive_file"])
	u.MemMax = readIntOr(filepath.Join(dir, "memory.peak"), -1)
	u.MemLimit = limit(readInt(filepath.Join(dir, "memory.max")))
	ev := readKeyed(filepath.Join(dir, "memory.events"))
	u.MemFailcnt, u.OOMKills = ev["max"], ev["oom_kill"]
	u.SwapUsage = readInt(filepath.Join(dir, "memory.swap.current"))
	u.SwapMax = readIntOr(filepath.Join(dir, "memory.swap.peak"), -1)
	u.SwapLimit = limit(readInt(filepath.Join(dir, "memory.swap.max")))
	if sev := readKeyed(filepath.Join(dir, "memory.swap.events")); len(sev) > 0 {
		u.SwapFail = sev["fail"]
	}
	u.Tasks = readInt(filepath.Join(dir, "pids.current"))
	u.TasksMax = readIntOr(filepath.Join(dir, "pids.peak"), -1)
	u.TasksLimit = limit(readInt(filepath.Join(dir, "pids.max")))
	u.TasksFail = readKeyed(filepath.Join(dir, "pids.events"))["max"]
	return u, nil
}

// readInt reads a file holding one number; "max" is Unlimited; errors read as 0.
func readInt(path string) int64 { return readIntOr(path, 0) }

func readIntOr(path string, def int64) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return Unlimited
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return def
	}
	return n
}

// readKeyed reads "key value" lines (memory.stat, pids.events, ...).
func readKeyed(path string) map[string]int64 {
	m := map[string]int64{}
	data, err := os.ReadFile(path)
	if err != nil {
		return m
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[f[0]] = n
			}
		}
	}
	return m
}

func limit(v int64) int64 {
	if v == Unlimited || v >= noLimit {
		return Unlimited
	}
	return v
}
