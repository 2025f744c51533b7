package resources

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits are a VE's resource limits with vzctl's names. A nil field is not set (no limit,
// or the default); the values are kept in the units the kernel uses (bytes, percent, count).
type Limits struct {
	CPUUnits   *uint64 `json:"cpuunits,omitempty"`   // CPU weight; vzctl's default is 1000
	CPULimit   *uint64 `json:"cpulimit,omitempty"`   // percent of one CPU; 0 = no limit
	CPUs       *uint64 `json:"cpus,omitempty"`       // number of CPUs worth of time; 0 = no limit
	CPUMask    string  `json:"cpumask,omitempty"`    // CPUs the VE may run on ("0-1,3" or "all")
	NodeMask   string  `json:"nodemask,omitempty"`   // NUMA memory nodes
	RAM        *int64  `json:"ram,omitempty"`        // bytes; Unlimited
	Swap       *int64  `json:"swap,omitempty"`       // bytes; Unlimited
	NumProc    *int64  `json:"numproc,omitempty"`    // tasks; Unlimited
	NumFile    *uint64 `json:"numfile,omitempty"`    // RLIMIT_NOFILE of the init
	DiskSpace  *int64  `json:"diskspace,omitempty"`  // bytes
	DiskInodes *int64  `json:"diskinodes,omitempty"` // inodes
	IOPrio     *int    `json:"ioprio,omitempty"`     // 0..7, as vzctl
	IOLimit    *int64  `json:"iolimit,omitempty"`    // bytes per second; 0 = no limit
	IOPSLimit  *int64  `json:"iopslimit,omitempty"`  // operations per second; 0 = no limit
	// UBC holds the stored-only beancounters (UBCNames): "barrier:limit" in the
	// parameter's unit (UBCUnit), UBCUnlimited for unlimited.
	UBC map[string]string `json:"ubc,omitempty"`
}

// Host describes what the host has, for validation.
type Host struct {
	CPUs     int // online CPUs
	Nodes    int // NUMA nodes
	NoFileHi uint64
}

// Names lists the parameters in the order vzctl documents them, then the beancounters
// vectl stores without enforcing them (UBCNames).
var Names = append([]string{"cpuunits", "cpulimit", "cpus", "cpumask", "nodemask", "ram", "swap",
	"numproc", "numfile", "diskspace", "diskinodes", "ioprio", "iolimit", "iopslimit"}, UBCNames...)

// UBCNames are OpenVZ's user beancounters that no control of a stock kernel enforces:
// vectl takes them in vzctl's syntax (barrier[:limit] with K M G T, P for pages, B for
// bytes), keeps them, and shows them in vzlist, ubc and the vzctl config; vzctl itself maps
// them onto kernel memory accounting that cgroup v2 no longer limits separately. The
// beancounters a stock kernel has are ram (physpages), swap (swappages), numproc and numfile.
var UBCNames = []string{"kmemsize", "lockedpages", "privvmpages", "shmpages", "vmguarpages",
	"oomguarpages", "numtcpsock", "numflock", "numpty", "numsiginfo", "tcpsndbuf", "tcprcvbuf",
	"othersockbuf", "dgramrcvbuf", "numothersock", "dcachesize", "numiptent", "avnumproc"}

// IsUBC reports whether name is a stored-only beancounter.
func IsUBC(name string) bool { return slices.Contains(UBCNames, name) }

// UBCUnit is the unit a beancounter counts in: PageSize for the *pages ones, 1 for bytes
// and for counts.
func UBCUnit(name string) int64 {
	if strings.HasSuffix(name, "pages") {
		return PageSize
	}
	return 1
}

// UBCUnlimited is how vzctl writes an unlimited beancounter (LONG_MAX).
const UBCUnlimited int64 = math.MaxInt64

// ParseUBC parses a beancounter value as vzctl does: barrier[:limit], each a number with an
// optional suffix (K, M, G, T; P pages; B bytes), converted to the parameter's unit, or
// "unlimited"; without a limit the limit is the barrier.
func ParseUBC(name, value string) (barrier, limit int64, err error) {
	one := func(v string) (int64, error) {
		if v == "unlimited" {
			return UBCUnlimited, nil
		}
		mult := int64(0)
		if n := len(v); n > 0 {
			switch upper(v[n-1]) {
			case 'K':
				mult = KiB
			case 'M':
				mult = MiB
			case 'G':
				mult = GiB
			case 'T':
				mult = TiB
			case 'P':
				mult = PageSize
			case 'B':
				mult = 1
			}
			if mult != 0 {
				v = v[:n-1]
			}
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil || v == "" || v[0] == '+' {
			return 0, fmt.Errorf("not a number")
		}
		if mult == 0 {
			return int64(n), nil
		}
		unit := UBCUnit(name)
		if n > 0 && uint64(mult) > uint64(math.MaxInt64)/n {
			return UBCUnlimited, nil
		}
		return int64(n) * mult / unit, nil
	}
	b, l, pair := strings.Cut(strings.TrimSpace(value), ":")
	if barrier, err = one(b); err == nil {
		limit = barrier
		if pair {
			limit, err = one(l)
		}
	}
	if err != nil {
		return 0, 0, bad(name, value, "use barrier[:limit], each a number with K, M, G, T, P (pages) or B (bytes), or unlimited")
	}
	if barrier > limit {
		return 0, 0, bad(name, value, "the barrier is above the limit")
	}
	return barrier, limit, nil
}

// Live reports whether a parameter can change on a running VE. numfile is the init's
// rlimit (vectl cannot raise another process's hard limit) and takes a restart.
func Live(name string) bool { return name != "numfile" }

func bad(name, value, why string) error {
	return fmt.Errorf("%w: --%s %q: %s", ErrInvalid, name, value, why)
}

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

// Set parses value for the parameter name, as vzctl's command line writes it, checks it
// against the host, and stores it in l.
func (l *Limits) Set(name, value string, h Host) error {
	value = strings.TrimSpace(value)
	switch name {
	case "cpuunits":
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil || n < 8 || n > 500000 {
			return bad(name, value, "use a weight from 8 to 500000 (default 1000)")
		}
		l.CPUUnits = u64(n)
	case "cpulimit":
		v := strings.TrimSuffix(value, "%")
		n, err := strconv.ParseUint(v, 10, 64)
		max := uint64(100 * max(h.CPUs, 1))
		if err != nil || n > max {
			return bad(name, value, fmt.Sprintf("use a percentage from 0 (no limit) to %d (100 is one CPU)", max))
		}
		l.CPULimit = u64(n)
	case "cpus":
		n, err := strconv.ParseUint(value, 10, 64)
		if value == "unlimited" {
			n, err = 0, nil
		}
		if err != nil || n > uint64(h.CPUs) {
			return bad(name, value, fmt.Sprintf("use a number of CPUs from 1 to %d, or unlimited", h.CPUs))
		}
		l.CPUs = u64(n)
	case "cpumask", "nodemask":
		limit, what := h.CPUs, "CPU"
		if name == "nodemask" {
			limit, what = max(h.Nodes, 1), "NUMA node"
		}
		norm, err := parseMask(value, limit)
		if err != nil {
			return bad(name, value, fmt.Sprintf("%v (this host has %s 0-%d; or all)", err, what, limit-1))
		}
		if name == "cpumask" {
			l.CPUMask = norm
		} else {
			l.NodeMask = norm
		}
	case "ram", "swap":
		n, err := ParseSize(value, 1)
		if err != nil {
			return bad(name, value, "use a size with K, M, G or T, or unlimited")
		}
		if name == "ram" && n != Unlimited && n < 16*MiB {
			return bad(name, value, "at least 16M")
		}
		if name == "ram" {
			l.RAM = i64(n)
		} else {
			l.Swap = i64(n)
		}
	case "numproc":
		n, err := parseCount(value)
		if err != nil || n != Unlimited && n < 8 {
			return bad(name, value, "use a number of processes of at least 8, or unlimited")
		}
		l.NumProc = i64(n)
	case "numfile":
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil || n < 64 || h.NoFileHi > 0 && n > h.NoFileHi {
			return bad(name, value, fmt.Sprintf("use a number of open files from 64 to %d", h.NoFileHi))
		}
		l.NumFile = u64(n)
	case "diskspace":
		// vzctl takes soft:hard in 1K blocks; the hard limit counts.
		v := value
		if _, hard, ok := strings.Cut(value, ":"); ok {
			v = hard
		}
		n, err := ParseSize(v, KiB)
		if err != nil || n != Unlimited && n < 32*MiB {
			return bad(name, value, "use a size of at least 32M (a number alone counts 1K blocks)")
		}
		l.DiskSpace = i64(n)
	case "diskinodes":
		v := value
		if _, hard, ok := strings.Cut(value, ":"); ok {
			v = hard
		}
		n, err := parseCount(v)
		if err != nil || n != Unlimited && n < 1024 {
			return bad(name, value, "use a number of inodes of at least 1024")
		}
		l.DiskInodes = i64(n)
	case "ioprio":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > 7 {
			return bad(name, value, "use a priority from 0 (lowest) to 7 (highest); 4 is the default")
		}
		l.IOPrio = &n
	case "iolimit":
		n, err := ParseSize(value, MiB) // vzctl: a number alone is MB/s
		if err == nil && n == Unlimited {
			n = 0
		}
		if err != nil {
			return bad(name, value, "use a rate in bytes per second with K, M or G (a number alone is MB/s), or 0")
		}
		l.IOLimit = i64(n)
	case "iopslimit":
		n, err := parseCount(value)
		if err == nil && n == Unlimited {
			n = 0
		}
		if err != nil {
			return bad(name, value, "use a number of operations per second, or 0")
		}
		l.IOPSLimit = i64(n)
	default:
		if !IsUBC(name) {
			return fmt.Errorf("%w: unknown resource parameter %q", ErrInvalid, name)
		}
		b, lim, err := ParseUBC(name, value)
		if err != nil {
			return err
		}
		if l.UBC == nil {
			l.UBC = map[string]string{}
		}
		l.UBC[name] = fmt.Sprintf("%d:%d", b, lim)
	}
	return nil
}

func parseCount(v string) (int64, error) {
	if strings.EqualFold(v, "unlimited") {
		return Unlimited, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a count")
	}
	return n, nil
}

// parseMask checks a cpuset list ("0-1,3") against the number of CPUs (or nodes) and returns
// it normalised; "all" or "" means no restriction.
func parseMask(v string, n int) (string, error) {
	if v == "" || v == "all" {
		return "all", nil
	}
	ids, err := ParseList(v, n)
	if err != nil {
		return "", err
	}
	return FormatList(ids), nil
}

// ParseList reads a cpuset list ("0-1,3") of ids below n into sorted ids.
func ParseList(v string, n int) ([]int, error) {
	seen := map[int]bool{}
	for _, part := range strings.Split(v, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("not a list like 0-1,3")
		}
		if b >= n {
			return nil, fmt.Errorf("%d does not exist", b)
		}
		for i := a; i <= b; i++ {
			seen[i] = true
		}
	}
	ids := make([]int, 0, len(seen))
	for i := range seen {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	return ids, nil
}

// FormatList writes sorted ids as a cpuset list ("0-1,3").
func FormatList(ids []int) string {
	var out []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if i == j {
			out = append(out, strconv.Itoa(ids[i]))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", ids[i], ids[j]))
		}
		i = j + 1
	}
	return strings.Join(out, ",")
}

// PickCPUs chooses n of a host's cpus CPUs for a VE given --cpus n without --cpumask: those
// the fewest other VEs are pinned to (pinned: their CPU lists), ties taken in turn from a
// place that seed (the VE's id) decides, so that VEs started on an idle host spread out.
func PickCPUs(n, cpus int, pinned [][]int, seed string) []int {
	if n >= cpus {
		return nil
	}
	count := make([]int, cpus)
	for _, l := range pinned {
		for _, c := range l {
			if c < cpus {
				count[c]++
			}
		}
	}
	h := fnv.New32a()
	h.Write([]byte(seed))
	start := int(h.Sum32() % uint32(cpus))
	order := make([]int, cpus)
	for i := range order {
		order[i] = (start + i) % cpus
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] < count[order[j]] })
	picked := slices.Clone(order[:n])
	sort.Ints(picked)
	return picked
}

