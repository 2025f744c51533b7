package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/exeseal"

	"github.com/vectl/vectl/container/nsjoin"
)

// seccompRecord is the file in a VE's run directory that names the compiled seccomp program
// its processes run ("PATH FLAGS", flags in hex), or says "none". It is written at every
// boot of a VE whose program vectl loads itself (see takeSeccomp).
const seccompRecord = "seccomp"

// veSeccomp is a compiled seccomp program and the seccomp(2) flags to load it with.
type veSeccomp struct {
	path  string
	flags uint
}

// takeSeccomp moves the seccomp profile out of a VE's libcontainer config: the program is
// compiled once (seccompProgram) and loaded by the init wrapper and by the joiner, instead of
// being compiled with libseccomp by libcontainer's init at every boot (12 ms here). It returns
// nil, leaving cfg as it is, when the profile cannot be compiled that way; libcontainer then
// loads it as usual.
func (m *Manager) takeSeccomp(id string, cfg *configs.Config) (*veSeccomp, error) {
	record := m.runFile(id, seccompRecord)
	if cfg.Seccomp == nil {
		return nil, os.WriteFile(record, []byte("none\n"), 0o600)
	}
	if !joinable(cfg) {
		os.Remove(record)
		return nil, nil
	}
	path, err := m.seccompProgram(cfg.Seccomp)
	if err != nil {
		os.Remove(record)
		return nil, nil
	}
	sc := &veSeccomp{path: path, flags: seccompFlags(cfg.Seccomp)}
	if err := os.WriteFile(record, []byte(fmt.Sprintf("%s %x\n", sc.path, sc.flags)), 0o600); err != nil {
		return nil, err
	}
	cfg.Seccomp = nil
	return sc, nil
}

// errNoSeccompRecord means a running VE's seccomp program is not known to vectl.
var errNoSeccompRecord = errors.New("the record of the VE's seccomp program is missing from its run directory: restart the VE")

// readSeccompRecord returns the program a running VE's processes run: from its record, or
// compiled from the profile in its libcontainer config when libcontainer loaded it (cfgSc).
func (m *Manager) readSeccompRecord(id string, cfgSc *configs.Seccomp) (*veSeccomp, error) {
	if cfgSc != nil {
		path, err := m.seccompProgram(cfgSc)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errNotJoinable, err)
		}
		return &veSeccomp{path: path, flags: seccompFlags(cfgSc)}, nil
	}
	data, err := os.ReadFile(m.runFile(id, seccompRecord))
	if err != nil {
		return nil, errNoSeccompRecord
	}
	f := strings.Fields(string(data))
	switch {
	case len(f) == 1 && f[0] == "none":
		return nil, nil
	case len(f) == 2:
		flags, err := strconv.ParseUint(f[1], 16, 32)
		if err != nil {
			return nil, errNoSeccompRecord
		}
		return &veSeccomp{path: f[0], flags: uint(flags)}, nil
	}
	return nil, errNoSeccompRecord
}

// wrapInit makes libcontainer start the VE's init through the init wrapper (package nsjoin),
// which loads sc and drops CAP_SYS_ADMIN, the one capability it gets beyond the VE's. The
// returned function closes the wrapper's files once the init runs.
func (m *Manager) wrapInit(id string, p *libcontainer.Process, sc *veSeccomp) (func(), error) {
	bpf, err := os.Open(sc.path)
	if err != nil {
		return nil, err
	}
	// The sealed copy of this binary, as libcontainer uses for its own helper: nothing in the
	// VE can reach the host's vectl through the wrapper's /proc/1/exe.
	exe, err := exeseal.CloneSelfExe(filepath.Join(m.lcRoot(), id))
	if err != nil {
		bpf.Close()
		return nil, fmt.Errorf("seal vectl's binary: %w", err)
	}
	c := p.Capabilities
	// ExtraFiles start at 3 in the init.
	w := nsjoin.InitWrap{BPFFD: 3 + len(p.ExtraFiles), ExeFD: 4 + len(p.ExtraFiles), BPFFlags: uint32(sc.flags),
		Caps: [4]uint64{capMask(c.Effective), capMask(c.Permitted), capMask(c.Inheritable), capMask(c.Bounding)}}
	p.ExtraFiles = append(p.ExtraFiles, bpf, exe)
	p.Args = append([]string{"/proc/self/fd/" + strconv.Itoa(w.ExeFD), nsjoin.InitWrapArg, w.Hex(), "--"}, p.Args...)
	withAdmin := func(caps []string) []string {
		if slices.Contains(caps, "CAP_SYS_ADMIN") {
			return caps
		}
		return append(slices.Clone(caps), "CAP_SYS_ADMIN")
	}
	p.Capabilities = &configs.Capabilities{Bounding: withAdmin(c.Bounding), Effective: withAdmin(c.Effective),
		Permitted: withAdmin(c.Permitted), Inheritable: c.Inheritable, Ambient: c.Ambient}
	return func() {
		bpf.Close()
		exe.Close()
	}, nil
}
