package template

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// debootstrapPackages are installed on top of minbase: systemd as init, and the tools an
// administrator expects inside a VE.
var debootstrapPackages = []string{"systemd-sysv", "iproute2", "procps", "iptables", "iputils-ping"}

// maskedUnits cannot work inside a VE (no udev, no kernel modules, no sysctl or clock of its
// own, no real terminals) and would only show up as failed.
var maskedUnits = []string{
	"systemd-udevd.service",
	"systemd-udevd-control.socket",
	"systemd-udevd-kernel.socket",
	"systemd-udev-trigger.service",
	"systemd-udev-settle.service",
	"systemd-modules-load.service",
	"sys-kernel-config.mount",
	"sys-kernel-debug.mount",
	"sys-kernel-tracing.mount",
	"sys-fs-fuse-connections.mount",
	"systemd-sysctl.service",
	"systemd-binfmt.service",
	"systemd-timesyncd.service",
	"getty@tty1.service",
	"serial-getty@ttyS0.service",
}

// debianHosts is Debian's default /etc/hosts without the 127.0.1.1 line, which names the
// host the template was built on.
const debianHosts = `127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
`

var (
	suiteRE   = lazyRegexp(`^[a-z0-9][a-z0-9.-]*$`)
	packageRE = lazyRegexp(`^[a-z0-9][a-z0-9+.-]+$`) // Debian policy 5.6.1
)

// debootstrap is a validated debootstrap build.
type debootstrap struct {
	suite, mirror string
	include       []string // the defaults, then the extras
	extras        []string // the caller's packages that are not defaults
	log           io.Writer
}

func newDebootstrap(opts BuildOptions) (*debootstrap, error) {
	d := &debootstrap{suite: opts.Suite, mirror: opts.Mirror, log: opts.Log}
	if d.suite == "" {
		d.suite = "bookworm"
	}
	if d.mirror == "" {
		d.mirror = "http://deb.debian.org/debian"
	}
	if d.log == nil {
		d.log = io.Discard
	}
	// Arguments go to debootstrap's command line: refuse anything that could read as an option.
	if !suiteRE().MatchString(d.suite) {
		return nil, fmt.Errorf("invalid debootstrap suite %q", d.suite)
	}
	if u, err := url.Parse(d.mirror); err != nil || u.Host == "" && u.Scheme != "file" ||
		!slices.Contains([]string{"http", "https", "ftp", "file"}, u.Scheme) {
		return nil, fmt.Errorf("invalid debootstrap mirror %q: want an http, https, ftp or file URL", d.mirror)
	}
	d.include = slices.Clone(debootstrapPackages)
	for _, item := range opts.Include {
		for _, p := range strings.Split(item, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !packageRE().MatchString(p) {
				return nil, fmt.Errorf("invalid package name %q", p)
			}
			if !slices.Contains(d.include, p) {
				d.include = append(d.include, p)
				d.extras = append(d.extras, p)
			}
		}
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return nil, errors.New("debootstrap not found: apt-get install debootstrap")
	}
	return d, nil
}

// source is Info.Source of the build.
func (d *debootstrap) source() string {
	s := "debootstrap " + d.suite + " " + d.mirror
	if len(d.extras) > 0 {
		s += " +" + strings.Join(d.extras, ",")
	}
	return s
}

// build runs debootstrap into dir and then makes the result a VE template.
func (d *debootstrap) build(ctx context.Context, dir string) error {
	dir, err := filepath.Abs(dir) // debootstrap chroots into it and wants an absolute path
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(d.include, ","), d.suite, dir, d.mirror)
	tail := &tailWriter{max: 4096}
	cmd.Stdout = io.MultiWriter(d.log, tail)
	cmd.Stderr = cmd.Stdout
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	// On cancellation, SIGTERM the whole process group: debootstrap's exit trap then
	// unmounts the /proc and /sys it mounted in the tree, which SIGKILL would leave behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	if err := cmd.Run(); err != nil {
		if last := tail.lastLine(); last != "" {
			return fmt.Errorf("debootstrap %s: %w: %s", d.suite, err, last)
		}
		return fmt.Errorf("debootstrap %s: %w", d.suite, err)
	}
	if err := finishDebian(dir); err != nil {
		return fmt.Errorf("prepare debootstrapped tree: %w", err)
	}
	return nil
}

// finishDebian turns a fresh debootstrap tree into a template that every VE can share: no
// identity of its own, no downloaded package lists, no device nodes, and the systemd units
// that cannot work in a VE masked. Every write goes through tree, never a plain path join:
// the tree's symlinks came from packages.
func finishDebian(dir string) error {
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	empty := func() io.Reader { return strings.NewReader("") }
	steps := []func() error{
		// Each VE must get its own machine id at first boot: an empty file makes systemd
		// generate one (and not run the first-boot wizard).
		func() error { return t.writeFile("etc/machine-id", empty(), 0o444) },
		func() error { return t.removeIfRegular("var/lib/dbus/machine-id") },
		func() error { return t.writeFile("etc/hostname", strings.NewReader("localhost\n"), 0o644) },
		func() error { return t.writeFile("etc/hosts", strings.NewReader(debianHosts), 0o644) },
		// A regular file, not a symlink into /run: the runtime writes the VE's nameservers.
		func() error { return t.writeFile("etc/resolv.conf", empty(), 0o644) },
		func() error {
			return t.clearDir("var/lib/apt/lists", func(n string, _ *unix.Stat_t) bool { return n != "partial" })
		},
		func() error { return t.clearDir("var/lib/apt/lists/partial", nil) },
		func() error {
			return t.clearDir("var/cache/apt", func(n string, st *unix.Stat_t) bool {
				return st.Mode&unix.S_IFMT == unix.S_IFREG && strings.HasSuffix(n, ".bin")
			})
		},
		func() error {
			return t.clearDir("var/cache/apt/archives", func(n string, st *unix.Stat_t) bool {
				return st.Mode&unix.S_IFMT == unix.S_IFREG && strings.HasSuffix(n, ".deb")
			})
		},
		// A VE gets its own /dev from the runtime.
		func() error { return t.clearDir("dev", nil) },
		func() error {
			return t.writeFile("etc/fstab", strings.NewReader("# vectl: the runtime mounts the VE's filesystems\n"), 0o644)
		},
		func() error { return t.mkdirAll("etc/systemd/system", 0o755) },
	}
	for _, u := range maskedUnits {
		steps = append(steps, func() error { return t.symlink("etc/systemd/system/"+u, "/dev/null") })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

// removeBuildTree removes a build tree after unmounting whatever a killed debootstrap left
// mounted in it; it refuses to remove a tree that still has mounts, since that would delete
// through them.
func removeBuildTree(dir string) error {
	// mountinfo has absolute paths with symlinks resolved.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	for i := len(mounts) - 1; i >= 0; i-- { // mountinfo lists parents first
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if mounts, err = mountsUnder(dir); err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(mounts, " "))
	}
	return removeTree(dir)
}

// mountsUnder returns the mount points at or below dir, in /proc/self/mountinfo order.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return mounts, nil
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }

// tailWriter keeps the last max bytes written to it, for error messages.
type tailWriter struct {
	max int
	buf []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	if len(w.buf) > w.max {
		w.buf = append(w.buf[:0], w.buf[len(w.buf)-w.max:]...)
	}
	return len(p), nil
}

// lastLine returns the last non-empty line written, where debootstrap puts its reason.
func (w *tailWriter) lastLine() string {
	lines := strings.Split(strings.TrimSpace(string(w.buf)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
