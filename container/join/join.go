// Package join starts commands in a running VE: vectl's joiner (the C in package nsjoin, run
// as a sealed copy of this binary) enters the VE's namespaces and cgroups with its
// capabilities, rlimits and seccomp program, and libcontainer's exec helper does it for the
// VEs whose settings only libcontainer applies. It also owns the init wrapper, which loads the
// same seccomp program into a VE's init, and the per-boot cache of compiled seccomp programs.
//
// It knows a VE only through its libcontainer state and the paths Joiner names; it must not
// import package container or decide anything about a VE's lifecycle.
package join

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/nsjoin"
	"github.com/vectl/vectl/container/wire"
)

// ErrNotJoinable means the VE's configuration needs libcontainer's own exec helper.
var ErrNotJoinable = errors.New("not joinable by vectl's joiner")

// ErrGone means the VE's init is no longer the process its state names.
var ErrGone = errors.New("the VE's init is gone")

// Joiner starts commands in VEs and wraps their inits.
type Joiner struct {
	// CacheDir holds compiled seccomp programs; it must be on a tmpfs (the programs were
	// checked against this kernel).
	CacheDir string
	// RecordPath is the file that records which program a VE's processes run; it lives in
	// the VE's volatile run directory.
	RecordPath func(id string) string
	// SealDir is where sealed copies of vectl's binary are made for a VE (libcontainer's
	// state directory of the VE).
	SealDir func(id string) string
	// Program, when not nil, gives the path of a small program that holds the joiner and the
	// init wrapper (package nsjoin's C), run as a sealed copy instead of vectl's binary; ""
	// (a build without it) means vectl's binary.
	Program func() (string, error)
}

// sealed returns a sealed copy of the program that runs the joiner and the init wrapper for
// VE id, so that nothing in the VE can ever reach a host binary through /proc/PID/exe
// (CVE-2019-5736), as libcontainer does for its own helper: Program's, about 100 KB, copied
// into a sealed memfd of mode 0511 (which a VE's root may execute, not read). Without the
// program, or where the kernel makes no executable memfd (vm.memfd_noexec=2: libcontainer's
// fallback, a root-only temporary file, would be closed to the init of a VE with its own user
// namespace), vectl's own binary, sealed through a read-only overlay mount as libcontainer
// seals it.
func (j *Joiner) sealed(id string) (*os.File, error) {
	if j.Program != nil {
		if path, err := j.Program(); err == nil && path != "" {
			if f, err := sealedCopy(path); err == nil {
				return f, nil
			}
		}
	}
	return exeseal.CloneSelfExe(j.SealDir(id))
}

