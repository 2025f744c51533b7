package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/store"
)

// Errors of checkpoint and restore, with vzctl's exit codes (16 and 17).
var (
	// ErrCheckpoint means a VE could not be checkpointed, or no usable criu is installed.
	ErrCheckpoint = errors.New("checkpoint failed")
	// ErrRestore means a VE could not be restored from its dump.
	ErrRestore = errors.New("restore failed")
)

// DefaultCriu is where `make criu` installs criu 4.1 with its own libraries.
const DefaultCriu = "/usr/local/lib/vectl/criu/criu"

// criuMinVersion is the oldest criu vectl uses: older ones fail on current kernels (vDSO)
// and cannot dump pidfds.
const criuMinVersion = 40100

// howToGetCriu ends every "no usable criu" error.
const howToGetCriu = "install criu >= 4.1: make criu (in vectl's source tree) puts one in " + DefaultCriu + ", or set VECTL_CRIU to one"

// criuTool is a usable criu and how to run it on this host.
type criuTool struct {
	Path    string `json:"path"`
	Version int    `json:"version"` // 40101 for 4.1.1
	// NoBreakpoints: hardware breakpoints do not fire on this host (a VM without them), so
	// criu must trace system calls instead (CRIU_FAULT=130, its FI_NO_BREAKPOINTS switch);
	// otherwise every dump hangs in the parasite's cure.
	NoBreakpoints bool `json:"no_breakpoints"`
	// NoInetSockets: this criu cannot dump TCP, UDP or raw sockets on this kernel (see
	// inetSocketsDumpable).
	NoInetSockets bool `json:"no_inet_sockets"`
	// NestedMounts: this criu restores file bind mounts in nested mount namespaces. criu
	// 4.2.1 does not (see nestedMounts); the build make criu installs (DefaultCriu, its
	// VERSION naming its patches) does.
	NestedMounts bool `json:"nested_mounts"`
	// NftLock: this criu locks a VE's network during a dump with nftables (`criu check
	// --feature network_lock_nftables`), which vectl then asks for (nftLock).
	NftLock bool `json:"nft_lock"`
	// CPUInfo is this CPU as criu describes it (cpuinfo.img of criu cpuinfo dump): every
	// dump carries it, and a migration's destination checks it.
	CPUInfo []byte `json:"cpuinfo"`
	BootID  string `json:"boot_id"`
	ModTime int64  `json:"mtime"`
}

var (
	criuOnce sync.Once
	criuErr  error
	criuUsed criuTool
)

// criu finds a usable criu (VECTL_CRIU, DefaultCriu, then criu on PATH), checks it once
// per boot (version, `criu check`, whether dumps need CRIU_FAULT=130; cached in the run
// directory) and sets up this process's environment so that libcontainer, which runs
// "criu" from PATH with the caller's environment, runs that one the right way.
func (m *Manager) criu() (*criuTool, error) {
	criuOnce.Do(func() {
		// libcontainer quotes CRIU's log as warnings on stderr; vectl's error quotes the cause.
		logrus.SetLevel(logrus.ErrorLevel)
		criuUsed, criuErr = m.findCriu()
		if criuErr != nil {
			return
		}
		os.Setenv("PATH", filepath.Dir(criuUsed.Path)+":"+os.Getenv("PATH"))
		if dir, err := m.criuKdatDir(criuUsed.BootID); err == nil {
			os.Setenv("CRIU_KDAT_DIR", dir)
		}
		criuErr = m.writeCriuConf(criuUsed.NftLock)
		if criuUsed.NoBreakpoints {
			os.Setenv("CRIU_FAULT", "130")
		}
	})
	if criuErr != nil {
		return nil, criuErr
	}
	return &criuUsed, nil
}

// criuConf is the base of vectl's CRIU configurations: the shared one every VE's spec names
// (criuConfPath) and the VE's own (in its run directory) that its container names instead,
// which libcontainer hands to CRIU (whose settings override the RPC's). dumpConf completes
// the VE's before each dump. CRIU finds the path of an inotify watch it cannot open by its
// file handle (as on an overlayfs root) by scanning directories for the inode: besides its
// default ones, the time zones, which systemd watches through /etc/localtime (and, after a
// restore, directly); a VE's own file names the very files instead. address: the page
// server of a lazy dump (migrate --lazy) listens on the loopback only (over RPC criu takes
// only its port).
const criuConf = "irmap-scan-path /usr/share/zoneinfo\naddress 127.0.0.1\n"

