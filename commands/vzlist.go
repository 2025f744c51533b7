package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/resources"
)

// This file is the vzlist personality: vectl run under the name vzlist (make install links
// it) prints what vzlist 4.11 prints, field for field, with its options, widths, JSON shape
// and exit statuses. The source of the formats is vzlist's own field table (vzlist.c).

// vzUnlimited is how vzctl writes an unlimited beancounter (LONG_MAX on 64-bit).
const vzUnlimited = math.MaxInt64

// vzVE is one VE as vzlist sees it.
type vzVE struct {
	container.Entry
	st      *container.Stats
	private string
	root    string
	hide    bool
	load    *[3]float64
}

// vzStatus is vzlist's status word: running, stopped, mounted or suspended.
func (v *vzVE) vzStatus() string {
	switch st := v.Status.State(); st {
	case "running", "suspended", "mounted":
		return st
	case "frozen":
		return "running" // OpenVZ's suspended-in-place VE is still running
	}
	return "stopped"
}

func (v *vzVE) cfg() *container.Config {
	if v.Config == nil {
		return &container.Config{}
	}
	return v.Config
}

// vzField is one row of vzlist's field table.
type vzField struct {
	name, hdr string
	// width is the column width: negative left-aligns, as printf's %-32s.
	width int
	// trim: a long value is cut to the column unless the field is last or -t is given.
	trim bool
	// index is the beancounter or quota suffix (.m .b .l .f, .s .h); suffixed fields are
	// not available in JSON.
	index int
	// usage: the field needs the VE's live counters.
	usage bool
	text  func(*vzVE, int) string // the value as the table shows it ("-" when none)
	json  func(*vzVE, int) string // the value as JSON
	cmp   func(a, b *vzVE, index int) int
}

func vzStr(get func(*container.Config) string) (func(*vzVE, int) string, func(*vzVE, int) string, func(a, b *vzVE, _ int) int) {
	return func(v *vzVE, _ int) string {
			if s := get(v.cfg()); s != "" {
				return s
			}
			return "-"
		}, func(v *vzVE, _ int) string {
			if s := get(v.cfg()); s != "" {
				return jsonString(s)
			}
			return "null"
		}, func(a, b *vzVE, _ int) int {
			return cmpNullable(get(a.cfg()), get(b.cfg()), "")
		}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// cmpNullable orders missing values (equal to none) first, as vzlist does.
func cmpNullable[T int64 | float64 | string](a, b, none T) int {
	switch {
	case a == b:
		return 0
	case a == none:
		return -1
	case b == none:
		return 1
	case a < b:
		return -1
	}
	return 1
}

// vzID is the VE's id as a number when it is one (vzctl's CTID), else the name-like id.
func vzID(v *vzVE) (int64, bool) {
	n, err := strconv.ParseInt(v.Status.ID, 10, 64)
	return n, err == nil
}

func cmpID(a, b *vzVE) int {
	na, oka := vzID(a)
	nb, okb := vzID(b)
	switch {
	case oka && okb:
		return cmpNullable(na, nb, -1)
	case oka:
		return -1
	case okb:
		return 1
	}
	return strings.Compare(a.Status.ID, b.Status.ID)
}

func vzAddrs(list []string) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		a, _, _ = strings.Cut(a, "/")
		out = append(out, a)
	}
	return out
}

func vzList(get func(*vzVE) []string) (func(*vzVE, int) string, func(*vzVE, int) string, func(a, b *vzVE, _ int) int) {
	return func(v *vzVE, _ int) string {
			if l := get(v); len(l) > 0 {
				return strings.Join(l, " ")
			}
			return "-"
		}, func(v *vzVE, _ int) string {
			l := get(v)
			q := make([]string, len(l))
			for i, s := range l {
				q[i] = jsonString(s)
			}
			return "[" + strings.Join(q, ", ") + "]"
		}, func(a, b *vzVE, _ int) int {
			return cmpNullable(strings.Join(get(a), " "), strings.Join(get(b), " "), "")
		}
}

// ubc is one beancounter: held, maxheld, barrier, limit, failcnt. known says which of the
// counters vectl measures on this kernel.
type ubc struct {
	v     [5]int64
	known [5]bool
}

const pageSize = resources.PageSize

func pages(b int64) int64 {
	if b < 0 {
		return 0
	}
	return b / pageSize
}

