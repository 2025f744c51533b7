package container

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/store"
)

// vzctl's per-VE device, capability and feature settings (set --devices, --devnodes,
// --capability, --features), kept in the VE's config and applied at its next start.

// Device is a host device a VE may use.
type Device = store.Device

// ParseDeviceRule reads vzctl's --devices value: b|c:MAJOR:MINOR|all:r|w|rw|none.
func ParseDeviceRule(s string) (Device, error) {
	bad := func(why string) (Device, error) {
		return Device{}, fmt.Errorf("%w: --devices %q: %s (use b|c:MAJOR:MINOR|all:r|w|rw|none)", ErrInvalidValue, s, why)
	}
	f := strings.Split(s, ":")
	if len(f) != 4 || (f[0] != "b" && f[0] != "c") {
		return bad("not a device rule")
	}
	d := Device{Type: f[0], Major: -1, Minor: -1}
	var err error
	if f[1] != "all" {
		if d.Major, err = strconv.ParseInt(f[1], 10, 32); err != nil || d.Major < 0 {
			return bad("bad major number")
		}
	}
	if f[2] != "all" {
		if d.Minor, err = strconv.ParseInt(f[2], 10, 32); err != nil || d.Minor < 0 {
			return bad("bad minor number")
		}
	}
	if d.Access, err = devAccess(f[3]); err != nil {
		return bad(err.Error())
	}
	return d, nil
}

// ParseDevNode reads vzctl's --devnodes value: NAME:r|w|rw|none, NAME a node under the
// host's /dev ("net/tun"), which the VE gets as the same node.
func ParseDevNode(s string) (Device, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return Device{}, fmt.Errorf("%w: --devnodes %q: use NAME:r|w|rw|none (NAME under /dev, such as net/tun)", ErrInvalidValue, s)
	}
	name, acc := strings.TrimPrefix(s[:i], "/dev/"), s[i+1:]
	clean := filepath.Clean(name)
	if clean != name || strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) || strings.ContainsAny(name, " \t\n") {
		return Device{}, fmt.Errorf("%w: --devnodes %q: the name must be a plain path under /dev", ErrInvalidValue, s)
	}
	access, err := devAccess(acc)
	if err != nil {
		return Device{}, fmt.Errorf("%w: --devnodes %q: %v", ErrInvalidValue, s, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/dev", name), &st); err != nil {
		return Device{}, fmt.Errorf("%w: --devnodes %q: /dev/%s: %v", ErrInvalidValue, s, name, err)
	}
	d := Device{Path: name, Access: access, Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev)))}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		d.Type = "c"
	case unix.S_IFBLK:
		d.Type = "b"
	default:
		return Device{}, fmt.Errorf("%w: --devnodes %q: /dev/%s is not a device", ErrInvalidValue, s, name)
	}
	return d, nil
}

func devAccess(a string) (string, error) {
	switch a {
	case "r", "w", "rw":
		return a, nil
	case "none":
		return "", nil
	}
	return "", fmt.Errorf("access %q: use r, w, rw or none", a)
}

// setDevice adds or replaces a device of the VE (the same node, or the same rule); access
// "" (none) removes it.
func setDevice(list []Device, d Device) []Device {
	same := func(e Device) bool {
		if d.Path != "" || e.Path != "" {
			return e.Path == d.Path
		}
		return e.Type == d.Type && e.Major == d.Major && e.Minor == d.Minor
	}
	list = slices.DeleteFunc(slices.Clone(list), same)
	if d.Access != "" {
		list = append(list, d)
	}
	return list
}

