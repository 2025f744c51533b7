package container

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func testSpec(t *testing.T, console bool) *specs.Spec {
	t.Helper()
	s, err := buildSpec(specOptions{cfg: &Config{ID: "101"}, rootfs: "/r/root/101", netns: "/run/vectl/netns/101",
		hostname: "web", console: console, cgroup: "/vectl/101", cgroupV1: "/vectl/101"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBuildSpecSystemContainer(t *testing.T) {
	s := testSpec(t, true)
	if s.Linux.CgroupsPath != "/vectl/101" {
		t.Errorf("cgroups path %q must be absolute under /vectl", s.Linux.CgroupsPath)
	}
	if got := s.Process.Args; !slices.Equal(got, []string{"/sbin/init"}) {
		t.Errorf("args %v", got)
	}
	if !slices.Contains(s.Process.Env, "container=vectl") {
		t.Errorf("env %v lacks container=vectl", s.Process.Env)
	}
	want := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "", specs.IPCNamespace: "", specs.UTSNamespace: "",
		specs.MountNamespace: "", specs.CgroupNamespace: "", specs.NetworkNamespace: "/run/vectl/netns/101"}
	if len(s.Linux.Namespaces) != len(want) {
		t.Errorf("namespaces %v", s.Linux.Namespaces)
	}
	for _, ns := range s.Linux.Namespaces {
		if p, ok := want[ns.Type]; !ok || p != ns.Path {
			t.Errorf("namespace %v", ns)
		}
	}
	caps := s.Process.Capabilities.Bounding
	for _, c := range []string{"CAP_SYS_BOOT", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_KILL"} {
		if !slices.Contains(caps, c) {
			t.Errorf("capabilities lack %s", c)
		}
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_TIME", "CAP_MAC_ADMIN"} {
		if slices.Contains(caps, c) {
			t.Errorf("capabilities include %s", c)
		}
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction == specs.ActAllow {
		t.Fatal("no restrictive seccomp profile")
	}
	reboot := false
	for _, sc := range s.Linux.Seccomp.Syscalls {
		if slices.Contains(sc.Names, "reboot") && sc.Action == specs.ActAllow {
			reboot = true
		}
	}
	if !reboot {
		t.Error("seccomp profile does not allow reboot(2) although CAP_SYS_BOOT is granted")
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sysrq-trigger") || !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") {
		t.Error("sysrq-trigger must be read-only and kcore masked")
	}
	for _, p := range s.Linux.ReadonlyPaths {
		if strings.HasPrefix(p, "/proc/sys/net") || p == "/proc/sys" {
			t.Errorf("%s is read-only: the VE's own network sysctls must stay writable", p)
		}
	}
	dests := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		dests[m.Destination] = m
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/sys", "/run", "/run/lock", "/sys/fs/cgroup"} {
		if _, ok := dests[d]; !ok {
			t.Errorf("no mount on %s", d)
		}
	}
	if !slices.Contains(dests["/sys"].Options, "ro") {
		t.Error("/sys is not read-only")
	}
	if _, ok := dests["/dev/console"]; ok {
		t.Error("with a monitor, libcontainer provides /dev/console from the pty")
	}
	if nc := testSpec(t, false); !slices.ContainsFunc(nc.Mounts, func(m specs.Mount) bool {
		return m.Destination == "/dev/console" && m.Source == "/dev/null"
	}) {
		t.Error("without a monitor /dev/console must be /dev/null, never the host console")
	}
}

func TestStopSignalFor(t *testing.T) {
	tests := []struct {
		init, override string
		sig            unix.Signal
		halt           bool
	}{
		{"systemd", "", 37, false},
		{"busybox", "", unix.SIGUSR2, false},
		{"sysvinit", "", 0, true},
		{"openrc", "", 0, true},
		{"systemd", "SIGTERM", unix.SIGTERM, false},
		{"busybox", "halt", 0, true},
		{"busybox", "pwr", unix.SIGPWR, false},
		{"busybox", "RTMIN+4", 38, false},
		{"busybox", "15", unix.SIGTERM, false},
	}
	for _, tt := range tests {
		sig, halt, err := stopSignalFor(tt.init, tt.override)
		if err != nil || sig != tt.sig || halt != tt.halt {
			t.Errorf("stopSignalFor(%q, %q) = %v, %v, %v; want %v, %v", tt.init, tt.override, sig, halt, err, tt.sig, tt.halt)
		}
	}
	for _, bad := range []string{"SIGFOO", "0", "65", "RTMIN+99", "RTMIN-1"} {
		if _, _, err := stopSignalFor("systemd", bad); err == nil {
			t.Errorf("stopSignalFor(%q) accepted", bad)
		}
	}
}

func TestCopyUntilEscape(t *testing.T) {
	tests := []struct{ in, out string }{
		{"ls\r\x1b.after", "ls\r"},
		{"\x1b[A\x1b.", "\x1b[A"},  // an arrow key, then the escape
		{"a\x1b\x1b.", "a\x1b"},    // Esc Esc . : one Esc passes, the second starts the escape
		{"no escape", "no escape"}, // ends with the input
		{"vi\x1bx\x1b", "vi\x1bx"}, // a pending Esc at EOF is dropped
		{"\x1b", ""},
	}
	for _, tt := range tests {
		var w bytes.Buffer
		copyUntilEscape(&w, strings.NewReader(tt.in))
		if w.String() != tt.out {
			t.Errorf("copyUntilEscape(%q) wrote %q, want %q", tt.in, w.String(), tt.out)
		}
	}
	// The escape split across reads still detaches.
	var w bytes.Buffer
	r := io.MultiReader(strings.NewReader("x\x1b"), strings.NewReader(".y"))
	copyUntilEscape(&w, r)
	if w.String() != "x" {
		t.Errorf("split escape: wrote %q", w.String())
	}
}

// A user-namespace VE's root has every capability in its namespace; its seccomp profile
// allows what systemd's sandboxing and nested containers need (mount, unshare, setns; new
// UTS and IPC namespaces only with nesting) and blocks what the namespace does not contain.
func TestUserNSSpec(t *testing.T) {
	s, err := buildSpec(specOptions{cfg: &Config{ID: "101"}, rootfs: "/r/root/101", netns: "/run/vectl/netns/101",
		hostname: "web", console: true, cgroup: "/vectl/101", cgroupV1: "/vectl/101", userns: "/run/vectl/ve/101/userns"})
	if err != nil {
		t.Fatal(err)
	}
	if ns := s.Linux.Namespaces[0]; ns.Type != specs.UserNamespace || ns.Path != "/run/vectl/ve/101/userns" {
		t.Fatalf("first namespace = %+v, want the pinned user namespace", ns)
	}
	if len(s.Linux.UIDMappings) != 0 {
		t.Fatal("without a recorded range the spec states no map")
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_RESOURCE"} {
		if !slices.Contains(s.Process.Capabilities.Bounding, c) {
			t.Errorf("root of a user-namespace VE lacks %s", c)
		}
	}
	allowed := map[string]bool{}
	for _, sc := range s.Linux.Seccomp.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
			for _, n := range sc.Names {
				allowed[n] = true
			}
		}
	}
	for _, n := range []string{"mount", "umount2", "setns", "pivot_root", "sethostname"} {
		if !allowed[n] {
			t.Errorf("seccomp profile blocks %s", n)
		}
	}
	// Without nesting, clone and unshare are allowed but for new UTS and IPC namespaces,
	// which CRIU cannot dump; clone3 fails with ENOSYS.
	var masked, clone3 bool
	for _, sc := range s.Linux.Seccomp.Syscalls {
		if sc.Action == specs.ActAllow && slices.Contains(sc.Names, "unshare") && slices.Contains(sc.Names, "clone") &&
			len(sc.Args) == 1 && sc.Args[0].Op == specs.OpMaskedEqual && sc.Args[0].Value == unix.CLONE_NEWUTS|unix.CLONE_NEWIPC && sc.Args[0].ValueTwo == 0 {
			masked = true
		}
		if slices.Contains(sc.Names, "clone3") && sc.Action == specs.ActErrno && sc.ErrnoRet != nil && *sc.ErrnoRet == uint(unix.ENOSYS) {
			clone3 = true
		}
	}
	if allowed["unshare"] || allowed["clone"] || allowed["clone3"] || !masked || !clone3 {
		t.Errorf("without nesting: unshare/clone allowed outright %v/%v, clone3 %v, masked rule %v, clone3 ENOSYS %v",
			allowed["unshare"], allowed["clone"], allowed["clone3"], masked, clone3)
	}
	// With nesting, a nested runtime may make every namespace.
	n, err := buildSpec(specOptions{cfg: &Config{ID: "101", Nesting: true}, rootfs: "/r/root/101", netns: "/run/vectl/netns/101",
		hostname: "web", console: true, cgroup: "/vectl/101", cgroupV1: "/vectl/101", userns: "/run/vectl/ve/101/userns"})
	if err != nil {
		t.Fatal(err)
	}
	nested := map[string]bool{}
	for _, sc := range n.Linux.Seccomp.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
			for _, name := range sc.Names {
				nested[name] = true
			}
		}
	}
	if !nested["unshare"] || !nested["clone"] || !nested["clone3"] {
		t.Errorf("a nesting VE's profile blocks unshare, clone or clone3: %v %v %v", nested["unshare"], nested["clone"], nested["clone3"])
	}
	for _, n := range []string{"init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
		"open_by_handle_at", "add_key", "keyctl", "request_key", "settimeofday", "clock_settime", "iopl", "ioperm", "syslog"} {
		if allowed[n] {
			t.Errorf("seccomp profile allows %s", n)
		}
	}
}