// limitOr is a configured limit in vzctl's unit (div bytes per unit), or unlimited.
func limitOr(p *int64, div int64) int64 {
	if p == nil || *p <= 0 || *p == resources.Unlimited {
		return vzUnlimited
	}
	return *p / div
}

// vzUBC maps a beancounter onto what vectl has: its limit from the VE's config and, while
// it runs, its usage from the VE's cgroup (numproc from pids, physpages and swappages from
// memory). The others have no counter on a stock kernel: their usage reads 0 (JSON) or "-".
func vzUBC(v *vzVE, name string) ubc {
	var u ubc
	l := v.cfg().Resources
	u.v[2], u.v[3] = vzUnlimited, vzUnlimited
	u.known[2], u.known[3] = true, true
	running := v.Status.Running && v.st != nil
	use := resources.Usage{}
	if running {
		use = v.st.Usage
	}
	switch name {
	case "numproc":
		u.v[2] = limitOr(l.NumProc, 1)
		u.v[3] = u.v[2]
		if running {
			u.v[0], u.v[1], u.v[4] = use.Tasks, max(use.TasksMax, use.Tasks), max(use.TasksFail, 0)
			u.known[0], u.known[1], u.known[4] = true, use.TasksMax >= 0, use.TasksFail >= 0
		}
	case "physpages":
		u.v[2], u.v[3] = 0, limitOr(l.RAM, pageSize)
		if running {
			u.v[0], u.v[1], u.v[4] = pages(use.MemUsage), pages(max(use.MemMax, use.MemUsage)), max(use.MemFailcnt, 0)
			u.known[0], u.known[1], u.known[4] = true, true, true
		}
	case "swappages":
		u.v[2], u.v[3] = 0, 0 // no swap unless set
		if l.Swap != nil {
			u.v[3] = limitOr(l.Swap, pageSize)
		}
		if running {
			u.v[0], u.v[1], u.v[4] = pages(use.SwapUsage), pages(max(use.SwapMax, use.SwapUsage)), max(use.SwapFail, 0)
			u.known[0], u.known[1], u.known[4] = true, use.SwapMax >= 0, use.SwapFail >= 0
		}
	case "numfile":
		if l.NumFile != nil && *l.NumFile < vzUnlimited {
			u.v[2], u.v[3] = int64(*l.NumFile), int64(*l.NumFile)
		}
	default:
		if v, ok := l.UBC[name]; ok {
			b, lim, _ := strings.Cut(v, ":")
			u.v[2], _ = strconv.ParseInt(b, 10, 64)
			u.v[3], _ = strconv.ParseInt(lim, 10, 64)
		}
	}
	return u
}

var ubcNames = []struct{ name, hdr string }{
	{"kmemsize", "KMEMSIZE"}, {"lockedpages", "LOCKEDP"}, {"privvmpages", "PRIVVMP"},
	{"shmpages", "SHMP"}, {"numproc", "NPROC"}, {"physpages", "PHYSP"}, {"vmguarpages", "VMGUARP"},
	{"oomguarpages", "OOMGUARP"}, {"numtcpsock", "NTCPSOCK"}, {"numflock", "NFLOCK"},
	{"numpty", "NPTY"}, {"numsiginfo", "NSIGINFO"}, {"tcpsndbuf", "TCPSNDB"},
	{"tcprcvbuf", "TCPRCVB"}, {"othersockbuf", "OTHSOCKB"}, {"dgramrcvbuf", "DGRAMRB"},
	{"numothersock", "NOTHSOCK"}, {"dcachesize", "DCACHESZ"}, {"numfile", "NFILE"},
	{"numiptent", "NIPTENT"}, {"swappages", "SWAPP"},
}

func ubcFields(name, hdr string) []vzField {
	suffix := []string{"", ".m", ".b", ".l", ".f"}
	out := make([]vzField, 0, 5)
	for i, s := range suffix {
		out = append(out, vzField{
			name: name + s, hdr: hdr + strings.ToUpper(s), width: 10, index: i, usage: true,
			text: func(v *vzVE, i int) string {
				u := vzUBC(v, name)
				if !u.known[i] || (!v.Status.Running && (i == 0 || i == 1 || i == 4)) {
					return "-"
				}
				return strconv.FormatInt(u.v[i], 10)
			},
			json: func(v *vzVE, _ int) string {
				u := vzUBC(v, name)
				return fmt.Sprintf("{\n      \"held\": %d,\n      \"maxheld\": %d,\n      \"barrier\": %d,\n      \"limit\": %d,\n      \"failcnt\": %d\n    }",
					u.v[0], u.v[1], u.v[2], u.v[3], u.v[4])
			},
			cmp: func(a, b *vzVE, i int) int {
				return cmpNullable(vzUBC(a, name).v[i], vzUBC(b, name).v[i], -1)
			},
		})
	}
	return out
}