// ParseCapability reads vzctl's --capability value: NAME:on|off, NAME a Linux capability
// in lower case without CAP_ (net_admin).
func ParseCapability(s string) (string, bool, error) {
	name, v, ok := strings.Cut(strings.ToLower(s), ":")
	name = strings.TrimPrefix(name, "cap_")
	if !ok || (v != "on" && v != "off") {
		return "", false, fmt.Errorf("%w: --capability %q: use NAME:on|off", ErrInvalidValue, s)
	}
	for _, c := range capability.ListKnown() {
		if c.String() == name {
			return name, v == "on", nil
		}
	}
	return "", false, fmt.Errorf("%w: --capability %q: no Linux capability %q (OpenVZ's ve_admin and setveid have no stock-kernel equivalent)", ErrInvalidValue, s, name)
}

// vzFeatures are vzctl's --features names. ppp gives the VE /dev/ppp; the others name what
// every VE has in its own network namespace when the host has the modules (bridge, ipip,
// ipgre, sit) or what no user namespace can have (nfs, nfsd): they are kept and shown, and
// reported as not changing anything.
var vzFeatures = []string{"sysfs", "nfs", "sit", "ipip", "ppp", "ipgre", "bridge", "nfsd"}

// ParseFeature reads a --features value: NAME:on|off.
func ParseFeature(s string) (string, bool, error) {
	name, v, ok := strings.Cut(s, ":")
	if !ok || (v != "on" && v != "off") || !slices.Contains(vzFeatures, name) {
		return "", false, fmt.Errorf("%w: --features %q: use NAME:on|off, NAME one of %s", ErrInvalidValue, s, strings.Join(vzFeatures, ", "))
	}
	return name, v == "on", nil
}

// applyDevices adds the VE's devices to its spec: the cgroup rules, and the nodes (which
// libcontainer makes, or binds from the host in a user-namespace VE). ppp:on brings /dev/ppp.
func applyDevices(s *specs.Spec, cfg *Config) error {
	devs := slices.Clone(cfg.Devices)
	if cfg.Features["ppp"] && !slices.ContainsFunc(devs, func(d Device) bool { return d.Path == "ppp" }) {
		d, err := ParseDevNode("ppp:rw")
		if err != nil {
			return fmt.Errorf("feature ppp: %w", err)
		}
		devs = append(devs, d)
	}
	for _, d := range devs {
		major, minor := &d.Major, &d.Minor
		if d.Major < 0 {
			major = nil
		}
		if d.Minor < 0 {
			minor = nil
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices,
			specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: major, Minor: minor, Access: d.Access})
		if d.Path == "" {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/dev", d.Path), &st); err != nil {
			return fmt.Errorf("device node /dev/%s: %w", d.Path, err)
		}
		mode := os.FileMode(st.Mode & 0o777)
		zero := uint32(0)
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: filepath.Join("/dev", d.Path), Type: d.Type,
			Major: d.Major, Minor: d.Minor, FileMode: &mode, UID: &zero, GID: &zero})
	}
	return nil
}

// applyCapabilities turns the VE's --capability settings on or off in its spec.
func applyCapabilities(s *specs.Spec, cfg *Config) {
	if len(cfg.Capabilities) == 0 {
		return
	}
	c := s.Process.Capabilities
	for name, on := range cfg.Capabilities {
		capName := "CAP_" + strings.ToUpper(name)
		for _, set := range []*[]string{&c.Bounding, &c.Effective, &c.Permitted} {
			*set = slices.DeleteFunc(slices.Clone(*set), func(x string) bool { return x == capName })
			if on {
				*set = append(*set, capName)
			}
		}
	}
}

// offOnly keeps the capabilities turned off: a user-namespace VE's seccomp profile is built
// for what its namespace contains, less those.
func offOnly(m map[string]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		if !v {
			out[k] = false
		}
	}
	return out
}

// formatCapabilities is the --capability settings as vzctl writes them: name:on,name:off.
func formatCapabilities(m map[string]bool) string {
	return formatOnOff(m)
}

