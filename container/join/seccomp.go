package join

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/vectl/vectl/container/nsjoin"
)

// A VE's seccomp record (Joiner.RecordPath) names the compiled seccomp program its processes
// run ("PATH FLAGS", flags in hex), or says "none". It is written at every boot of a VE
// whose program vectl loads itself (see TakeSeccomp).

// Seccomp is a compiled seccomp program and the seccomp(2) flags to load it with.
type Seccomp struct {
	path  string
	flags uint
}

// TakeSeccomp moves the seccomp profile out of a VE's libcontainer config: the program is
// compiled once (program) and loaded by the init wrapper and by the joiner, instead of
// being compiled with libseccomp by libcontainer's init at every boot (12 ms here). It returns
// nil, leaving cfg as it is, when the profile cannot be compiled that way; libcontainer then
// loads it as usual.
func (j *Joiner) TakeSeccomp(id string, cfg *configs.Config) (*Seccomp, error) {
	record := j.RecordPath(id)
	if cfg.Seccomp == nil {
		return nil, os.WriteFile(record, []byte("none\n"), 0o600)
	}
	if !joinable(cfg) {
		os.Remove(record)
		return nil, nil
	}
	path, err := j.program(cfg.Seccomp)
	if err != nil {
		os.Remove(record)
		return nil, nil
	}
	sc := &Seccomp{path: path, flags: seccompFlags(cfg.Seccomp)}
	if err := os.WriteFile(record, []byte(fmt.Sprintf("%s %x\n", sc.path, sc.flags)), 0o600); err != nil {
		return nil, err
	}
	cfg.Seccomp = nil
	return sc, nil
}

// ErrNoSeccompRecord means a running VE's seccomp program is not known to vectl.
var ErrNoSeccompRecord = errors.New("the record of the VE's seccomp program is missing from its run directory: restart the VE")

// readRecord returns the program a running VE's processes run: from its record, or
// compiled from the profile in its libcontainer config when libcontainer loaded it (cfgSc).
func (j *Joiner) readRecord(id string, cfgSc *configs.Seccomp) (*Seccomp, error) {
	if cfgSc != nil {
		path, err := j.program(cfgSc)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotJoinable, err)
		}
		return &Seccomp{path: path, flags: seccompFlags(cfgSc)}, nil
	}
	data, err := os.ReadFile(j.RecordPath(id))
	if err != nil {
		return nil, ErrNoSeccompRecord
	}
	f := strings.Fields(string(data))
	switch {
	case len(f) == 1 && f[0] == "none":
		return nil, nil
	case len(f) == 2:
		flags, err := strconv.ParseUint(f[1], 16, 32)
		if err != nil {
			return nil, ErrNoSeccompRecord
		}
		return &Seccomp{path: f[0], flags: uint(flags)}, nil
	}
	return nil, ErrNoSeccompRecord
}

// WrapInit makes libcontainer start the VE's init through the init wrapper (package nsjoin),
// which makes the bind mounts of w (Binds, Detach), loads sc and drops CAP_SYS_ADMIN, the
// one capability it gets beyond the VE's. The returned function closes the wrapper's files
// once the init runs.
func (j *Joiner) WrapInit(id string, p *libcontainer.Process, sc *Seccomp, w nsjoin.InitWrap) (func(), error) {
	bpf, err := os.Open(sc.path)
	if err != nil {
		return nil, err
	}
	// A sealed copy of the wrapper's program: nothing in the VE can reach a host binary
	// through the wrapper's /proc/1/exe.
	exe, err := j.sealed(id)
	if err != nil {
		bpf.Close()
		return nil, fmt.Errorf("seal the init wrapper's program: %w", err)
	}
	c := p.Capabilities
	// ExtraFiles start at 3 in the init.
	w.BPFFD, w.ExeFD, w.BPFFlags = 3+len(p.ExtraFiles), 4+len(p.ExtraFiles), uint32(sc.flags)
	w.Caps = [4]uint64{capMask(c.Effective), capMask(c.Permitted), capMask(c.Inheritable), capMask(c.Bounding)}
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