// vzQuota is diskspace (1K blocks) or diskinodes: usage, soft and hard limit. nil when the
// VE has neither a limit nor a measured usage.
func vzQuota(v *vzVE, inodes bool) *[3]int64 {
	l := v.cfg().Resources
	var q [3]int64
	have := false
	lim := l.DiskSpace
	div := int64(resources.KiB)
	if inodes {
		lim, div = l.DiskInodes, 1
	}
	if lim != nil && *lim > 0 && *lim != resources.Unlimited {
		q[1], q[2] = *lim/div, *lim/div
		have = true
	}
	if v.st != nil && v.st.Disk != nil {
		if inodes {
			q[0] = v.st.Disk.InodesUsed
		} else {
			q[0] = v.st.Disk.Used / resources.KiB
		}
		have = true
	}
	if !have {
		return nil
	}
	return &q
}

func quotaFields(name, hdr string, inodes bool) []vzField {
	suffix := []string{"", ".s", ".h"}
	out := make([]vzField, 0, 3)
	for i, s := range suffix {
		out = append(out, vzField{
			name: name + s, hdr: hdr + strings.ToUpper(s), width: 10, index: i, usage: true,
			text: func(v *vzVE, i int) string {
				q := vzQuota(v, inodes)
				if q == nil || (i == 0 && q[0] == 0) {
					return "-"
				}
				return strconv.FormatInt(q[i], 10)
			},
			json: func(v *vzVE, _ int) string {
				q := vzQuota(v, inodes)
				if q == nil {
					return "null"
				}
				return fmt.Sprintf("{\n      \"usage\": %d,\n      \"softlimit\": %d,\n      \"hardlimit\": %d\n    }", q[0], q[1], q[2])
			},
			cmp: func(a, b *vzVE, i int) int {
				qa, qb := vzQuota(a, inodes), vzQuota(b, inodes)
				va, vb := int64(-1), int64(-1)
				if qa != nil {
					va = qa[i]
				}
				if qb != nil {
					vb = qb[i]
				}
				return cmpNullable(va, vb, -1)
			},
		})
	}
	return out
}

// vzCPU is the VE's cpulimit and cpuunits: configured, or the effective defaults while it
// runs; nil for a stopped VE with neither set.
func vzCPU(v *vzVE) *[2]uint64 {
	l := v.cfg().Resources
	if l.CPULimit == nil && l.CPUUnits == nil && !v.Status.Running {
		return nil
	}
	c := [2]uint64{0, 1000}
	if l.CPULimit != nil {
		c[0] = *l.CPULimit
	}
	if l.CPUUnits != nil {
		c[1] = *l.CPUUnits
	}
	return &c
}

func cpuField(name, hdr string, k int) vzField {
	return vzField{name: name, hdr: hdr, width: 7,
		text: func(v *vzVE, _ int) string {
			if c := vzCPU(v); c != nil {
				return strconv.FormatUint(c[k], 10)
			}
			return "-"
		},
		json: func(v *vzVE, _ int) string {
			if c := vzCPU(v); c != nil {
				return strconv.FormatUint(c[k], 10)
			}
			return "null"
		},
		cmp: func(a, b *vzVE, _ int) int {
			ca, cb := vzCPU(a), vzCPU(b)
			va, vb := int64(-1), int64(-1)
			if ca != nil {
				va = int64(ca[k])
			}
			if cb != nil {
				vb = int64(cb[k])
			}
			return cmpNullable(va, vb, -1)
		},
	}
}