func formatOnOff(m map[string]bool) string {
	var out []string
	for k, v := range m {
		if v {
			out = append(out, k+":on")
		} else {
			out = append(out, k+":off")
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

// FormatDevices renders the devices as vzctl's DEVICES and DEVNODES values.
func FormatDevices(list []Device) (rules, nodes string) {
	var r, n []string
	num := func(v int64) string {
		if v < 0 {
			return "all"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, d := range list {
		if d.Path != "" {
			n = append(n, d.Path+":"+d.Access)
		} else {
			r = append(r, d.Type+":"+num(d.Major)+":"+num(d.Minor)+":"+d.Access)
		}
	}
	return strings.Join(r, " "), strings.Join(n, " ")
}

// FormatCapabilities and FormatFeatures render the settings as vzlist and vzctl show them.
func FormatCapabilities(m map[string]bool) string { return formatCapabilities(m) }
func FormatFeatures(m map[string]bool) string     { return formatOnOff(m) }

// applyVZSettings takes set's --capability, --devices, --devnodes and --features into cfg.
func applyVZSettings(cfg *Config, o SetOptions, ch *change) error {
	if len(o.Capabilities) > 0 {
		caps := maps.Clone(cfg.Capabilities)
		if caps == nil {
			caps = map[string]bool{}
		}
		for _, c := range o.Capabilities {
			name, on, err := ParseCapability(c)
			if err != nil {
				return err
			}
			caps[name] = on
		}
		cfg.Capabilities = caps
		ch.stored = append(ch.stored, "capability")
	}
	for _, spec := range o.Devices {
		d, err := ParseDeviceRule(spec)
		if err != nil {
			return err
		}
		cfg.Devices = setDevice(cfg.Devices, d)
	}
	for _, spec := range o.DevNodes {
		d, err := ParseDevNode(spec)
		if err != nil {
			return err
		}
		if err := usableInUserNS(cfg, d); err != nil {
			return err
		}
		cfg.Devices = setDevice(cfg.Devices, d)
	}
	if len(o.Devices)+len(o.DevNodes) > 0 {
		ch.stored = append(ch.stored, "devices")
	}
	if len(o.Features) > 0 {
		fs := maps.Clone(cfg.Features)
		if fs == nil {
			fs = map[string]bool{}
		}
		for _, f := range o.Features {
			name, on, err := ParseFeature(f)
			if err != nil {
				return err
			}
			if name == "ppp" && on {
				if _, err := os.Stat("/dev/ppp"); err != nil {
					return fmt.Errorf("%w: --features ppp:on: the host has no /dev/ppp (load ppp_generic on the host first): %v", ErrInvalidValue, err)
				}
			}
			fs[name] = on
		}
		cfg.Features = fs
		ch.stored = append(ch.stored, "features")
	}
	return nil
}

// featureWarning names the features that change nothing on a stock kernel ("" when none).
func featureWarning(o SetOptions) string {
	var names []string
	for _, f := range o.Features {
		if name, _, err := ParseFeature(f); err == nil && name != "ppp" {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return strings.Join(names, ", ") + ": kept and shown, but they change nothing here: every VE has its own network namespace (bridges and tunnels work there when the host has the modules), and NFS needs the host's"
}

// usableInUserNS refuses a node that a user-namespace VE would get but could not open: its
// root is an unprivileged host uid, and the node is the host's own (bound, not made), so the
// host's mode must let others have the access asked for.
func usableInUserNS(cfg *Config, d Device) error {
	if cfg.UserNS == nil || d.Access == "" {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/dev", d.Path), &st); err != nil {
		return nil // ParseDevNode has reported it
	}
	need := uint32(0)
	if strings.Contains(d.Access, "r") {
		need |= 0o004
	}
	if strings.Contains(d.Access, "w") {
		need |= 0o002
	}
	if st.Mode&need != need {
		return fmt.Errorf("%w: --devnodes %s:%s: the VE has a user namespace, so its root opens the host's /dev/%s as an unprivileged user, and the node's mode %04o does not allow that: chmod it on the host (o+%s), or use a privileged VE (set --userns no --save)",
			ErrInvalidValue, d.Path, d.Access, d.Path, st.Mode&0o7777, d.Access)
	}
	return nil
}