// criuVerbosity is the line of vectl's CRIU configurations that sets CRIU's log level
// (Options.CriuLogLevel; 2, CRIU's own default, errors and warnings, if unset). libcontainer
// asks for debug (4): some 6500 lines for a Debian VE's dump, 15 ms of its frozen time here.
// The file's level wins with container/criupatch/rpc-conf-verbosity.patch.
func (m *Manager) criuVerbosity() string { return fmt.Sprintf("verbosity=%d\n", m.criuLogLevel()) }

func (m *Manager) criuLogLevel() int {
	if m.opts.CriuLogLevel == 0 {
		return 2
	}
	return m.opts.CriuLogLevel
}

func (m *Manager) criuConfPath() string { return filepath.Join(m.opts.RunDir, "criu.conf") }

// writeCriuConf writes the shared CRIU configuration (criuConfPath), with nftLock's line when
// the criu in use locks networks with nftables.
func (m *Manager) writeCriuConf(nft bool) error {
	conf := criuConf + m.criuVerbosity()
	if nft {
		conf += nftLockLine
	}
	if data, err := os.ReadFile(m.criuConfPath()); err == nil && string(data) == conf {
		return nil
	}
	if err := os.MkdirAll(m.opts.RunDir, 0o700); err != nil {
		return err
	}
	return store.WriteFileAtomic(m.criuConfPath(), []byte(conf), 0o644)
}

