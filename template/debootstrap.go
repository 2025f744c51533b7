package template

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// debootstrapPackages are installed on top of minbase: the tools an administrator expects
// inside a VE, and the init's packages (initPackages).
var debootstrapPackages = []string{"iproute2", "procps", "iptables", "iputils-ping"}

// initPackages are the Debian packages that make each init system PID 1 (Debian's OpenRC runs
// under sysvinit's init).
var initPackages = map[string][]string{
	initSystemd:  {"systemd-sysv"},
	initSysvinit: {"sysvinit-core"},
	initOpenRC:   {"sysvinit-core", "openrc"},
	initRunit:    {"runit-init"},
}

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
	"systemd-journald-audit.socket", // no audit in a VE; systemd 247 (bullseye) fails it
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

// initOf returns the init system a package of initPackages belongs to ("" for others).
func initOf(pkg string) string {
	for _, init := range []string{initSystemd, initSysvinit, initOpenRC, initRunit} {
		if slices.Contains(initPackages[init], pkg) {
			return init
		}
	}
	return ""
}

// debootstrap is a validated debootstrap build.
type debootstrap struct {
	suite, mirror string
	init          string
	cacheDir      string
	include       []string // the defaults, then the extras
	extras        []string // the caller's packages that are not defaults
	log           io.Writer
}

