package nsjoin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vectl/vectl/container/wire"
)

// The join request: the one message vectl sends the joiner, defined here and, generated from
// these constants, in proto.h for the C side (TestProtoHeader keeps the two equal). It is
// encoded by package wire and sent as one packet on the sync socket with the descriptors it
// refers to attached (SCM_RIGHTS): the pidfd of the VE's init first, then the seccomp program
// when AttrBPF says there is one.
const (
	// ProtoVersion changes whenever an attribute changes meaning; the joiner refuses other
	// versions (a sealed copy of one vectl binary always talks to itself, but a test or a
	// stale copy may not).
	ProtoVersion = 1
	// SyncFD is the joiner's end of the sync socket: the one descriptor number both sides know.
	SyncFD = 3
	// MaxRequest bounds a request packet.
	MaxRequest = 1 << 16
)

// Attribute types of the join request.
const (
	AttrVersion  = 1  // u32: ProtoVersion
	AttrNSFlags  = 2  // u32: the CLONE_NEW* flags of the namespaces to join
	AttrCaps     = 3  // 4 x u64: effective, permitted, inheritable, bounding
	AttrBPF      = 4  // u32: the seccomp(2) flags; present when the program is attached
	AttrSession  = 5  // string: the session keyring to join
	AttrCwd      = 6  // string: the working directory
	AttrTTY      = 7  // 2 x u16: a pty from the VE's devpts, of these columns and rows (0: unknown)
	AttrRlimit   = 8  // u32 resource, u32 padding, u64 soft, u64 hard (repeated)
	AttrArg      = 9  // string: the command, then its arguments (repeated, in order)
	AttrBPFFD    = 10 // u32: the init wrapper's descriptor of the seccomp program
	AttrExeFD    = 11 // u32: the init wrapper's descriptor of its own sealed binary
	AttrBind     = 12 // 2 strings, "SOURCE\0TARGET\0": a bind mount the init wrapper makes (repeated)
	AttrDetach   = 13 // string: a directory the init wrapper unmounts and removes after its binds (repeated)
	AttrCgroupRO = 14 // 3 strings, "NAME\0SOURCE\0DATA\0": a cgroup v1 hierarchy mounted read-only (repeated)
	AttrCgroupRW = 15 // as AttrCgroupRO, mounted read-write
	AttrMount    = 16 // u32 mount flags, then 4 strings "TARGET\0SOURCE\0FSTYPE\0DATA\0" (DATA may be empty): a mount the init wrapper makes (repeated)
	AttrMask     = 17 // string: a path the init wrapper masks after its mounts, as libcontainer does (repeated)
	attrMaxValue = 18 // one past the last; the C side sizes its checks by it
)

// InitWrap is the init wrapper's message (InitWrapArg): libcontainer executes the wrapper
// with the VE's init as its arguments, so the message travels as hex in argv[2], before
// "--" and the init's command line. Its descriptors are the wrapper's own, set by vectl when
// it adds them to the init's ExtraFiles.
type InitWrap struct {
	BPFFD, ExeFD int
	BPFFlags     uint32
	// Caps are the VE's capability sets to drop to: effective, permitted, inheritable,
	// bounding.
	Caps [4]uint64
	// Binds are bind mounts {source, target} (paths in the VE) the wrapper makes before it
	// executes the init, in order, creating a missing target as an empty file; then it
	// unmounts and removes the directories of Detach (their sources' mount points).
	Binds  [][2]string
	Detach []string
	// Cgroups, when there are any, are the VE's cgroup v1 hierarchies: the wrapper mounts a
	// tmpfs on /sys/fs/cgroup, then each hierarchy there, in order, in the VE's cgroup
	// namespace (see CgroupMount), before its binds.
	Cgroups []CgroupMount
	// Mounts are file systems (tmpfs, mqueue) the wrapper mounts, in order, after the cgroup
	// tree and before its binds, creating a missing target directory and its parents; one
	// that holds /sys/fs/cgroup (sysfs on /sys) comes before the cgroup tree.
	Mounts []Mount
	// Masks are paths below Mounts the wrapper hides after mounting them, as libcontainer's
	// maskPaths does: a directory under a read-only tmpfs, a file under /dev/null; a missing
	// one is left.
	Masks []string
}

