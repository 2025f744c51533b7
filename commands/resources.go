package commands

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/resources"
)

// resourceUsage documents each resource flag: vzctl's names, units and suffixes.
var resourceUsage = map[string]string{
	"cpuunits":   "CPU weight (8-500000, default 1000): CPU time is shared in proportion",
	"cpulimit":   "CPU limit in percent of one CPU (100 = one CPU, 0 = none)",
	"cpus":       "CPUs: that much CPU time and, without --cpumask, that many CPUs to run on (or unlimited)",
	"cpumask":    "CPUs the VE may run on (0-1,3 or all)",
	"nodemask":   "NUMA memory nodes the VE may use (0,1 or all)",
	"ram":        "memory limit (K, M, G, T; unlimited)",
	"swap":       "swap the VE may use on top of ram (0 unless set)",
	"numproc":    "maximum number of processes and threads (or unlimited)",
	"numfile":    "maximum open files per process (the init's RLIMIT_NOFILE; next start)",
	"diskspace":  "disk size (image layout): K, M, G, T; a number alone counts 1K blocks",
	"diskinodes": "inodes of the disk image (create only)",
	"ioprio":     "I/O priority 0-7 (default 4; the I/O weight, with the BFQ scheduler)",
	"iolimit":    "I/O bandwidth limit per second (K, M, G; a number alone is MB/s; 0 = none)",
	"iopslimit":  "I/O operations per second limit (0 = none)",
}

func resourceFlags() []cli.Flag {
	var fs []cli.Flag
	for _, n := range resources.Names {
		fs = append(fs, &cli.StringFlag{Name: n, Usage: resourceUsage[n], Category: "Resources"})
	}
	return fs
}

// limitValues parses the resource flags given on the command line (given: givenFlags) and
// checks them against this host.
func limitValues(c *cli.Context, given map[string]bool) (resources.Limits, error) {
	m := map[string]string{}
	for _, n := range resources.Names {
		if given[n] {
			m[n] = c.String(n)
		}
	}
	if len(m) == 0 {
		return resources.Limits{}, nil // spare reading the host's CPUs and nodes
	}
	return resources.ParseLimits(m, resources.ReadHost())
}