func newDebootstrap(opts BuildOptions) (*debootstrap, error) {
	d := &debootstrap{suite: opts.Suite, mirror: opts.Mirror, init: opts.Init, cacheDir: opts.CacheDir, log: opts.Log}
	if d.cacheDir != "" && !filepath.IsAbs(d.cacheDir) {
		return nil, fmt.Errorf("invalid debootstrap cache directory %q: want an absolute path", d.cacheDir)
	}
	if d.suite == "" {
		d.suite = "bookworm"
	}
	if d.init == "" {
		d.init = initSystemd
	}
	if initPackages[d.init] == nil {
		return nil, fmt.Errorf("invalid init %q: want systemd, sysvinit, openrc or runit", d.init)
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
	d.include = append(slices.Clone(initPackages[d.init]), debootstrapPackages...)
	for _, item := range opts.Include {
		for _, p := range strings.Split(item, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if !packageRE().MatchString(p) {
				return nil, fmt.Errorf("invalid package name %q", p)
			}
			if other := initOf(p); other != "" && !slices.Contains(initPackages[d.init], p) {
				return nil, fmt.Errorf("package %s makes %s the init: use --init %s, not --include", p, other, other)
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
	if d.init != "" && d.init != initSystemd {
		s += " init " + d.init
	}
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
	// sysvinit-core depends on sysv-rc | openrc, and debootstrap installs the first
	// alternative whatever else it is given, which conflicts with openrc: OpenRC is
	// installed afterwards with the tree's own apt, which replaces sysv-rc.
	include := slices.DeleteFunc(slices.Clone(d.include), func(p string) bool { return p == "openrc" })
	args := []string{"--variant=minbase", "--include=" + strings.Join(include, ",")}
	if d.cacheDir != "" {
		// One directory per suite and mirror: debootstrap keeps the .debs there.
		sum := sha256.Sum256([]byte(d.mirror))
		cache := filepath.Join(d.cacheDir, d.suite+"-"+hex.EncodeToString(sum[:4]))
		if err := os.MkdirAll(cache, 0o755); err != nil {
			return err
		}
		args = append(args, "--cache-dir="+cache)
	}
	cmd := exec.CommandContext(ctx, "debootstrap", append(args, d.suite, dir, d.mirror)...)
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
	if d.init == initOpenRC {
		if err := d.chroot(ctx, dir, "apt-get", "install", "-y", "--no-install-recommends", "openrc"); err != nil {
			return err
		}
	}
	if d.init != initSystemd { // runit's stage 1 runs Debian's rcS.d scripts too
		if err := d.disableSysvScripts(ctx, dir); err != nil {
			return err
		}
	}
	if err := finishDebian(dir, d.init); err != nil {
		return fmt.Errorf("prepare debootstrapped tree: %w", err)
	}
	return nil
}

// sysvDisabled are the boot scripts of Debian's initscripts whose work a VE's runtime does
// or that cannot work in a VE (their mounts and remounts are refused, there is no hardware
// clock, kernel log or sysctl of the host to set, the host name is set before init runs).
// They would print failures at each boot. checkroot-bootclean.sh runs before /run/shm
// exists (checkroot.sh made it); mountall-bootclean.sh still cleans /tmp at boot.
var sysvDisabled = []string{"checkroot.sh", "checkroot-bootclean.sh", "checkfs.sh", "mountkernfs.sh",
	"hostname.sh", "procps", "bootlogs"}

// sysvRemoved are scripts with a stop action that cannot work in a VE (setting the hardware
// clock, remounting the root read-only): their links go entirely.
var sysvRemoved = []string{"hwclock.sh", "umountroot"}

// disableSysvScripts turns off sysvDisabled and sysvRemoved with Debian's own update-rc.d in
// the tree (as LXC's Debian template does), so that later package installs in the VE keep
// them off.
func (d *debootstrap) disableSysvScripts(ctx context.Context, dir string) error {
	run := func(args ...string) error { return d.chroot(ctx, dir, append([]string{"update-rc.d"}, args...)...) }
	for _, name := range sysvDisabled {
		if _, err := os.Stat(filepath.Join(dir, "etc/init.d", name)); err != nil {
			continue // not installed in this suite
		}
		if err := run(name, "disable"); err != nil {
			return err
		}
	}
	removed := sysvRemoved
	if d.init == initRunit {
		// runit halts and reboots by itself; Debian's halt and reboot scripts would call its
		// halt with options it does not know.
		removed = append(slices.Clone(removed), "halt", "reboot")
	}
	for _, name := range removed {
		if _, err := os.Stat(filepath.Join(dir, "etc/init.d", name)); err != nil {
			continue
		}
		if err := run("-f", name, "remove"); err != nil {
			return err
		}
	}
	return nil
}

// chroot runs a program of the tree inside it, its output going to the build's log.
func (d *debootstrap) chroot(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "chroot", append([]string{dir}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	fmt.Fprintf(d.log, "%s", out)
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, lastLine(out))
	}
	return nil
}

// lastLine is the last non-empty line of out.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// finishDebian turns a fresh debootstrap tree into a template that every VE can share: no
// identity of its own, no downloaded package lists, no device nodes, and what cannot work in
// a VE (udev, kernel modules, real terminals) turned off in the init's own configuration
// (finishInit). Every write goes through tree, never a plain path join: the tree's symlinks
// came from packages.
func finishDebian(dir, init string) error {
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
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	// checkroot.sh, disabled below for the inits that run it, made this link; systemd makes
	// it too.
	if !exists(t, "etc/mtab") {
		if err := t.symlink("etc/mtab", "../proc/self/mounts"); err != nil {
			return err
		}
	}
	return finishInit(t, init)
}

// finishInit adapts the init's configuration to a VE: systemd gets the units that cannot
// work masked; sysvinit (and OpenRC under it) runs no getty on virtual terminals the VE does
// not have, one on its console instead, and says when its boot scripts are done; so does
// runit, without the boot-complete line (its stage 2 is the sign).
func finishInit(t *tree, init string) error {
	switch init {
	case initSystemd:
		if err := t.mkdirAll("etc/systemd/system", 0o755); err != nil {
			return err
		}
		for _, u := range maskedUnits {
			if err := t.symlink("etc/systemd/system/"+u, "/dev/null"); err != nil {
				return err
			}
		}
	case initSysvinit, initOpenRC:
		data, err := t.readFile("etc/inittab")
		if err != nil {
			return err
		}
		if err := t.writeFile("etc/inittab", strings.NewReader(veInittab(string(data))), 0o644); err != nil {
			return err
		}
		if init == initOpenRC {
			conf, err := t.readFile("etc/rc.conf")
			if err != nil {
				return err
			}
			return t.writeFile("etc/rc.conf", strings.NewReader(openrcConf(string(conf))), 0o644)
		}
	case initRunit:
		// Debian's getty-run enables gettys on virtual terminals and on the kernel's
		// console= (the host's command line, read through /proc/cmdline): none exists in
		// a VE. One runs on the console instead.
		err := t.clearDir("etc/runit/runsvdir/default", func(n string, st *unix.Stat_t) bool {
			return st.Mode&unix.S_IFMT == unix.S_IFLNK && strings.HasPrefix(strings.TrimPrefix(n, "."), "getty-")
		})
		if err != nil {
			return err
		}
		steps := []func() error{
			func() error { return t.mkdirAll("etc/sv/getty-console", 0o755) },
			func() error {
				return t.writeFile("etc/sv/getty-console/run", strings.NewReader(runitConsoleGetty), 0o755)
			},
			func() error {
				return t.symlink("etc/sv/getty-console/supervise", "/run/runit/supervise/getty-console")
			},
			func() error {
				return t.symlink("etc/runit/runsvdir/default/getty-console", "/etc/sv/getty-console")
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
		}
	}
	return nil
}

// runitConsoleGetty is the run script of the getty on a runit VE's console.
const runitConsoleGetty = `#!/bin/sh
# vectl: a login prompt on the VE's console (vectl console)
exec chpst -P getty 38400 console vt100
`

// openrcConf adapts an OpenRC rc.conf to a VE. OpenRC skips the services keyworded -lxc when
// rc_sys is "lxc" (it does not recognise container=vectl by itself); the Debian scripts that
// cannot work in a VE get that keyword here, since OpenRC starts a service another one needs
// even when it is in no runlevel (update-rc.d disable is not enough), and so does its own
// cgroups service (it mounts cgroup v1 controllers). rc_cgroup_mode "legacy" keeps it from
// making a cgroup per service in a hierarchy the VE may not write.
func openrcConf(conf string) string {
	const mark = "# vectl: a container"
	if strings.Contains(conf, mark) {
		return conf
	}
	lines := strings.Split(strings.TrimRight(conf, "\n"), "\n")
	for i, l := range lines {
		if k, _, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "#"), "="); ok && k == "rc_sys" {
			lines[i] = `#` + strings.TrimPrefix(strings.TrimSpace(l), "#")
		}
	}
	lines = append(lines, mark, `rc_sys="lxc"`, `rc_cgroup_mode="legacy"`)
	for _, svc := range append(append(slices.Clone(sysvDisabled), sysvRemoved...), "cgroups") {
		lines = append(lines, fmt.Sprintf(`rc_%s_keyword="-lxc"`, strings.NewReplacer(".", "_", "-", "_").Replace(svc)))
	}
	return strings.Join(lines, "\n") + "\n"
}

// veInittab rewrites a sysvinit inittab for a VE: the getty of the first virtual terminal
// runs on the console, the other terminals' gettys are commented out, and the line that
// tells the host the boot is complete (AddBootedMark) is added.
func veInittab(text string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 4 && !strings.HasPrefix(l, "#") && f[2] == "respawn" && strings.Contains(f[3], "getty") {
			args := strings.Fields(f[3])
			if last := args[len(args)-1]; strings.HasPrefix(last, "tty") && !strings.HasPrefix(last, "ttyS") {
				if f[0] == "1" {
					args[len(args)-1] = "console"
					l = strings.Join(append(f[:3:3], strings.Join(args, " ")), ":")
				} else {
					l = "#" + l + "  # vectl: a VE has no virtual terminals"
				}
			}
		}
		out = append(out, l)
	}
	text, _ = withBootedLine(strings.Join(out, "\n") + "\n")
	return text
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