// Mount is a mount(2) the init wrapper makes: mount(Source, Target, FSType, Flags, Data).
type Mount struct {
	Target, Source, FSType, Data string
	Flags                        uint32
}

// How many hierarchies (Cgroups), mounts (Mounts) and masks (Masks) the init wrapper takes
// at most.
const (
	MaxInitWrapCgroups = 32
	MaxInitWrapMounts  = 16
	MaxInitWrapMasks   = 16
)

// CgroupMount is a cgroup v1 hierarchy the init wrapper mounts at /sys/fs/cgroup/Name with
// mount(Source, target, "cgroup", nosuid|nodev|noexec, Data), read-only unless RW, as
// libcontainer mounts one in a cgroup namespace. A Name of several controllers joined by
// commas ("cpu,cpuacct") also gets a symbolic link to it for each ("cpu").
type CgroupMount struct {
	Name, Source, Data string
	RW                 bool
}

// Hex encodes the init wrapper's message.
func (w *InitWrap) Hex() string {
	var e wire.Encoder
	e.U32(AttrVersion, ProtoVersion)
	e.U32(AttrBPFFD, uint32(w.BPFFD))
	e.U32(AttrBPF, w.BPFFlags)
	e.U32(AttrExeFD, uint32(w.ExeFD))
	var caps []byte
	for _, c := range w.Caps {
		caps = binary.NativeEndian.AppendUint64(caps, c)
	}
	e.Raw(AttrCaps, caps)
	for _, b := range w.Binds {
		e.String(AttrBind, b[0]+"\x00"+b[1])
	}
	for _, d := range w.Detach {
		e.String(AttrDetach, d)
	}
	for _, c := range w.Cgroups {
		t := AttrCgroupRO
		if c.RW {
			t = AttrCgroupRW
		}
		e.String(uint16(t), c.Name+"\x00"+c.Source+"\x00"+c.Data)
	}
	for _, m := range w.Mounts {
		b := binary.NativeEndian.AppendUint32(nil, m.Flags)
		e.Raw(AttrMount, append(b, m.Target+"\x00"+m.Source+"\x00"+m.FSType+"\x00"+m.Data+"\x00"...))
	}
	for _, p := range w.Masks {
		e.String(AttrMask, p)
	}
	return e.Hex()
}

