package resources

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var host = Host{CPUs: 2, Nodes: 1, NoFileHi: 1048576}

func TestSetValid(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"cpuunits", "1000", "1000"},
		{"cpulimit", "50", "50"},
		{"cpulimit", "150%", "150"},
		{"cpus", "2", "2"},
		{"cpumask", "1,0", "0-1"},
		{"cpumask", "all", "all"},
		{"ram", "512M", "512M"},
		{"ram", "unlimited", "unlimited"},
		{"swap", "0", "0"},
		{"numproc", "100", "100"},
		{"numproc", "unlimited", "unlimited"},
		{"numfile", "4096", "4096"},
		{"diskspace", "2G", "2G"},
		{"diskspace", "1048576", "1G"}, // 1K blocks, as vzctl
		{"diskspace", "1G:2G", "2G"},   // soft:hard, the hard limit counts
		{"diskinodes", "200000", "200000"},
		{"ioprio", "7", "7"},
		{"iolimit", "10", "10M"}, // MB/s, as vzctl
		{"iolimit", "512K", "512K"},
		{"iopslimit", "300", "300"},
	}
	for _, tt := range tests {
		var l Limits
		if err := l.Set(tt.name, tt.value, host); err != nil {
			t.Errorf("Set(%s, %q): %v", tt.name, tt.value, err)
			continue
		}
		if got := l.Format(tt.name); got != tt.want {
			t.Errorf("Set(%s, %q) stored %q, want %q", tt.name, tt.value, got, tt.want)
		}
	}
}

func TestSetInvalidNamesTheValue(t *testing.T) {
	for _, tt := range []struct{ name, value string }{
		{"ram", "12Q"}, {"ram", "1M"}, {"cpulimit", "-5"}, {"cpulimit", "250"}, {"cpumask", "99"},
		{"cpumask", "1-0"}, {"cpus", "3"}, {"cpuunits", "7"}, {"numproc", "3"}, {"numfile", "99999999"},
		{"ioprio", "8"}, {"diskspace", "1M"}, {"iolimit", "fast"}, {"nodemask", "1"},
	} {
		var l Limits
		err := l.Set(tt.name, tt.value, host)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.value) {
			t.Errorf("Set(%s, %q) = %v; want ErrInvalid naming the value", tt.name, tt.value, err)
		}
		if l.Changed(Limits{}) != nil {
			t.Errorf("Set(%s, %q) stored something although it failed", tt.name, tt.value)
		}
	}
}

func TestSetUnknownParameter(t *testing.T) {
	var l Limits
	if err := l.Set("frobs", "1", host); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "frobs") {
		t.Fatalf("unknown parameter: %v", err)
	}
}

func TestMergeAndChanged(t *testing.T) {
	var l Limits
	l.Set("ram", "256M", host)
	l.Set("numproc", "100", host)
	before := l
	var o Limits
	o.Set("ram", "1G", host)
	o.Set("cpuunits", "2000", host)
	l.Merge(o)
	if got := before.Changed(l); !slices.Equal(got, []string{"cpuunits", "ram"}) {
		t.Fatalf("Changed = %v (Merge must not write through shared pointers)", got)
	}
	if l.Format("numproc") != "100" || l.Format("ram") != "1G" || before.Format("ram") != "256M" {
		t.Fatalf("after Merge: %v, before: %v", l.values(), before.values())
	}
}

func TestApply(t *testing.T) {
	var l Limits
	for n, v := range map[string]string{"ram": "128M", "swap": "64M", "cpulimit": "50", "cpus": "1",
		"cpuunits": "3000", "numproc": "100", "cpumask": "1", "ioprio": "4", "iolimit": "10M"} {
		if err := l.Set(n, v, host); err != nil {
			t.Fatal(err)
		}
	}
	r := &specs.LinuxResources{}
	if err := l.Apply(r, host, &Device{Major: 254, Minor: 0}); err != nil {
		t.Fatal(err)
	}
	if *r.Memory.Limit != 128<<20 || *r.Memory.Swap != 192<<20 {
		t.Errorf("memory %d, memory+swap %d", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 3072 || r.CPU.Cpus != "1" {
		t.Errorf("cpu %+v", r.CPU)
	}
	if *r.Pids.Limit != 100 || *r.BlockIO.Weight != 500 {
		t.Errorf("pids %d, io weight %d", *r.Pids.Limit, *r.BlockIO.Weight)
	}
	if d := r.BlockIO.ThrottleWriteBpsDevice; len(d) != 1 || d[0].Rate != 10<<20 || d[0].Major != 254 {
		t.Errorf("write throttle %+v", d)
	}
	// Nothing set: every knob explicitly unlimited, so a live update lifts old limits.
	r = &specs.LinuxResources{}
	if err := (Limits{}).Apply(r, host, nil); err != nil {
		t.Fatal(err)
	}
	if *r.Memory.Limit != Unlimited || *r.Pids.Limit != Unlimited || *r.CPU.Quota != -1 || r.CPU.Cpus != "0-1" {
		t.Errorf("defaults: mem %d pids %d quota %d cpus %q", *r.Memory.Limit, *r.Pids.Limit, *r.CPU.Quota, r.CPU.Cpus)
	}
	var s Limits
	s.Set("swap", "1G", host)
	if err := s.Apply(&specs.LinuxResources{}, host, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("swap without ram: %v", err)
	}
}

func TestProfiles(t *testing.T) {
	l, err := Profile(t.TempDir(), "vswap-512m", host)
	if err != nil || l.Format("ram") != "512M" || l.Format("swap") != "1G" {
		t.Fatalf("vswap-512m = %v, %v", l.values(), err)
	}
	if _, err := Profile(t.TempDir(), "nosuch", host); !errors.Is(err, ErrNoProfile) {
		t.Fatalf("missing profile: %v", err)
	}
	if _, err := Profile(t.TempDir(), "../etc", host); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	for _, n := range ProfileNames("") {
		if _, err := Profile(t.TempDir(), n, host); err != nil {
			t.Errorf("built-in profile %s: %v", n, err)
		}
	}
}

func TestParseLimits(t *testing.T) {
	h := Host{CPUs: 2, Nodes: 1, NoFileHi: 4096}
	l, err := ParseLimits(map[string]string{"ram": "512M", "numproc": "unlimited", "cpumask": "1,0"}, h)
	if err != nil {
		t.Fatal(err)
	}
	if l.RAM == nil || *l.RAM != 512*MiB || l.NumProc == nil || *l.NumProc != Unlimited || l.CPUMask != "0-1" {
		t.Fatalf("limits = %+v", l)
	}
	if got := l.Given(); !slices.Equal(got, []string{"cpumask", "ram", "numproc"}) {
		t.Fatalf("Given = %v, want the parameters in vzctl's order", got)
	}
	if got := (Limits{}).Given(); len(got) != 0 {
		t.Fatalf("Given of no limits = %v", got)
	}
	// The first bad value in vzctl's order is the error, whatever the map's order.
	for i := 0; i < 20; i++ {
		_, err := ParseLimits(map[string]string{"ram": "lots", "cpus": "9", "iolimit": "x"}, h)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "--cpus") {
			t.Fatalf("err = %v, want the --cpus error", err)
		}
	}
	if _, err := ParseLimits(map[string]string{"memory": "1G"}, h); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown parameter: err = %v", err)
	}
}