// sealedCopy copies the program at path into a sealed executable memfd.
func sealedCopy(path string) (*os.File, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	f, seal, err := exeseal.Memfd(filepath.Base(path))
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, err
	}
	if err := seal(&f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// PtySize is the size of a pty a command gets in the VE.
type PtySize struct{ Cols, Rows uint16 }

// Proc is a command started in a VE.
type Proc interface {
	Wait() (*os.ProcessState, error)
	Signal(os.Signal) error
}

// joined is a command started in a VE by the joiner (package nsjoin).
type joined struct {
	*os.Process
	master *os.File // the pty master with a TTY
}

// Start starts args in the running VE c with vectl's joiner, or with libcontainer's exec
// helper when the VE has settings only that applies. stdio are the command's standard
// streams (unused with a pty); tty, when not nil, asks for a pty of that size from the VE's
// devpts, whose master is returned.
func (j *Joiner) Start(c *libcontainer.Container, args, env []string, stdio [3]*os.File, tty *PtySize) (Proc, *os.File, error) {
	st, err := c.State()
	if err != nil {
		return nil, nil, err
	}
	spec, err := newSpec(st)
	if err == nil {
		p, err := j.startJoined(spec, args, env, stdio, tty)
		if !errors.Is(err, ErrNotJoinable) {
			if err != nil {
				return nil, nil, err
			}
			return p, p.master, nil
		}
	}
	return startLibcontainer(c, args, env, stdio, tty)
}

// startLibcontainer starts args in the VE with libcontainer's exec helper.
func startLibcontainer(c *libcontainer.Container, args, env []string, stdio [3]*os.File, tty *PtySize) (Proc, *os.File, error) {
	p := &libcontainer.Process{Args: args, Env: env, Cwd: "/", Capabilities: c.Config().Capabilities}
	if tty == nil {
		p.Stdin, p.Stdout, p.Stderr = stdio[0], stdio[1], stdio[2]
		if err := c.Run(p); err != nil {
			return nil, nil, err
		}
		return p, nil, nil
	}
	parent, child, err := wire.SocketPair()
	if err != nil {
		return nil, nil, err
	}
	defer parent.Close()
	p.ConsoleSocket = child
	p.ConsoleWidth, p.ConsoleHeight = tty.Cols, tty.Rows
	err = c.Run(p)
	child.Close()
	if err != nil {
		return nil, nil, err
	}
	master, err := wire.RecvFile(parent)
	if err != nil {
		p.Signal(unix.SIGKILL)
		p.Wait()
		return nil, nil, err
	}
	return p, master, nil
}

// spec is what the joiner needs to know of a VE, from its libcontainer state.
type spec struct {
	id      string
	pid     int    // the VE's init
	start   uint64 // its start time
	nsflags int
	caps    [4]uint64 // effective, permitted, inheritable, bounding
	rlimits []nsjoin.Rlimit
	cgroups map[string]string
	seccomp *configs.Seccomp // the profile, when libcontainer loaded it into the VE's init
}

var nsCloneFlags = map[configs.NamespaceType]int{
	configs.NEWNS: unix.CLONE_NEWNS, configs.NEWUTS: unix.CLONE_NEWUTS, configs.NEWIPC: unix.CLONE_NEWIPC,
	configs.NEWPID: unix.CLONE_NEWPID, configs.NEWNET: unix.CLONE_NEWNET, configs.NEWCGROUP: unix.CLONE_NEWCGROUP,
	configs.NEWUSER: unix.CLONE_NEWUSER, configs.NEWTIME: unix.CLONE_NEWTIME,
}

// newSpec extracts what the joiner needs from a VE's libcontainer state, or returns
// ErrNotJoinable for settings only libcontainer's exec helper applies.
func newSpec(st *libcontainer.State) (*spec, error) {
	cfg := &st.Config
	if !joinable(cfg) {
		return nil, ErrNotJoinable
	}
	s := &spec{id: st.ID, pid: st.InitProcessPid, start: st.InitProcessStartTime,
		cgroups: st.CgroupPaths, seccomp: cfg.Seccomp}
	for _, ns := range cfg.Namespaces {
		s.nsflags |= nsCloneFlags[ns.Type]
	}
	c := cfg.Capabilities
	for i, names := range [][]string{c.Effective, c.Permitted, c.Inheritable, c.Bounding} {
		s.caps[i] = capMask(names)
	}
	for _, r := range cfg.Rlimits {
		s.rlimits = append(s.rlimits, nsjoin.Rlimit{Resource: uint32(r.Type), Soft: r.Soft, Hard: r.Hard})
	}
	return s, nil
}

// joinable reports whether the joiner and the init wrapper can give a VE's processes all
// that libcontainer would: none of the settings only libcontainer applies.
func joinable(cfg *configs.Config) bool {
	if cfg.Capabilities == nil || len(cfg.Capabilities.Ambient) > 0 || cfg.NoNewPrivileges ||
		cfg.AppArmorProfile != "" || cfg.ProcessLabel != "" || cfg.Umask != nil || cfg.Personality != nil ||
		cfg.Scheduler != nil || cfg.IOPriority != nil || cfg.NoNewKeyring {
		return false
	}
	// A user namespace is joined first (setns takes them in that order), after which the
	// joiner becomes the VE's root with setresuid(0). A time namespace is joined at once:
	// the joiner is single-threaded, as the kernel requires.
	for _, ns := range cfg.Namespaces {
		if _, ok := nsCloneFlags[ns.Type]; !ok {
			return false
		}
	}
	return true
}

// capBits maps capability names (CAP_CHOWN, ...) to their numbers, for this build.
var capBits = sync.OnceValue(func() map[string]uint {
	m := map[string]uint{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = uint(c)
	}
	return m
})

// capMask turns capability names into a bitmask; like libcontainer it ignores names this
// build does not know.
func capMask(names []string) uint64 {
	var m uint64
	for _, n := range names {
		if bit, ok := capBits()[n]; ok {
			m |= 1 << bit
		}
	}
	return m
}

// startJoined starts args in the VE with the joiner: stdio are the command's standard streams
// (ignored with a pty); tty, when not nil, asks for a pty of that size from the VE's devpts.
func (j *Joiner) startJoined(s *spec, args, env []string, stdio [3]*os.File, tty *PtySize) (*joined, error) {
	sc, err := j.readRecord(s.id, s.seccomp)
	if err != nil {
		return nil, err
	}
	var bpf *os.File
	if sc != nil {
		if bpf, err = os.Open(sc.path); err != nil {
			return nil, err
		}
		defer bpf.Close()
	}
	pidfd, err := unix.PidfdOpen(s.pid, 0)
	if err != nil {
		return nil, ErrGone
	}
	pidf := os.NewFile(uintptr(pidfd), "pidfd")
	defer pidf.Close()
	// The pidfd pins the process; its start time tells that it is still the VE's init.
	if st, err := StartTime(s.pid); err != nil || st != s.start {
		return nil, ErrGone
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	sock, child := os.NewFile(uintptr(fds[0]), "nsjoin"), os.NewFile(uintptr(fds[1]), "nsjoin-child")
	exe, err := j.sealed(s.id)
	if err != nil {
		sock.Close()
		child.Close()
		return nil, fmt.Errorf("seal the joiner's program: %w", err)
	}
	defer exe.Close()
	req := &nsjoin.Request{NSFlags: uint32(s.nsflags), Caps: s.caps, Session: "_ses." + s.id, Cwd: "/",
		Rlimits: s.rlimits, Args: args}
	if tty != nil {
		req.TTY, req.Cols, req.Rows = true, tty.Cols, tty.Rows
	}
	rights := []int{int(pidf.Fd())}
	if bpf != nil {
		req.BPF, req.BPFFlags = true, uint32(sc.flags)
		rights = append(rights, int(bpf.Fd()))
	}
	msg, err := req.Marshal()
	if err != nil {
		sock.Close()
		child.Close()
		return nil, err
	}
	// The sync socket is the joiner's descriptor nsjoin.SyncFD: ExtraFiles start at 3.
	extra := []*os.File{child, exe}
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(nsjoin.SyncFD+1),
		Args:       []string{os.Args[0], nsjoin.Arg},
		Env:        env,
		ExtraFiles: extra,
		Dir:        "/",
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio[0], stdio[1], stdio[2]
	err = cmd.Start()
	child.Close()
	if err != nil {
		sock.Close()
		return nil, err
	}
	defer func() {
		sock.Close() // a joiner still waiting for the go-ahead reads EOF and exits
		cmd.Wait()   // the joiner exits once it has forked the command
	}()
	if err := unix.Sendmsg(int(sock.Fd()), msg, unix.UnixRights(rights...), nil, 0); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("send the join request: %w", err)
	}
	if err := joinCgroups(s, cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		return nil, err
	}
	if _, err := sock.Write([]byte{'g'}); err != nil {
		return nil, err
	}
	p := &joined{}
	var failure string
	for {
		msg, fd, err := recvPacket(sock)
		if err != nil {
			return nil, err
		}
		if msg == "" { // EOF: the command runs, or a failure was reported
			break
		}
		switch msg[0] {
		case 'P':
			pid, _ := strconv.Atoi(msg[1:])
			if p.Process, err = os.FindProcess(pid); err != nil {
				return nil, err
			}
		case 'T':
			p.master = fd
		case 'E':
			failure = msg[1:]
		}
	}
	switch {
	case failure != "" || p.Process == nil:
		if p.Process != nil {
			p.Process.Wait()
		}
		if p.master != nil {
			p.master.Close()
		}
		if failure == "" {
			failure = "the joiner exited early"
		}
		return nil, errors.New(failure)
	case tty != nil && p.master == nil:
		p.Process.Kill()
		p.Process.Wait()
		return nil, errors.New("no pty from the VE")
	}
	return p, nil
}

// joinCgroups moves pid into the VE's cgroups as libcontainer does for exec: every v1
// hierarchy, or on v2 the VE's cgroup and, where that has child cgroups with controllers (a
// systemd guest's), the init's own cgroup.
func joinCgroups(s *spec, pid int) error {
	if !cgroups.IsCgroup2UnifiedMode() {
		for _, path := range s.cgroups {
			if err := cgroups.WriteCgroupProc(path, pid); err != nil {
				return fmt.Errorf("join the VE's cgroup: %w", err)
			}
		}
		return nil
	}
	err := cgroups.WriteCgroupProc(s.cgroups[""], pid)
	if err == nil {
		return nil
	}
	data, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", s.pid))
	if rerr != nil {
		return fmt.Errorf("join the VE's cgroup: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rel, ok := strings.CutPrefix(line, "0::"); ok {
			return cgroups.WriteCgroupProc(filepath.Join("/sys/fs/cgroup", rel), pid)
		}
	}
	return fmt.Errorf("join the VE's cgroup: %w", err)
}

// recvPacket reads one packet and the descriptor it may carry; "" at EOF.
func recvPacket(sock *os.File) (string, *os.File, error) {
	buf := make([]byte, 1024)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		var f *os.File
		if oobn > 0 {
			if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(msgs) > 0 {
				if fds, err := unix.ParseUnixRights(&msgs[0]); err == nil && len(fds) > 0 {
					f = os.NewFile(uintptr(fds[0]), "pty-master")
				}
			}
		}
		return string(bytes.TrimRight(buf[:n], "\x00")), f, nil
	}
}

// StartTime returns the start time of a process (field 22 of /proc/pid/stat), which together
// with the pid identifies it across pid reuse.
func StartTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("bad stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("bad stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}