func (m *Manager) findCriu() (criuTool, error) {
	path := os.Getenv("VECTL_CRIU")
	if path == "" {
		if _, err := os.Stat(DefaultCriu); err == nil {
			path = DefaultCriu
		} else if p, err := exec.LookPath("criu"); err == nil {
			path = p
		} else {
			return criuTool{}, fmt.Errorf("%w: no criu found: %s", ErrCheckpoint, howToGetCriu)
		}
	}
	if filepath.Base(path) != "criu" {
		return criuTool{}, fmt.Errorf("%w: VECTL_CRIU=%s: the file must be named criu (libcontainer runs it by that name)", ErrCheckpoint, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return criuTool{}, fmt.Errorf("%w: %v: %s", ErrCheckpoint, err, howToGetCriu)
	}
	t := criuTool{Path: path, BootID: readTrim("/proc/sys/kernel/random/boot_id"), ModTime: st.ModTime().UnixNano()}
	cache := filepath.Join(m.opts.RunDir, "criu.json")
	var cached criuTool
	if data, err := os.ReadFile(cache); err == nil && json.Unmarshal(data, &cached) == nil &&
		cached.Path == t.Path && cached.BootID == t.BootID && cached.ModTime == t.ModTime && len(cached.CPUInfo) > 0 {
		return cached, nil
	}
	if t.Version, err = criuVersion(path); err != nil {
		return criuTool{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, "check").CombinedOutput(); err != nil {
		return criuTool{}, fmt.Errorf("%w: %s check says it cannot work on this kernel (%s): %s", ErrCheckpoint, path,
			lastLine(out, err), howToGetCriu)
	}
	if t.NoBreakpoints, err = probeBreakpoints(path); err != nil {
		return criuTool{}, err
	}
	t.NoInetSockets = !inetSocketsDumpable(t.Version)
	t.NftLock = exec.CommandContext(ctx, path, "check", "--feature", "network_lock_nftables").Run() == nil
	t.NestedMounts = path == DefaultCriu && vectlBuild().MatchString(readTrim(filepath.Join(filepath.Dir(path), "VERSION")))
	if t.CPUInfo, err = cpuInfoImage(path); err != nil {
		return criuTool{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if data, err := json.Marshal(t); err == nil && os.MkdirAll(m.opts.RunDir, 0o700) == nil {
		store.WriteFileAtomic(cache, data, 0o600)
	}
	return t, nil
}

// criuKdatDir is where criu keeps what it found out about the kernel (criu.kdat, some 50 ms
// of probes, among them two iptables runs, at every criu start without it): criu keeps it in
// /run only where /run is a tmpfs, and the build make criu installs takes the directory
// from $CRIU_KDAT_DIR (container/criupatch/kdat-cache-dir.patch; other builds ignore it).
// The directory is per boot (bootID) and root's alone; those of earlier boots go.
func (m *Manager) criuKdatDir(bootID string) (string, error) {
	if bootID == "" || bootID == "." || bootID == ".." || strings.ContainsAny(bootID, "/\x00") {
		return "", fmt.Errorf("boot id %q", bootID)
	}
	base := filepath.Join(m.opts.RunDir, "criu-kdat")
	dir := filepath.Join(base, bootID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if ents, err := os.ReadDir(base); err == nil {
		for _, e := range ents {
			if e.Name() != bootID {
				os.RemoveAll(filepath.Join(base, e.Name()))
			}
		}
	}
	return dir, nil
}

// dumpConf completes the CRIU configuration that a VE's container names, if it is the VE's
// own, for a dump (the shared one is complete, and one that is gone, a restore's in its
// dump, is left so):
//
//   - network-lock nftables, when nft (the criu in use can): CRIU locks the VE's network
//     with one netlink transaction of its own instead of its default, iptables-restore for
//     IPv4 and IPv6, to lock and again to unlock: four programs, some 30 ms of the VE's
//     frozen time here. A method the file names already stays.
//   - irmap-scan-path for each of scan (VE paths, one per line, in place of the others):
//     CRIU looks at these first for the inodes of inotify watches (see criuConf).
//   - the log level (criuVerbosity), in place of the one there.
func (m *Manager) dumpConf(cfg configs.Config, nft bool, scan []string) error {
	path := criuConfOf(cfg)
	if path == "" || path == m.criuConfPath() {
		return nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var b strings.Builder
	lock := ""
	if nft {
		lock = nftLockLine
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		line += "\n"
		switch {
		case strings.HasPrefix(line, "network-lock "):
			lock = line
		case line != "\n" && !strings.HasPrefix(line, "irmap-scan-path ") && !strings.HasPrefix(line, "verbosity=") &&
			!strings.HasPrefix(line, "cgroup-yard "):
			b.WriteString(line)
		}
	}
	b.WriteString(m.cgroupYardLine())
	for _, p := range scan {
		b.WriteString("irmap-scan-path " + p + "\n")
	}
	b.WriteString(m.criuVerbosity())
	b.WriteString(lock)
	if b.String() == string(data) {
		return nil
	}
	// No fsync: the file is the running VE's, in the run directory, and the VE may be
	// frozen already (an fsync can wait for a commit of other files' data here).
	return store.ReplaceFile(path, []byte(b.String()), 0o644)
}

// localtimeScan lists where the inodes of a running VE's inotify watches on its time zone
// are (see dumpConf): systemd watches /etc/localtime, and after a restore the zone file it
// points to, which root is the VE's root seen from here (/proc/PID/root). The VE's own
// link is used only when it is a plain path: it goes into CRIU's configuration.
func localtimeScan(root string) []string {
	scan := []string{"/etc/localtime"}
	target, err := os.Readlink(filepath.Join(root, "etc/localtime"))
	if err != nil {
		return scan
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join("/etc", target)
	}
	target = filepath.Clean(target)
	if len(target) > 256 || strings.ContainsFunc(target, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._+-", r))
	}) {
		return scan
	}
	return append(scan, target)
}

const nftLockLine = "network-lock nftables\n"

// vectlBuild is the VERSION of the criu make criu builds: VERSION-PATCHES (a digest).
var vectlBuild = lazyRegexp(`^\d+\.\d+(\.\d+)?-[0-9a-f]{12}$`)

var versionRE = lazyRegexp(`Version: (\d+)\.(\d+)(?:\.(\d+))?`)

// criuVersion runs criu --version and returns the version as criu's RPC does (40101).
func criuVersion(path string) (int, error) {
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%w: %s --version: %s: %s", ErrCheckpoint, path, lastLine(out, err), howToGetCriu)
	}
	mm := versionRE().FindSubmatch(out)
	if mm == nil {
		return 0, fmt.Errorf("%w: %s --version prints no version: %s", ErrCheckpoint, path, howToGetCriu)
	}
	v := 0
	for _, s := range mm[1:] {
		n, _ := strconv.Atoi(string(s))
		v = v*100 + n
	}
	if v < criuMinVersion {
		return 0, fmt.Errorf("%w: %s is version %d.%d.%d, vectl needs 4.1 or later: %s", ErrCheckpoint, path,
			v/10000, v/100%100, v%100, howToGetCriu)
	}
	return v, nil
}

// probeBreakpoints dumps a throwaway process of its own (a sleep in a new session) with
// --leave-running. Where hardware breakpoints do not fire, the dump hangs in the parasite's
// cure; it is then killed and the same dump repeated with CRIU_FAULT=130, which must work.
func probeBreakpoints(path string) (bool, error) {
	try := func(fault bool) (bool, error) {
		dir, err := os.MkdirTemp("", "vectl-criu-probe-")
		if err != nil {
			return false, err
		}
		defer os.RemoveAll(dir)
		sleep := exec.Command("/bin/sleep", "60")
		sleep.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := sleep.Start(); err != nil {
			return false, err
		}
		defer func() {
			sleep.Process.Kill()
			sleep.Wait()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, path, "dump", "-t", strconv.Itoa(sleep.Process.Pid), "-D", dir,
			"--leave-running", "-o", "dump.log", "-v2")
		cmd.Env = os.Environ()
		if fault {
			cmd.Env = append(cmd.Env, "CRIU_FAULT=130")
		}
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			return false, nil
		}
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "dump.log"))
			return false, fmt.Errorf("%w: %s cannot dump a plain process on this host (%s): %s", ErrCheckpoint, path,
				criuReason(log, string(out)+err.Error()), howToGetCriu)
		}
		return true, nil
	}
	ok, err := try(false)
	if err != nil || ok {
		return false, err
	}
	ok, err = try(true)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%w: %s hangs dumping a plain process, even with CRIU_FAULT=130", ErrCheckpoint, path)
	}
	return true, nil
}

