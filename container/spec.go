package container

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	seccompprofile "github.com/moby/profiles/seccomp"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultCgroupParent is the absolute cgroup under which every VE lives with the fs driver
// (Options.CgroupParent). A relative path would nest VEs inside the cgroup of whoever ran
// vectl. With the systemd driver a VE is the scope vectl-<id>.scope in the slice named after
// the parent (vectl.slice).
const DefaultCgroupParent = "/vectl"

// Cgroup drivers.
const (
	CgroupFS      = "fs"
	CgroupSystemd = "systemd"
)

// ValidateCgroupParent checks a --cgroup-parent: an absolute, clean cgroup path of plain
// names below the root; for the systemd driver a single name, which becomes NAME.slice.
func ValidateCgroupParent(p, driver string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: cgroup parent %q: %s (the default is %s)", ErrInvalidValue, p, why, DefaultCgroupParent)
	}
	if !strings.HasPrefix(p, "/") || p == "/" || filepath.Clean(p) != p {
		return bad("use an absolute, clean path below the root cgroup, such as /vectl2")
	}
	parts := strings.Split(p[1:], "/")
	for _, c := range parts {
		if c == "." || c == ".." || !cgroupName(c) {
			return bad("use names of letters, digits, '.', '_' and '-'")
		}
	}
	if driver == CgroupSystemd && (len(parts) != 1 || strings.ContainsAny(parts[0], "-.")) {
		return bad("the systemd driver takes one name of letters, digits and '_' (it becomes NAME.slice)")
	}
	return nil
}

// cgroupName reports whether c is 1 to 64 letters, digits, '_', '.' and '-'. Every vectl
// command checks the cgroup parent, so this is a loop rather than a regular expression, whose
// compile (a counted repetition) cost each process most of a millisecond.
func cgroupName(c string) bool {
	if len(c) == 0 || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !isAlnum(b) && b != '_' && b != '.' && b != '-' {
			return false
		}
	}
	return true
}

// slice is the systemd slice VEs live in with the systemd driver: the parent's name.
func (m *Manager) slice() string { return strings.TrimPrefix(m.opts.CgroupParent, "/") + ".slice" }

// cgroupPath is the absolute path of a VE's cgroup in the hierarchy (same on v1 and v2).
func (m *Manager) cgroupPath(id string) string {
	if m.opts.CgroupManager == CgroupSystemd {
		return "/" + m.slice() + "/vectl-" + id + ".scope"
	}
	return m.opts.CgroupParent + "/" + id
}

// specCgroupsPath is a VE's linux.cgroupsPath in its OCI spec for the configured driver.
func (m *Manager) specCgroupsPath(id string) string {
	if m.opts.CgroupManager == CgroupSystemd {
		return m.slice() + ":vectl:" + id
	}
	return m.cgroupPath(id)
}

// veEnv is the environment of a VE's init and of processes run in it with exec.
var veEnv = []string{
	"container=vectl",
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
}

// defaultCaps is a conservative container capability set (Docker's default) plus what a full
// system needs: CAP_SYS_BOOT, so that reboot(2) inside ends the VE's init with the signal the
// monitor turns into a restart or a stop (without it a systemd guest hangs in shutdown), and
// CAP_NET_ADMIN for the VE's own network namespace (addresses, routes, iptables).
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_MKNOD",
	"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE",
	"CAP_SYS_BOOT", "CAP_NET_ADMIN",
}

// maskedPaths hide host information from /proc and /sys (as runc and Docker do).
var maskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths are host-wide knobs. /proc/sys/net stays writable: it belongs to the VE's own
// network namespace (routing, forwarding, per-interface settings).
var readonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger",
	"/proc/sys/kernel", "/proc/sys/vm", "/proc/sys/fs", "/proc/sys/dev",
	"/proc/sys/abi", "/proc/sys/debug", "/proc/sys/user",
}

// specOptions are the per-start inputs of a VE's OCI spec.
type specOptions struct {
	cfg      *Config
	rootfs   string // the mounted root, root/<id>
	netns    string // pinned network namespace
	hostname string
	console  bool   // a monitor provides a pty as /dev/console
	cgroup   string // absolute cgroup path (fs driver) or slice:prefix:name (systemd driver)
	cgroupV1 string // the VE's cgroup path in cgroup v1 hierarchies, for the name=systemd bind
	userns   string // a user-namespace VE's pinned user namespace ("" for a privileged VE)
	criuConf string // CRIU's configuration for this VE's checkpoints (Manager.criuConfPath)
	tmpfsTmp bool   // mount a tmpfs on /tmp: the guest's systemd wants one and may not mount it
}

// usernsCaps is the seccomp profile's view of a user-namespace VE's root: every capability
// its namespace contains. Its root holds the full set, but a user namespace does not contain
// module loading, raw I/O, the clock, the kernel log, handles of host inodes
// (open_by_handle_at, CAP_DAC_READ_SEARCH) or the host's keyrings, and the profile built for
// this set blocks their system calls outright rather than leaving them to the kernel.
var usernsCaps = append(append([]string(nil), defaultCaps...),
	"CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_SYS_TTY_CONFIG", "CAP_AUDIT_READ",
	"CAP_CHECKPOINT_RESTORE")