// intField shows a number, or "-" below min; JSON shows 0 then (vzlist's io fields).
func intField(name, hdr string, width int, min int64, get func(*vzVE) int64) vzField {
	return vzField{name: name, hdr: hdr, width: width,
		text: func(v *vzVE, _ int) string {
			if n := get(v); n >= min {
				return strconv.FormatInt(n, 10)
			}
			return "-"
		},
		json: func(v *vzVE, _ int) string { return strconv.FormatInt(max(get(v), 0), 10) },
		cmp:  func(a, b *vzVE, _ int) int { return cmpNullable(get(a), get(b), math.MinInt64) },
	}
}

func boolField(name, hdr string, width int, get func(*vzVE) bool) vzField {
	return vzField{name: name, hdr: hdr, width: width,
		text: func(v *vzVE, _ int) string {
			if get(v) {
				return "yes"
			}
			return "no"
		},
		json: func(v *vzVE, _ int) string { return strconv.FormatBool(get(v)) },
	}
}

// vzUptime is vzlist's uptime: 000d00h:00m:00s.
func vzUptime(sec float64) string {
	days := uint(sec / 86400)
	mins := uint(sec / 60)
	hours := (mins / 60) % 24
	mins %= 60
	secs := uint(sec - float64(60*mins+3600*hours+86400*days))
	return fmt.Sprintf("%03dd%02dh:%02dm:%02ds", days, hours, mins, secs)
}

func vzUptimeSec(v *vzVE) float64 {
	if v.st == nil || !v.st.Running {
		return -1
	}
	return v.st.Uptime.Seconds()
}

func ptrOr[T any](p *T, none T) T {
	if p == nil {
		return none
	}
	return *p
}