func TestValidateCgroupParent(t *testing.T) {
	for _, p := range []string{"/vectl", "/vectl2", "/machine/vectl-a", "/a.b_c"} {
		if err := ValidateCgroupParent(p, CgroupFS); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for _, p := range []string{"", "vectl", "/", "/vectl/", "/a/../b", "/a//b", "/a b", "/a/./b", "/" + strings.Repeat("x", 65)} {
		if err := ValidateCgroupParent(p, CgroupFS); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("%q: %v", p, err)
		}
	}
	if err := ValidateCgroupParent("/vectl2", CgroupSystemd); err != nil {
		t.Error(err)
	}
	for _, p := range []string{"/a/b", "/a-b", "/a.b"} {
		if err := ValidateCgroupParent(p, CgroupSystemd); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("systemd %q: %v", p, err)
		}
	}
	m := New(Options{CgroupParent: "/vectl2", CgroupManager: CgroupSystemd})
	if got := m.cgroupPath("101"); got != "/vectl2.slice/vectl-101.scope" {
		t.Errorf("systemd path %s", got)
	}
	if got := m.specCgroupsPath("101"); got != "vectl2.slice:vectl:101" {
		t.Errorf("systemd spec path %s", got)
	}
	if got := New(Options{}).cgroupPath("101"); got != "/vectl/101" {
		t.Errorf("default path %s", got)
	}
}