// usernsProfile adjusts the profile built for usernsCaps: pivot_root, which a nested
// container runtime and systemd's RootDirectory= need, is allowed (Docker's profile never
// allows it: its containers do not nest), and syslog(2), which no user namespace contains,
// is not. The keyring calls, which the profile refuses with EPERM, fail with ENOSYS instead,
// as in LXC's profile: runtimes inside (runc, vectl) and systemd then go on without a
// session keyring instead of failing.
//
// Without nesting, new UTS and IPC namespaces are refused (EPERM), so that the VE stays
// checkpointable: CRIU dumps nested mount and network namespaces only, and systemd's
// ProtectHostname= and PrivateIPC= (systemd-logind, -timedated, -localed in Debian) would
// otherwise put services in namespaces of their own. systemd takes EPERM there as "a
// container manager prohibits it" and runs the service without them. clone3, whose flags a
// filter cannot read, fails with ENOSYS, and the C library falls back to clone.
func usernsProfile(sc *specs.LinuxSeccomp, nesting bool) {
	if !nesting {
		for i := range sc.Syscalls {
			if sc.Syscalls[i].Action == specs.ActAllow && len(sc.Syscalls[i].Args) == 0 {
				sc.Syscalls[i].Names = slices.DeleteFunc(sc.Syscalls[i].Names, func(n string) bool {
					return n == "clone" || n == "clone3" || n == "unshare"
				})
			}
		}
		noNested := []specs.LinuxSeccompArg{{Index: 0, Value: unix.CLONE_NEWUTS | unix.CLONE_NEWIPC, ValueTwo: 0, Op: specs.OpMaskedEqual}}
		nosys := uint(unix.ENOSYS)
		sc.Syscalls = append(sc.Syscalls,
			specs.LinuxSyscall{Names: []string{"clone", "unshare"}, Action: specs.ActAllow, Args: noNested},
			specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: &nosys})
	}
	enosys := uint(unix.ENOSYS)
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: []string{"keyctl", "add_key", "request_key"},
		Action: specs.ActErrno, ErrnoRet: &enosys})
	for i := range sc.Syscalls {
		sc.Syscalls[i].Names = slices.DeleteFunc(sc.Syscalls[i].Names, func(n string) bool { return n == "syslog" })
	}
	sc.Syscalls = slices.DeleteFunc(sc.Syscalls, func(s specs.LinuxSyscall) bool { return len(s.Names) == 0 })
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: []string{"pivot_root"}, Action: specs.ActAllow})
}

// allCaps is every capability this build knows: root's set in a user-namespace VE.
func allCaps() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// buildSpec makes the OCI runtime spec of a VE: a full system with its own init as PID 1 in
// new mount, pid, uts, ipc, cgroup and (pinned) network namespaces.
func buildSpec(o specOptions) (*specs.Spec, error) {
	caps := append([]string(nil), defaultCaps...)
	var nofileHard uint64 = 1024
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		nofileHard = rl.Max // never above our own hard limit (no CAP_SYS_RESOURCE needed)
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: o.rootfs},
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: []string{"/sbin/init"},
			Env:  append([]string(nil), veEnv...),
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: min(1024, nofileHard), Hard: nofileHard}},
		},
		Hostname: o.hostname,
		Mounts:   veMounts(o),
		// libcontainer hands CRIU the file this annotation names; it is read at each dump.
		Annotations: map[string]string{"org.criu.config": o.criuConf},
		Linux: &specs.Linux{
			CgroupsPath: o.cgroup,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.CgroupNamespace},
				{Type: specs.NetworkNamespace, Path: o.netns},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	profileOf := s
	if o.userns != "" {
		// The user namespace is joined from its pin; the spec also states its map (see newContainer).
		s.Linux.Namespaces = append([]specs.LinuxNamespace{{Type: specs.UserNamespace, Path: o.userns}}, s.Linux.Namespaces...)
		if u := o.cfg.UserNS; u != nil {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: u.UID, Size: u.Size}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: u.GID, Size: u.Size}}
		}
		all := allCaps()
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
		profileOf = &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: usernsCaps}}}
	}
	applyCapabilities(s, o.cfg)
	if profileOf != s {
		applyCapabilities(profileOf, &Config{Capabilities: offOnly(o.cfg.Capabilities)})
	}
	if err := applyDevices(s, o.cfg); err != nil {
		return nil, err
	}
	sc, err := seccompprofile.GetDefaultProfile(profileOf)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if o.userns != "" {
		usernsProfile(sc, o.cfg.Nesting)
	}
	s.Linux.Seccomp = sc
	return s, nil
}