// ParseInitWrap decodes the init wrapper's message (the C side reads it; Go does for tests).
func ParseInitWrap(msg string) (*InitWrap, error) {
	attrs, err := wire.DecodeHex(msg)
	if err != nil {
		return nil, fmt.Errorf("init wrapper: %w", err)
	}
	w := &InitWrap{}
	var version, u uint32
	for _, a := range attrs {
		switch {
		case a.Type == AttrVersion:
			version, err = a.U32()
		case a.Type == AttrBPFFD:
			u, err = a.U32()
			w.BPFFD = int(u)
		case a.Type == AttrBPF:
			w.BPFFlags, err = a.U32()
		case a.Type == AttrExeFD:
			u, err = a.U32()
			w.ExeFD = int(u)
		case a.Type == AttrCaps && len(a.Payload) == 32:
			for i := range w.Caps {
				w.Caps[i] = binary.NativeEndian.Uint64(a.Payload[8*i:])
			}
		case a.Type == AttrBind:
			var s string
			s, err = a.String()
			src, dst, ok := strings.Cut(s, "\x00")
			if err == nil && (!ok || src == "" || dst == "" || strings.Contains(dst, "\x00")) {
				err = fmt.Errorf("bind %q is not SOURCE NUL TARGET", s)
			}
			w.Binds = append(w.Binds, [2]string{src, dst})
		case a.Type == AttrDetach:
			var s string
			s, err = a.String()
			w.Detach = append(w.Detach, s)
		case a.Type == AttrCgroupRO || a.Type == AttrCgroupRW:
			var s string
			s, err = a.String()
			f := strings.Split(s, "\x00")
			if err == nil && (len(f) != 3 || slices.Contains(f, "") || strings.Contains(f[0], "/")) {
				err = fmt.Errorf("cgroup %q is not NAME NUL SOURCE NUL DATA", s)
			}
			if err == nil {
				w.Cgroups = append(w.Cgroups, CgroupMount{Name: f[0], Source: f[1], Data: f[2], RW: a.Type == AttrCgroupRW})
			}
		case a.Type == AttrMount:
			f := strings.Split(string(a.Payload[min(4, len(a.Payload)):]), "\x00")
			if len(a.Payload) < 4 || len(f) != 5 || f[4] != "" || slices.Contains(f[:3], "") || !strings.HasPrefix(f[0], "/") {
				err = fmt.Errorf("mount %q is not FLAGS TARGET SOURCE FSTYPE DATA", a.Payload)
				break
			}
			w.Mounts = append(w.Mounts, Mount{Flags: binary.NativeEndian.Uint32(a.Payload), Target: f[0], Source: f[1], FSType: f[2], Data: f[3]})
		case a.Type == AttrMask:
			var s string
			s, err = a.String()
			if err == nil && !strings.HasPrefix(s, "/") {
				err = fmt.Errorf("mask %q is not an absolute path", s)
			}
			w.Masks = append(w.Masks, s)
		default:
			err = fmt.Errorf("attribute %d with %d bytes is unknown", a.Type, len(a.Payload))
		}
		if err != nil {
			return nil, fmt.Errorf("init wrapper: %w", err)
		}
	}
	if version != ProtoVersion {
		return nil, fmt.Errorf("init wrapper: version %d, want %d", version, ProtoVersion)
	}
	return w, nil
}

// Rlimit is one resource limit of the command.
type Rlimit struct {
	Resource   uint32
	Soft, Hard uint64
}

// Request is what the joiner needs to start a command in a VE.
type Request struct {
	NSFlags uint32
	// Caps are the capability sets: effective, permitted, inheritable, bounding.
	Caps [4]uint64
	// BPF tells that a seccomp program is attached, loaded with BPFFlags.
	BPF      bool
	BPFFlags uint32
	Session  string // "" for none
	Cwd      string
	// TTY asks for a pty from the VE's devpts, of Cols x Rows when both are known (not 0).
	TTY        bool
	Cols, Rows uint16
	Rlimits    []Rlimit
	Args       []string
}

// Marshal encodes the request.
func (r *Request) Marshal() ([]byte, error) {
	if len(r.Args) == 0 {
		return nil, errors.New("join request: no command")
	}
	var e wire.Encoder
	e.U32(AttrVersion, ProtoVersion)
	e.U32(AttrNSFlags, r.NSFlags)
	var caps []byte
	for _, c := range r.Caps {
		caps = binary.NativeEndian.AppendUint64(caps, c)
	}
	e.Raw(AttrCaps, caps)
	if r.BPF {
		e.U32(AttrBPF, r.BPFFlags)
	}
	if r.Session != "" {
		e.String(AttrSession, r.Session)
	}
	e.String(AttrCwd, r.Cwd)
	if r.TTY {
		e.Raw(AttrTTY, binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, r.Cols), r.Rows))
	}
	for _, rl := range r.Rlimits {
		p := binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, rl.Resource), 0)
		p = binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(p, rl.Soft), rl.Hard)
		e.Raw(AttrRlimit, p)
	}
	for _, a := range r.Args {
		e.String(AttrArg, a)
	}
	if b := e.Bytes(); len(b) > MaxRequest {
		return nil, fmt.Errorf("join request: %d bytes, more than %d (a command line that long cannot be joined)", len(b), MaxRequest)
	}
	return e.Bytes(), nil
}