func TestNegOffset(t *testing.T) {
	for _, c := range []struct {
		ts   unix.Timespec
		want specs.LinuxTimeOffset
	}{
		{unix.Timespec{Sec: 100}, specs.LinuxTimeOffset{Secs: -100}},
		{unix.Timespec{Sec: 100, Nsec: 250_000_000}, specs.LinuxTimeOffset{Secs: -101, Nanosecs: 750_000_000}},
		{unix.Timespec{Sec: 0, Nsec: 1}, specs.LinuxTimeOffset{Secs: -1, Nanosecs: 999_999_999}},
	} {
		if got := negOffset(c.ts); got != c.want {
			t.Errorf("negOffset(%+v) = %+v, want %+v", c.ts, got, c.want)
		}
	}
}

func TestSignalTaken(t *testing.T) {
	// systemd early in its boot: SIGRTMIN+3 (37) blocked for its signalfd, none caught.
	systemd := "Name:\tsystemd\nSigQ:\t0/63880\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000000\n" +
		"SigBlk:\t7fe3c0fe28014a03\nSigIgn:\t0000000000001000\nSigCgt:\t00000000000004ec\n"
	// A shell as the init: SIGUSR2 (12) neither caught nor blocked; SIGTERM (15) ignored.
	shell := "Name:\tsh\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000004000\nSigCgt:\t0000000000010002\n"
	for _, c := range []struct {
		status string
		sig    unix.Signal
		want   bool
	}{
		{systemd, 37, true},
		{systemd, unix.SIGUSR2, true}, // 12: blocked too
		{systemd, unix.SIGALRM, false},
		{systemd, unix.SIGPIPE, false}, // 13: ignored
		{shell, unix.SIGUSR2, false},
		{shell, unix.SIGTERM, false},
		{shell, unix.SIGINT, true}, // 2: caught
		{shell, unix.SIGCHLD, true},
		{"", unix.SIGUSR2, false},
	} {
		if got := signalTaken(c.status, c.sig); got != c.want {
			t.Errorf("signalTaken(%q, %d) = %v, want %v", c.status, c.sig, got, c.want)
		}
	}
}