// ParseLimits parses resource parameters as vzctl's command line writes them (name without
// the dashes -> value), checks them against the host and returns them as Limits: the
// parameters given are the fields set. The first bad value, in the order of Names, is the
// error.
func ParseLimits(values map[string]string, h Host) (Limits, error) {
	var l Limits
	for k := range values {
		if !slices.Contains(Names, k) {
			return Limits{}, fmt.Errorf("%w: unknown resource parameter %q", ErrInvalid, k)
		}
	}
	for _, n := range Names {
		if v, ok := values[n]; ok {
			if err := l.Set(n, v, h); err != nil {
				return Limits{}, err
			}
		}
	}
	return l, nil
}

// Given lists the parameters set in l, in the order of Names.
func (l Limits) Given() []string {
	v := l.values()
	var out []string
	for _, n := range Names {
		if _, ok := v[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// Merge copies the parameters set in o over l. The result shares no pointers with the
// Limits it came from (callers keep copies to compare before and after).
func (l *Limits) Merge(o Limits) {
	var m map[string]json.RawMessage
	a, _ := json.Marshal(*l)
	_ = json.Unmarshal(a, &m)
	var mo map[string]json.RawMessage
	b, _ := json.Marshal(o)
	_ = json.Unmarshal(b, &mo)
	for k, v := range mo {
		m[k] = v
	}
	delete(m, "ubc")
	c, _ := json.Marshal(m)
	var out Limits
	_ = json.Unmarshal(c, &out)
	for _, src := range []map[string]string{l.UBC, o.UBC} {
		for k, v := range src {
			if out.UBC == nil {
				out.UBC = map[string]string{}
			}
			out.UBC[k] = v
		}
	}
	*l = out
}

// Changed lists the parameters that differ between l and o.
func (l Limits) Changed(o Limits) []string {
	a, b := l.values(), o.values()
	var out []string
	for _, n := range Names {
		if a[n] != b[n] {
			out = append(out, n)
		}
	}
	return out
}

// Format returns a parameter's value as vzctl would print it ("" when not set).
func (l Limits) Format(name string) string { return l.values()[name] }

func (l Limits) values() map[string]string {
	m := map[string]string{}
	pu := func(n string, v *uint64) {
		if v != nil {
			m[n] = strconv.FormatUint(*v, 10)
		}
	}
	ps := func(n string, v *int64) {
		if v != nil {
			m[n] = FormatSize(*v)
		}
	}
	pc := func(n string, v *int64) {
		if v != nil {
			if *v == Unlimited {
				m[n] = "unlimited"
			} else {
				m[n] = strconv.FormatInt(*v, 10)
			}
		}
	}
	pu("cpuunits", l.CPUUnits)
	pu("cpulimit", l.CPULimit)
	pu("cpus", l.CPUs)
	if l.CPUMask != "" {
		m["cpumask"] = l.CPUMask
	}
	if l.NodeMask != "" {
		m["nodemask"] = l.NodeMask
	}

	ps("ram", l.RAM)
	ps("swap", l.Swap)
	pc("numproc", l.NumProc)
	pu("numfile", l.NumFile)
	ps("diskspace", l.DiskSpace)
	pc("diskinodes", l.DiskInodes)
	if l.IOPrio != nil {
		m["ioprio"] = strconv.Itoa(*l.IOPrio)
	}
	ps("iolimit", l.IOLimit)
	pc("iopslimit", l.IOPSLimit)
	for k, v := range l.UBC {
		m[k] = v
	}
	return m
}

// Shares maps vzctl's cpuunits (default 1000) to cgroup v1 cpu.shares (default 1024); the
// cgroup library converts shares to cgroup v2's cpu.weight.
func (l Limits) Shares() uint64 {
	if l.CPUUnits == nil {
		return 0
	}
	return max(2, *l.CPUUnits*1024/1000)
}

// Quota returns the CFS quota and period for cpulimit and cpus (the lower wins); quota 0
// means no limit.
func (l Limits) Quota() (quota int64, period uint64) {
	period = 100000
	limit := uint64(math.MaxUint64)
	if l.CPULimit != nil && *l.CPULimit > 0 {
		limit = *l.CPULimit
	}
	if l.CPUs != nil && *l.CPUs > 0 {
		limit = min(limit, *l.CPUs*100)
	}
	if limit == math.MaxUint64 {
		return -1, period
	}
	return int64(limit * period / 100), period
}

// BlkioWeight maps vzctl's ioprio 0..7 onto the cgroup I/O weight: 4 (the default) is the
// kernel's default weight 500; each step is 100.
func (l Limits) BlkioWeight() uint16 {
	if l.IOPrio == nil {
		return 0
	}
	return uint16(100 + 100**l.IOPrio)
}