// Unmarshal decodes a request (the joiner's side, in Go for tests).
func Unmarshal(b []byte) (*Request, error) {
	attrs, err := wire.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("join request: %w", err)
	}
	r := &Request{}
	version := uint32(0)
	for _, a := range attrs {
		p := a.Payload
		var err error
		switch {
		case a.Type == AttrVersion:
			version, err = a.U32()
		case a.Type == AttrNSFlags:
			r.NSFlags, err = a.U32()
		case a.Type == AttrCaps && len(p) == 32:
			for i := range r.Caps {
				r.Caps[i] = binary.NativeEndian.Uint64(p[8*i:])
			}
		case a.Type == AttrBPF:
			r.BPF = true
			r.BPFFlags, err = a.U32()
		case a.Type == AttrSession:
			r.Session, err = a.String()
		case a.Type == AttrCwd:
			r.Cwd, err = a.String()
		case a.Type == AttrTTY && len(p) == 4:
			r.TTY, r.Cols, r.Rows = true, binary.NativeEndian.Uint16(p), binary.NativeEndian.Uint16(p[2:])
		case a.Type == AttrRlimit && len(p) == 24:
			r.Rlimits = append(r.Rlimits, Rlimit{Resource: binary.NativeEndian.Uint32(p),
				Soft: binary.NativeEndian.Uint64(p[8:]), Hard: binary.NativeEndian.Uint64(p[16:])})
		case a.Type == AttrArg:
			var s string
			s, err = a.String()
			r.Args = append(r.Args, s)
		default:
			err = fmt.Errorf("attribute %d with %d bytes is unknown", a.Type, len(p))
		}
		if err != nil {
			return nil, fmt.Errorf("join request: %w", err)
		}
	}
	if version != ProtoVersion {
		return nil, fmt.Errorf("join request: version %d, want %d", version, ProtoVersion)
	}
	if len(r.Args) == 0 {
		return nil, errors.New("join request: no command")
	}
	return r, nil
}

// header renders proto.h, the C side's copy of the constants above.
func header() string {
	return wire.Header("VECTL_NSJOIN_PROTO_H", "TestProtoHeader", []wire.Const{
		{Name: "NSJ_PROTO_VERSION", Value: ProtoVersion}, {Name: "NSJ_SYNC_FD", Value: SyncFD},
		{Name: "NSJ_MAX_REQUEST", Value: MaxRequest},
		{Name: "NSJ_ATTR_VERSION", Value: AttrVersion}, {Name: "NSJ_ATTR_NSFLAGS", Value: AttrNSFlags},
		{Name: "NSJ_ATTR_CAPS", Value: AttrCaps}, {Name: "NSJ_ATTR_BPF", Value: AttrBPF},
		{Name: "NSJ_ATTR_SESSION", Value: AttrSession}, {Name: "NSJ_ATTR_CWD", Value: AttrCwd},
		{Name: "NSJ_ATTR_TTY", Value: AttrTTY}, {Name: "NSJ_ATTR_RLIMIT", Value: AttrRlimit},
		{Name: "NSJ_ATTR_ARG", Value: AttrArg}, {Name: "NSJ_ATTR_BPFFD", Value: AttrBPFFD},
		{Name: "NSJ_ATTR_EXEFD", Value: AttrExeFD}, {Name: "NSJ_ATTR_BIND", Value: AttrBind},
		{Name: "NSJ_ATTR_DETACH", Value: AttrDetach}, {Name: "NSJ_ATTR_CGROUP_RO", Value: AttrCgroupRO},
		{Name: "NSJ_ATTR_CGROUP_RW", Value: AttrCgroupRW}, {Name: "NSJ_ATTR_MOUNT", Value: AttrMount},
		{Name: "NSJ_ATTR_MAX", Value: attrMaxValue}, {Name: "NSJ_MAX_CGROUPS", Value: MaxInitWrapCgroups},
		{Name: "NSJ_MAX_MOUNTS", Value: MaxInitWrapMounts}, {Name: "NSJ_ATTR_MASK", Value: AttrMask},
		{Name: "NSJ_MAX_MASKS", Value: MaxInitWrapMasks},
	}, map[string]string{"NSJ_ARG": Arg, "NSJ_INITWRAP_ARG": InitWrapArg})
}