// vzFields is vzlist 4.11's field table, in its order (list -L and the JSON output follow it).
var vzFields = sync.OnceValue(func() []vzField {
	ctid := vzField{name: "ctid", hdr: "CTID", width: 10,
		text: func(v *vzVE, _ int) string { return v.Status.ID },
		json: func(v *vzVE, _ int) string {
			if n, ok := vzID(v); ok {
				return strconv.FormatInt(n, 10)
			}
			return jsonString(v.Status.ID)
		},
		cmp: func(a, b *vzVE, _ int) int { return cmpID(a, b) },
	}
	veid, vpsid := ctid, ctid
	veid.name, vpsid.name = "veid", "vpsid"
	fs := []vzField{ctid, veid, vpsid}
	str := func(name, hdr string, width int, get func(*container.Config) string) vzField {
		t, j, c := vzStr(get)
		return vzField{name: name, hdr: hdr, width: width, trim: true, text: t, json: j, cmp: c}
	}
	path := func(name, hdr string, get func(*vzVE) string) vzField {
		return vzField{name: name, hdr: hdr, width: -32, trim: true,
			text: func(v *vzVE, _ int) string { return get(v) },
			json: func(v *vzVE, _ int) string { return jsonString(get(v)) },
			cmp:  func(a, b *vzVE, _ int) int { return strings.Compare(get(a), get(b)) },
		}
	}
	none := func(*container.Config) string { return "" }
	fs = append(fs,
		path("private", "PRIVATE", func(v *vzVE) string { return v.private }),
		path("root", "ROOT", func(v *vzVE) string { return v.root }),
		str("mount_opts", "MOUNT_OPTS", -16, none),
		str("origin_sample", "ORIGIN_SAMPLE", -32, none),
		str("hostname", "HOSTNAME", -32, func(c *container.Config) string { return c.Hostname }),
		str("name", "NAME", -32, func(c *container.Config) string { return c.Name }),
	)
	smart := vzField{name: "smart_name", hdr: "SMARTNAME", width: 10, trim: true,
		text: func(v *vzVE, _ int) string {
			if n := v.cfg().Name; n != "" {
				return n
			}
			return v.Status.ID
		},
		json: func(v *vzVE, _ int) string {
			if n := v.cfg().Name; n != "" {
				return jsonString(n)
			}
			return ctid.json(v, 0)
		},
		cmp: func(a, b *vzVE, _ int) int { return cmpNullable(a.cfg().Name, b.cfg().Name, "") },
	}
	fs = append(fs, smart,
		str("description", "DESCRIPTION", -32, func(c *container.Config) string { return c.Description }),
		str("ostemplate", "OSTEMPLATE", -32, func(c *container.Config) string { return c.OSTemplate }),
	)
	list := func(name, hdr string, get func(*vzVE) []string) vzField {
		t, j, c := vzList(get)
		return vzField{name: name, hdr: hdr, width: -15, trim: true, text: t, json: j, cmp: c}
	}
	fs = append(fs,
		list("ip", "IP_ADDR", func(v *vzVE) []string { return vzAddrs(v.IPs) }),
		list("nameserver", "NAMESERVER", func(v *vzVE) []string { return v.cfg().Nameservers }),
		list("searchdomain", "SEARCHDOMAIN", func(v *vzVE) []string { return v.cfg().SearchDomains }),
		vzField{name: "status", hdr: "STATUS", width: -9,
			text: func(v *vzVE, _ int) string { return v.vzStatus() },
			json: func(v *vzVE, _ int) string { return jsonString(v.vzStatus()) },
			cmp: func(a, b *vzVE, _ int) int {
				order := map[string]int{"running": 0, "stopped": 1, "mounted": 2, "suspended": 3}
				if d := order[a.vzStatus()] - order[b.vzStatus()]; d != 0 {
					return d
				}
				return cmpID(a, b)
			}},
	)
	for _, u := range ubcNames {
		fs = append(fs, ubcFields(u.name, u.hdr)...)
	}
	fs = append(fs, quotaFields("diskspace", "DSPACE", false)...)
	fs = append(fs, quotaFields("diskinodes", "DINODES", true)...)
	fs = append(fs,
		vzField{name: "laverage", hdr: "LAVERAGE", width: 14, usage: true,
			text: func(v *vzVE, _ int) string {
				if la := vzLoad(v); la != nil {
					return fmt.Sprintf("%1.2f/%1.2f/%1.2f", la[0], la[1], la[2])
				}
				return "-"
			},
			json: func(v *vzVE, _ int) string {
				if la := vzLoad(v); la != nil {
					return fmt.Sprintf("[%1.2f, %1.2f, %1.2f]", la[0], la[1], la[2])
				}
				return "null"
			},
			cmp: func(a, b *vzVE, _ int) int {
				la, lb := vzLoad(a), vzLoad(b)
				switch {
				case la == nil || lb == nil:
					return cmpNullable(boolInt(la != nil), boolInt(lb != nil), 0)
				}
				for i := range la {
					if c := cmpNullable(la[i], lb[i], -1); c != 0 {
						return c
					}
				}
				return 0
			}},
		vzField{name: "uptime", hdr: "UPTIME", width: 15, usage: true,
			text: func(v *vzVE, _ int) string {
				if s := vzUptimeSec(v); s >= 0 {
					return vzUptime(s)
				}
				return "-"
			},
			json: func(v *vzVE, _ int) string { return fmt.Sprintf("%.3f", max(vzUptimeSec(v), 0)) },
			// vzlist sorts uptime longest first.
			cmp: func(a, b *vzVE, _ int) int { return cmpNullable(-vzUptimeSec(a), -vzUptimeSec(b), 1) },
		},
		cpuField("cpulimit", "CPULIM", 0),
		cpuField("cpuunits", "CPUUNI", 1),
		intField("cpus", "CPUS", 5, 1, func(v *vzVE) int64 { return int64(ptrOr(v.cfg().Resources.CPUs, 0)) }),
		intField("ioprio", "IOP", 3, 0, func(v *vzVE) int64 { return int64(ptrOr(v.cfg().Resources.IOPrio, -1)) }),
		intField("iolimit", "IOLIMIT", 10, 1, func(v *vzVE) int64 { return ptrOr(v.cfg().Resources.IOLimit, 0) }),
		intField("iopslimit", "IOPS", 4, 1, func(v *vzVE) int64 { return ptrOr(v.cfg().Resources.IOPSLimit, 0) }),
		boolField("onboot", "ONBOOT", 6, func(v *vzVE) bool { return v.cfg().OnBoot }),
		func() vzField {
			f := intField("bootorder", "BOOTORDER", 10, 1, func(v *vzVE) int64 { return int64(v.cfg().BootOrder) })
			f.json = func(v *vzVE, _ int) string {
				if n := v.cfg().BootOrder; n > 0 {
					return strconv.Itoa(n)
				}
				return "null"
			}
			return f
		}(),
		vzField{name: "layout", hdr: "LAYOUT", width: -6,
			text: func(v *vzVE, _ int) string { return dash(v.cfg().Layout) },
			json: func(v *vzVE, _ int) string { return jsonString(v.cfg().Layout) },
			cmp:  func(a, b *vzVE, _ int) int { return strings.Compare(a.cfg().Layout, b.cfg().Layout) },
		},
		vzField{name: "features", hdr: "FEATURES", width: -15, trim: true,
			text: func(v *vzVE, _ int) string { return dash(container.FormatFeatures(v.cfg().Features)) },
			json: func(v *vzVE, _ int) string { return onOffJSON(v.cfg().Features) },
		},
		boolField("vswap", "VSWAP", 5, func(v *vzVE) bool { return limitOr(v.cfg().Resources.RAM, 1) != vzUnlimited }),
		boolField("disabled", "DISABL", 6, func(v *vzVE) bool { return v.cfg().Disabled }),
		vzField{name: "vm_overcommit", hdr: "VM_OVC", width: 6,
			text: func(*vzVE, int) string { return "-" },
			json: func(*vzVE, int) string { return "0" },
		},
		vzField{name: "netfilter", hdr: "NETFILTER", width: -9,
			text: func(*vzVE, int) string { return "full" },
			json: func(*vzVE, int) string { return `"full"` },
		},
		vzField{name: "capability", hdr: "CAPABILITY", width: -15,
			text: func(v *vzVE, _ int) string { return dash(container.FormatCapabilities(v.cfg().Capabilities)) },
			json: func(v *vzVE, _ int) string { return onOffJSON(v.cfg().Capabilities) },
		},
	)
	return fs
})