// givenFlags returns the flags given to c's command, under every name of each. It stands in
// for asking cli.Context.IsSet flag by flag: IsSet finds a flag that was not given by calling
// Names on every flag of the command, and Names runs a regular expression per name, so the
// 30-odd IsSet calls of a set cost about 0.4 ms.
func givenFlags(c *cli.Context) map[string]bool {
	local := map[string]bool{}
	for _, n := range c.LocalFlagNames() {
		local[n] = true
	}
	given := map[string]bool{}
	for _, f := range c.Command.Flags {
		names := f.Names()
		if slices.ContainsFunc(names, func(n string) bool { return local[n] }) {
			for _, n := range names {
				given[n] = true
			}
		}
	}
	return given
}

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "resource usage of VEs (CPU, memory, swap, processes, disk, network, uptime)",
		ArgsUsage: "[ID...]",
		Description: `CPU time and percent (of one CPU; averaged since the VE started, or over --interval),
memory and swap in use, processes (tasks, as OpenVZ counts them), disk space and inodes used
(image layout), bytes received and sent, uptime. Read from the VE's cgroups, its disk image and
its interfaces' counters.

EXAMPLES:
   vectl stats
   vectl stats 101 --json --interval 1s

EXIT STATUS:
   0 printed ([] with --json when there are no VEs); 14 a named VE does not exist`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"},
			&cli.StringFlag{Name: "interval", Usage: "measure CPU percent over this `DURATION` (e.g. 1s)"},
		},
		Action: func(c *cli.Context) error {
			var interval time.Duration
			if v := c.String("interval"); v != "" {
				d, err := parseTimeout(v)
				if err != nil {
					return err
				}
				interval = d
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			st, err := m.Stats(c.Context, c.Args().Slice(), interval)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				out := make([]statsJSON, len(st))
				for i, s := range st {
					out[i] = toStatsJSON(s)
				}
				return writeJSON(c.App.Writer, out)
			}
			t := &table{header: []string{"CTID", "STATUS", "CPU%", "CPUTIME", "MEM", "SWAP", "NPROC", "DISK", "INODES", "NETIN", "NETOUT", "UPTIME"},
				right: []bool{true, false, true, true, true, true, true, true, true, true, true, true}}
			for _, s := range st {
				j := toStatsJSON(s)
				if !s.Running {
					t.add(s.ID, "stopped", "-", "-", "-", "-", "-", orDash(j.DiskUsed, humanSize), orDash(j.InodesUsed, itoa), "-", "-", "-")
					continue
				}
				t.add(s.ID, "running", fmt.Sprintf("%.1f", s.CPUPercent), fmt.Sprintf("%.1fs", s.CPUTime.Seconds()),
					humanSize(s.Usage.MemUsage), humanSize(s.Usage.SwapUsage), itoa(s.Usage.Tasks),
					orDash(j.DiskUsed, humanSize), orDash(j.InodesUsed, itoa),
					humanSize(s.NetIn), humanSize(s.NetOut), s.Uptime.Truncate(time.Second).String())
			}
			return t.write(c.App.Writer, false)
		},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func orDash(v *int64, f func(int64) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

// statsJSON is one VE in stats --json. Counters that do not apply are null.
type statsJSON struct {
	ID          string  `json:"ctid"`
	Running     bool    `json:"running"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPercent  float64 `json:"cpu_percent"`
	MemBytes    int64   `json:"memory_bytes"`
	SwapBytes   int64   `json:"swap_bytes"`
	NumProc     int64   `json:"numproc"`
	DiskUsed    *int64  `json:"disk_used_bytes"`
	DiskTotal   *int64  `json:"disk_total_bytes"`
	InodesUsed  *int64  `json:"disk_inodes_used"`
	InodesTotal *int64  `json:"disk_inodes_total"`
	NetIn       int64   `json:"net_in_bytes"`
	NetOut      int64   `json:"net_out_bytes"`
	Uptime      float64 `json:"uptime_seconds"`
}

func toStatsJSON(s container.Stats) statsJSON {
	j := statsJSON{ID: s.ID, Running: s.Running, CPUSeconds: s.CPUTime.Seconds(), CPUPercent: s.CPUPercent,
		MemBytes: s.Usage.MemUsage, SwapBytes: s.Usage.SwapUsage, NumProc: s.Usage.Tasks,
		NetIn: s.NetIn, NetOut: s.NetOut, Uptime: s.Uptime.Seconds()}
	if d := s.Disk; d != nil {
		j.DiskUsed, j.DiskTotal, j.InodesUsed, j.InodesTotal = &d.Used, &d.Total, &d.InodesUsed, &d.InodesTotal
	}
	return j
}

// ubcRow is one line of vzctl's /proc/user_beancounters: held and maxheld are what the VE
// uses now and at most; barrier and limit its limit; failcnt how often the limit refused it.
// Unknown values are null (the kernel does not keep them for this cgroup version).
type ubcRow struct {
	Resource string `json:"resource"`
	Held     *int64 `json:"held"`
	MaxHeld  *int64 `json:"maxheld"`
	Barrier  *int64 `json:"barrier"`
	Limit    *int64 `json:"limit"`
	Failcnt  *int64 `json:"failcnt"`
}

type ubcVE struct {
	ID        string   `json:"ctid"`
	Resources []ubcRow `json:"resources"`
}

// ubcMax is what /proc/user_beancounters shows for "no limit".
const ubcMax = int64(9223372036854775807)

func ubcRows(s container.Stats) []ubcRow {
	val := func(v int64) *int64 { return &v }
	known := func(v int64) *int64 {
		if v < 0 {
			return nil
		}
		return &v
	}
	lim := func(v int64, unit int64) *int64 {
		if v == resources.Unlimited {
			return val(ubcMax)
		}
		return val(v / unit)
	}
	pages := func(v int64) *int64 {
		if v < 0 {
			return nil
		}
		return val(v / resources.PageSize)
	}
	u := s.Usage
	rows := []ubcRow{
		{"numproc", val(u.Tasks), known(u.TasksMax), lim(u.TasksLimit, 1), lim(u.TasksLimit, 1), val(u.TasksFail)},
		{"physpages", pages(u.MemUsage), pages(u.MemMax), lim(u.MemLimit, resources.PageSize), lim(u.MemLimit, resources.PageSize), val(u.MemFailcnt)},
		{"swappages", pages(u.SwapUsage), pages(u.SwapMax), lim(u.SwapLimit, resources.PageSize), lim(u.SwapLimit, resources.PageSize), known(u.SwapFail)},
		// As in OpenVZ, the failcnt of oomguarpages counts the VE's OOM kills.
		{"oomguarpages", pages(u.MemUsage), pages(u.MemMax), lim(u.MemLimit, resources.PageSize), val(ubcMax), val(u.OOMKills)},
	}
	if d := s.Disk; d != nil {
		rows = append(rows,
			ubcRow{"diskspace", val(d.Used / resources.KiB), nil, val(d.Total / resources.KiB), val(d.Total / resources.KiB), nil},
			ubcRow{"diskinodes", val(d.InodesUsed), nil, val(d.InodesTotal), val(d.InodesTotal), nil})
	}
	return rows
}

func ubcCommand() *cli.Command {
	return &cli.Command{
		Name:      "ubc",
		Usage:     "resource counters in the shape of /proc/user_beancounters",
		ArgsUsage: "[ID...]",
		Description: `For each running VE and limited resource: held (in use now), maxheld (peak),
barrier and limit (the limit) and failcnt (how often the limit refused an allocation), taken
from the kernel's own counters: pids.events for numproc, memory failures for physpages and
swappages, OOM kills for oomguarpages; diskspace (1K blocks) and diskinodes for the image
layout. physpages and swappages count 4 KiB pages; no limit is 9223372036854775807 as in
OpenVZ; "-" (null in JSON) is a value this kernel does not keep.

EXAMPLES:
   vectl ubc 101
   vectl ubc --json

EXIT STATUS:
   0 printed; 14 a named VE does not exist`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			m, err := manager(c)
			if err != nil {
				return err
			}
			st, err := m.Stats(c.Context, c.Args().Slice(), 0)
			if err != nil {
				return err
			}
			ves := []ubcVE{}
			for _, s := range st {
				if s.Running {
					ves = append(ves, ubcVE{ID: s.ID, Resources: ubcRows(s)})
				}
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, ves)
			}
			return writeUBC(c.App.Writer, ves)
		},
	}
}

func writeUBC(w io.Writer, ves []ubcVE) error {
	var b strings.Builder
	b.WriteString("Version: 2.5\n")
	fmt.Fprintf(&b, "%10s  %-12s %20s %20s %20s %20s %20s\n", "uid", "resource", "held", "maxheld", "barrier", "limit", "failcnt")
	num := func(v *int64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatInt(*v, 10)
	}
	for _, ve := range ves {
		for i, r := range ve.Resources {
			uid := ""
			if i == 0 {
				uid = ve.ID + ":"
			}
			fmt.Fprintf(&b, "%10s  %-12s %20s %20s %20s %20s %20s\n", uid, r.Resource,
				num(r.Held), num(r.MaxHeld), num(r.Barrier), num(r.Limit), num(r.Failcnt))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