// criuReason is the first telling error line of a criu log (what CRIU says went wrong), or
// fallback. Lines that say nothing about the cause are skipped.
func criuReason(log []byte, fallback string) string {
	for _, line := range bytes.Split(log, []byte("\n")) {
		i := bytes.Index(line, []byte("Error ("))
		if i < 0 {
			continue
		}
		s := string(line[i:])
		if j := strings.Index(s, "): "); j >= 0 {
			s = s[j+3:]
		}
		s = strings.TrimSpace(s)
		if criuNoise().MatchString(s) {
			continue
		}
		return s
	}
	return strings.TrimSpace(fallback)
}

// criuNoise matches criu log errors that are consequences or harmless: criu's own rlimit
// without CAP_SYS_RESOURCE, a helper's exit status, the final verdict.
var criuNoise = lazyRegexp(`^(rlimit: Can't setup RLIMIT_NOFILE for self|exited, status=|Dumping FAILED|Restoring FAILED|Failed to restore)`)

func lastLine(out []byte, err error) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return err.Error()
}

// cmdError is a command's failure told by the last line it printed; it unwraps to the
// command's own error (its exit status) and keeps all it printed.
type cmdError struct {
	msg string
	err error
	out []byte
}

func (e *cmdError) Error() string { return e.msg }
func (e *cmdError) Unwrap() error { return e.err }

// rsyncVanished reports whether err, an rsync run's failure, comes only from source files
// that vanished while rsync copied them (removed by the running VE): its exit status 24
// ("some files vanished"), or 23 ("some files/attrs were not transferred") when every error
// it printed (a *cmdError keeps them) is the sender finding a file gone while it read the
// file's ACL or extended attributes (-A, -X), as a file removed between rsync's listing and
// that read gives. Everything else was copied.
func rsyncVanished(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	var ce *cmdError
	switch {
	case ee.ExitCode() == 24:
		return true
	case ee.ExitCode() == 23 && errors.As(err, &ce):
		return onlyVanishedAttrs(ce.out)
	}
	return false
}

// onlyVanishedAttrs reports whether rsync's output holds errors and each is the sender's
// read of an ACL or of extended attributes failing with ENOENT.
func onlyVanishedAttrs(out []byte) bool {
	n := 0
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "rsync: ") {
			continue // warnings, "file has vanished", the summary ("rsync error: ...")
		}
		attrs := strings.Contains(l, " get_acl: ") || strings.Contains(l, "xattr")
		if !strings.HasPrefix(l, "rsync: [sender] ") || !attrs || !strings.HasSuffix(l, ": No such file or directory (2)") {
			return false
		}
		n++
	}
	return n > 0
}

// inetSocketsDumpable reports whether criu (version v) can dump inet sockets here. Linux
// 6.16 made getsockopt(SO_PASSCRED) fail with EOPNOTSUPP on anything but unix, netlink
// and bluetooth sockets; criu up to 4.1.1 asks every socket for it and fails the dump
// ("sockets: Can't get 1:16 opt", checkpoint-restore/criu issue 2718), after which the
// dumped connections are reset. The kernel's side is asked directly, on a socket of our own.
func inetSocketsDumpable(v int) bool {
	if v >= 40200 {
		return true
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED)
	return !errors.Is(err, unix.EOPNOTSUPP)
}

// inetSockets counts the TCP, UDP and raw sockets that the processes of a VE hold (their
// inodes in the socket tables of the VE's network namespace).
func (m *Manager) inetSockets(id string) (int, error) {
	pids, err := m.cgroupPids(id)
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	held := map[string]bool{}
	for _, pid := range pids {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
				held[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6", "raw", "raw6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pids[0], table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if f := strings.Fields(line); len(f) > 9 && held[f[9]] {
				n++
			}
		}
	}
	return n, nil
}

// cpuInfoImage returns criu's description of this CPU (cpuinfo.img), which every dump carries
// and a migration's destination checks against its own.
func cpuInfoImage(criu string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "vectl-cpuinfo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command(criu, "cpuinfo", "dump", "-D", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("criu cpuinfo dump: %s", lastLine(out, err))
	}
	return os.ReadFile(filepath.Join(dir, "cpuinfo.img"))
}