// onOffJSON is vzlist's JSON of features and capabilities: {"name": true, ...}.
func onOffJSON(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %t", jsonString(k), m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// vzLoad is the VE's load average, as its monitor keeps it (nil for a VE that is not
// running, or runs without a monitor).
func vzLoad(v *vzVE) *[3]float64 {
	if v.load == nil || !v.Status.Running {
		return nil
	}
	return v.load
}

func vzFieldIndex(name string) int {
	for i, f := range vzFields() {
		if f.name == name {
			return i
		}
	}
	return -1
}

const vzlistUsage = `Usage:	vzlist [-a | -S] [-n] [-H] [-o field[,field...] | -1] [-s [-]field]
	       [-h pattern] [-N pattern] [-d pattern] [CTID [CTID ...]]
	vzlist -L | --list

Options:
	-a, --all		list all containers
	-S, --stopped		list stopped containers
	-n, --name		display containers' names
	-H, --no-header		suppress columns header
	-t, --no-trim		do not trim long values
	-j, --json		output in JSON format
	-o, --output		output only specified fields
	-1			synonym for -H -octid
	-s, --sort		sort by the specified field
				('-field' to reverse sort order)
	-h, --hostname		filter CTs by hostname pattern
	-N, --name_filter	filter CTs by name pattern
	-d, --description	filter CTs by description pattern
	-L, --list		get possible field names
`

var vzlistLongs = []longOpt{
	{"no-header", false, "H"}, {"no-trim", false, "t"}, {"stopped", false, "S"},
	{"all", false, "a"}, {"name", false, "n"}, {"json", false, "j"},
	{"name_filter", true, "N"}, {"hostname", true, "h"}, {"description", true, "d"},
	{"output", true, "o"}, {"sort", true, "s"}, {"list", false, "L"}, {"help", false, "e"},
}

// vzlistOptions is a parsed vzlist command line.
type vzlistOptions struct {
	all, stopped, header, trim, json bool
	fields                           []int
	sortField                        int
	sortRev                          bool
	hostPat, namePat, descPat        string
	ids                              []string
}

// VzlistMain runs the vzlist personality with args (args[0] is the program name).
func VzlistMain(args []string, s Streams) int {
	opts, rest, err := getoptLong("vzlist", args[1:], "HtSanjN:h:d:o:s:Le1", vzlistLongs)
	if err != nil {
		fmt.Fprintln(s.Err, err)
		io.WriteString(s.Out, vzlistUsage)
		return 1
	}
	o := vzlistOptions{header: true, trim: true}
	fieldSpec, haveSpec := "", false
	for _, op := range opts {
		switch op.key {
		case "S":
			o.stopped = true
		case "t":
			o.trim = false
		case "H":
			o.header = false
		case "L":
			for _, f := range vzFields() {
				fmt.Fprintf(s.Out, "%-15s %-15s\n", f.name, f.hdr)
			}
			return 0
		case "a":
			o.all = true
		case "h":
			o.hostPat = op.arg
		case "d":
			o.descPat = op.arg
		case "N":
			o.namePat = op.arg
		case "o":
			fieldSpec, haveSpec = op.arg, true
		case "s":
			p := op.arg
			if strings.HasPrefix(p, "-") {
				p, o.sortRev = p[1:], true
			}
			if o.sortField = vzFieldIndex(p); o.sortField < 0 {
				fmt.Fprintf(s.Err, "Invalid sort field name: %s\n", op.arg)
				return 1
			}
		case "1":
			fieldSpec, haveSpec, o.header = "veid", true, false
		case "n":
			fieldSpec, haveSpec = "smart_name,numproc,status,ip,hostname", true
		case "j":
			o.json = true
		default: // --help
			io.WriteString(s.Out, vzlistUsage)
			return 1
		}
	}
	for _, a := range rest {
		if container.ValidateID(a) != nil {
			fmt.Fprintf(s.Err, "CT ID %s is invalid.\n", a)
			return 1
		}
	}
	o.ids = rest
	if !haveSpec && !o.json {
		fieldSpec, haveSpec = "ctid,numproc,status,ip,hostname", true
	}
	if haveSpec {
		for _, name := range strings.Split(fieldSpec, ",") {
			if len(name) > 30 {
				fmt.Fprintf(s.Err, "Invalid field: %s\n", name)
				return 1
			}
			i := vzFieldIndex(name)
			if i < 0 {
				fmt.Fprintf(s.Err, "Unknown field: %s\n", name)
				return 1
			}
			if o.json && vzFields()[i].index != 0 {
				fmt.Fprintf(s.Err, "Field `%s' is not available in JSON output\n", name)
				return 1
			}
			o.fields = append(o.fields, i)
		}
	}
	if geteuid() != 0 {
		fmt.Fprintln(s.Err, "This program can only be run under root.")
		return 1
	}
	var code int
	err = readingManager(s, func(ctx context.Context, m *container.Manager) error {
		code = runVzlist(ctx, m, o, s)
		return nil
	})
	if err != nil {
		fmt.Fprintln(s.Err, err)
		return 1
	}
	return code
}

func runVzlist(ctx context.Context, m *container.Manager, o vzlistOptions, s Streams) int {
	entries, err := m.List(ctx)
	if err != nil {
		fmt.Fprintln(s.Err, err)
		return 1
	}
	retake := false
	for _, e := range entries {
		if !e.Status.Exist || e.Problem != "" || e.Status.Incomplete {
			continue
		}
		// Every VE listed has its vzctl config (clients such as libvirt read it), and
		// what a client changed there is taken in first.
		if p := m.VZConfPath(e.Status.ID); p != "" {
			if _, err := os.Stat(p); err != nil {
				if err := m.SyncVZConf(e.Status.ID, nil); err != nil {
					fmt.Fprintf(s.Err, "Warning: CT %s: %v\n", e.Status.ID, err)
				}
			} else {
				code, took := vzConfIntake(m, Streams{In: s.In, Out: io.Discard, Err: s.Err}, e.Status.ID, true)
				if code != 0 {
					return code
				}
				retake = retake || took
			}
		}
	}
	if retake {
		if entries, err = m.List(ctx); err != nil {
			fmt.Fprintln(s.Err, err)
			return 1
		}
	}
	var ves []*vzVE
	want := map[string]bool{}
	for _, id := range o.ids {
		want[id] = true
	}
	for _, e := range entries {
		if len(want) > 0 && !want[e.Status.ID] && (e.Config == nil || !want[e.Config.Name]) {
			continue
		}
		if len(want) == 0 && !o.all && !o.stopped && !e.Status.Running {
			continue
		}
		if e.Problem != "" {
			fmt.Fprintf(s.Err, "Warning: CT %s: %s\n", e.Status.ID, e.Problem)
		}
		v := &vzVE{Entry: e, private: m.PrivateDir(e.Status.ID), root: m.RootDir(e.Status.ID)}
		if la, ok := m.LoadAvg(e.Status.ID); ok {
			v.load = &la
		}
		ves = append(ves, v)
	}
	if len(ves) == 0 {
		if o.json {
			io.WriteString(s.Out, "[]\n")
		} else {
			io.WriteString(s.Err, "Container(s) not found\n")
		}
		// Listing nothing is not an error unless CTs were named (vzlist's bug #2149).
		if len(o.ids) == 0 {
			return 0
		}
		return 1
	}
	fields := o.fields
	if o.json && fields == nil {
		for i, f := range vzFields() {
			if f.index == 0 {
				fields = append(fields, i)
			}
		}
	}
	needUsage := vzFields()[o.sortField].usage
	for _, i := range fields {
		needUsage = needUsage || vzFields()[i].usage
	}
	if needUsage {
		var ids []string
		for _, v := range ves {
			if v.Problem == "" {
				ids = append(ids, v.Status.ID)
			}
		}
		if len(ids) > 0 {
			st, err := m.Stats(ctx, ids, 0)
			if err != nil {
				fmt.Fprintln(s.Err, err)
				return 1
			}
			byID := map[string]*container.Stats{}
			for i := range st {
				byID[st[i].ID] = &st[i]
			}
			for _, v := range ves {
				v.st = byID[v.Status.ID]
			}
		}
	}
	for _, v := range ves {
		c := v.cfg()
		v.hide = !vzMatch(o.hostPat, c.Hostname) || !vzMatch(o.namePat, c.Name) || !vzMatch(o.descPat, c.Description)
	}
	sort.SliceStable(ves, func(i, j int) bool { return cmpID(ves[i], ves[j]) < 0 })
	if f := vzFields()[o.sortField]; o.sortField != 0 && f.cmp != nil {
		sort.SliceStable(ves, func(i, j int) bool { return f.cmp(ves[i], ves[j], f.index) < 0 })
	}
	if o.sortRev {
		for i, j := 0, len(ves)-1; i < j; i, j = i+1, j-1 {
			ves[i], ves[j] = ves[j], ves[i]
		}
	}
	var b strings.Builder
	if o.json {
		writeVzlistJSON(&b, ves, fields, o.stopped)
	} else {
		if o.header {
			cells := make([]string, len(fields))
			for k, i := range fields {
				cells[k] = pad(vzFields()[i].hdr, vzFields()[i].width)
			}
			b.WriteString(strings.TrimRight(strings.Join(cells, " "), " \t") + "\n")
		}
		for _, v := range ves {
			if v.hide || (o.stopped && v.Status.Running) {
				continue
			}
			b.WriteString(vzlistLine(v, fields, o.trim) + "\n")
		}
	}
	io.WriteString(s.Out, b.String())
	return 0
}

// vzlistLine is one VE's row: each field padded to its column and, unless it is the last
// field or trimming is off, a long value cut to the column (the first address only for
// lists), then trailing blanks dropped.
func vzlistLine(v *vzVE, fields []int, trim bool) string {
	cells := make([]string, len(fields))
	for k, i := range fields {
		f := vzFields()[i]
		t := f.text(v, f.index)
		last := k == len(fields)-1
		cut := trim && !last && f.trim
		if cut && f.width == -15 {
			t, _, _ = strings.Cut(t, " ")
		}
		t = pad(t, f.width)
		if w := abs(f.width); cut && len(t) > w {
			t = t[:w]
		}
		cells[k] = t
	}
	return strings.TrimRight(strings.Join(cells, " "), " \t")
}

func writeVzlistJSON(b *strings.Builder, ves []*vzVE, fields []int, stopped bool) {
	b.WriteString("[")
	first := true
	for _, v := range ves {
		if v.hide || (stopped && v.Status.Running) {
			continue
		}
		if !first {
			b.WriteString(",")
		}
		first = false
		b.WriteString("\n  {")
		for k, i := range fields {
			if k > 0 {
				b.WriteString(",")
			}
			f := vzFields()[i]
			fmt.Fprintf(b, "\n    %q: %s", f.name, f.json(v, f.index))
		}
		b.WriteString("\n  }")
	}
	b.WriteString("\n]\n")
}

func pad(s string, width int) string {
	if width < 0 {
		return fmt.Sprintf("%-*s", -width, s)
	}
	return fmt.Sprintf("%*s", width, s)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// vzMatch is vzlist's filter: no pattern matches everything, a VE without the value
// matches no pattern, else a shell wildcard match.
func vzMatch(pattern, value string) bool {
	if pattern == "" {
		return true
	}
	if value == "" {
		return false
	}
	ok, err := filepath.Match(pattern, value)
	return err == nil && ok
}