// veMounts are the filesystems a VE sees besides its root: /proc, a minimal /dev, read-only
// /sys, its own cgroup subtree, and tmpfs on /run and /run/lock.
func veMounts(o specOptions) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts",
			Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}},
		{Destination: "/run/lock", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "mode=1777", "size=5242880"}},
	}
	if o.tmpfsTmp {
		// systemd's own tmp.mount options; systemd finds /tmp mounted and leaves it.
		ms = append(ms, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "strictatime", "mode=1777", "size=50%", "nr_inodes=1m"}})
	}
	// On cgroup v2 the VE's systemd manages its own subtree, so its cgroup mount is writable
	// when the host mounted cgroup2 with nsdelegate: the kernel then refuses writes to the
	// namespace root's limit files from inside, so a VE cannot raise its own limits.
	// Without nsdelegate it stays read-only.
	if cgroups.IsCgroup2UnifiedMode() && nsdelegate() {
		for i := range ms {
			if ms[i].Destination == "/sys/fs/cgroup" {
				ms[i].Options = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
			}
		}
	}
	// On a cgroup v1 host a nesting user-namespace VE's controllers are writable, as in
	// LXC's unprivileged containers: delegateCgroup hands it its own directory in every
	// hierarchy, so it can make child cgroups (a nested container runtime, its systemd), while
	// its own limit files stay host root's, which its root cannot write. Without nesting they
	// stay read-only: its systemd would otherwise make a memory cgroup for every service,
	// about 150 KiB of kernel memory each.
	if !cgroups.IsCgroup2UnifiedMode() && o.userns != "" && o.cfg.Nesting {
		for i := range ms {
			if ms[i].Destination == "/sys/fs/cgroup" {
				ms[i].Options = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
			}
		}
	}
	// Otherwise the controllers stay read-only on cgroup v1 (a privileged VE's root could
	// write its own limit files), but systemd needs its own named hierarchy writable to track
	// services:
	// bind the VE's subtree of name=systemd over the read-only mount, as podman does.
	if !cgroups.IsCgroup2UnifiedMode() {
		host := filepath.Join("/sys/fs/cgroup/systemd", o.cgroupV1)
		if _, err := os.Stat("/sys/fs/cgroup/systemd"); err == nil {
			ms = append(ms, specs.Mount{Destination: "/sys/fs/cgroup/systemd", Type: "bind", Source: host,
				Options: []string{"rbind", "nosuid", "noexec", "nodev", "rw"}})
		}
	}
	if !o.console {
		// Without a monitor there is no console pty; give /dev/console a harmless stand-in
		// rather than the host's console device. The bind is read-only: it is the host's
		// /dev/null inode, and a getty on the console of a privileged VE would otherwise chown
		// and chmod it (root:tty 0600) for the whole host. Writes to the device still work.
		ms = append(ms, specs.Mount{Destination: "/dev/console", Type: "bind", Source: "/dev/null",
			Options: []string{"bind", "ro", "nosuid", "noexec"}})
	}
	return ms
}

// nsdelegate reports whether the host's cgroup2 is mounted with the nsdelegate option.
func nsdelegate() bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[4] == "/sys/fs/cgroup" && strings.Contains(l, " - cgroup2 ") &&
			strings.Contains(f[len(f)-1], "nsdelegate") {
			return true
		}
	}
	return false
}

// stopSignalFor returns how to ask an init system to shut down: a signal number, or 0 and
// true when /sbin/halt must be run inside the VE (sysvinit and unknown inits).
func stopSignalFor(initType, override string) (unix.Signal, bool, error) {
	name := override
	if name == "" {
		switch initType {
		case "systemd":
			name = "SIGRTMIN+3"
		case "busybox":
			name = "SIGUSR2"
		default:
			name = "halt"
		}
	}
	if name == "halt" {
		return 0, true, nil
	}
	sig, err := parseSignal(name)
	return sig, false, err
}

// parseSignal accepts SIGTERM, TERM, 15, RTMIN+3 and SIGRTMIN+3.
func parseSignal(s string) (unix.Signal, error) {
	n := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if strings.HasPrefix(n, "RTMIN") {
		off := 0
		if rest := strings.TrimPrefix(n, "RTMIN"); rest != "" {
			if _, err := fmt.Sscanf(rest, "+%d", &off); err != nil || off < 0 || off > 30 {
				return 0, fmt.Errorf("%w: signal %q", ErrInvalidValue, s)
			}
		}
		return unix.Signal(34 + off), nil
	}
	var num int
	if _, err := fmt.Sscanf(n, "%d", &num); err == nil && fmt.Sprint(num) == n {
		if num < 1 || num > 64 {
			return 0, fmt.Errorf("%w: signal %q", ErrInvalidValue, s)
		}
		return unix.Signal(num), nil
	}
	if sig := unix.SignalNum("SIG" + n); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%w: signal %q: use a name like SIGTERM or SIGRTMIN+3, or halt", ErrInvalidValue, s)
}