func TestParseUBC(t *testing.T) {
	for _, c := range []struct {
		name, in string
		b, l     int64
	}{
		{"kmemsize", "64M:80M", 64 << 20, 80 << 20},
		{"kmemsize", "1000", 1000, 1000},
		{"privvmpages", "65536:69632", 65536, 69632},
		{"privvmpages", "256M:512M", 65536, 131072},
		{"privvmpages", "10P", 10, 10},
		{"privvmpages", "4096B", 1, 1},
		{"numtcpsock", "unlimited", UBCUnlimited, UBCUnlimited},
		{"numtcpsock", "100:unlimited", 100, UBCUnlimited},
	} {
		b, l, err := ParseUBC(c.name, c.in)
		if err != nil || b != c.b || l != c.l {
			t.Errorf("ParseUBC(%s, %s) = %d:%d %v, want %d:%d", c.name, c.in, b, l, err, c.b, c.l)
		}
	}
	for _, bad := range []string{"", "x", "10:5", "1:2:3", "-1", "+5"} {
		if _, _, err := ParseUBC("kmemsize", bad); err == nil {
			t.Errorf("ParseUBC(kmemsize, %q) took it", bad)
		}
	}
	var l Limits
	if err := l.Set("kmemsize", "1M", Host{}); err != nil || l.UBC["kmemsize"] != "1048576:1048576" {
		t.Fatalf("Set kmemsize: %v %v", err, l.UBC)
	}
	var o Limits
	o.Set("numpty", "64", Host{})
	l.Merge(o)
	if len(l.UBC) != 2 || l.Format("numpty") != "64:64" {
		t.Errorf("Merge lost a beancounter: %v", l.UBC)
	}
}

// TestPickCPUs: --cpus n without a mask takes the n CPUs the fewest other VEs are pinned to,
// spreads VEs started on an idle host, and gives no list when n covers the host.
func TestPickCPUs(t *testing.T) {
	if got := PickCPUs(1, 2, [][]int{{0}, {0}, {1}}, "101"); !slices.Equal(got, []int{1}) {
		t.Errorf("one CPU beside two VEs on CPU 0 and one on CPU 1: %v, want [1]", got)
	}
	if got := PickCPUs(2, 4, [][]int{{0, 1}, {2}, {1}}, "101"); len(got) != 2 || !slices.Contains(got, 3) || slices.Contains(got, 1) {
		t.Errorf("two CPUs of four beside VEs on 0-1, 2 and 1: %v, want 3 and one of 0 and 2", got)
	}
	if got := PickCPUs(2, 2, nil, "101"); got != nil {
		t.Errorf("--cpus 2 on two CPUs: %v, want none", got)
	}
	// On an idle host the ids spread the VEs: not all on one CPU.
	seen := map[int]bool{}
	var pinned [][]int
	for id := 100; id < 104; id++ {
		got := PickCPUs(1, 2, pinned, strconv.Itoa(id))
		pinned = append(pinned, got)
		seen[got[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("four VEs with --cpus 1 on two CPUs all went to %v", pinned)
	}
}

func TestListRoundTrip(t *testing.T) {
	ids, err := ParseList("3,0-1,1", 4)
	if err != nil || !slices.Equal(ids, []int{0, 1, 3}) || FormatList(ids) != "0-1,3" {
		t.Errorf("ParseList(3,0-1,1) = %v, %v; FormatList %q", ids, err, FormatList(ids))
	}
	if _, err := ParseList("4", 4); err == nil {
		t.Error("CPU 4 of 4 parsed")
	}
}
