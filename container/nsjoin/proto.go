package nsjoin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// The join request: the one message vectl sends the joiner, defined here and, generated from
// these constants, in proto.h for the C side (TestProtoHeader keeps the two equal). It is a
// list of netlink-style attributes (u16 length including the 4-byte header, u16 type, the
// payload, padded to 4 bytes), sent as one packet on the sync socket with the descriptors it
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
	attrMaxValue = 10 // one past the last; the C side sizes its checks by it
)

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

func putAttr(b []byte, typ uint16, payload []byte) []byte {
	n := 4 + len(payload)
	b = binary.NativeEndian.AppendUint16(b, uint16(n))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for n%4 != 0 {
		b = append(b, 0)
		n++
	}
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// Marshal encodes the request.
func (r *Request) Marshal() ([]byte, error) {
	if len(r.Args) == 0 {
		return nil, errors.New("join request: no command")
	}
	b := putAttr(nil, AttrVersion, u32(ProtoVersion))
	b = putAttr(b, AttrNSFlags, u32(r.NSFlags))
	var caps []byte
	for _, c := range r.Caps {
		caps = binary.NativeEndian.AppendUint64(caps, c)
	}
	b = putAttr(b, AttrCaps, caps)
	if r.BPF {
		b = putAttr(b, AttrBPF, u32(r.BPFFlags))
	}
	if r.Session != "" {
		b = putAttr(b, AttrSession, cstr(r.Session))
	}
	b = putAttr(b, AttrCwd, cstr(r.Cwd))
	if r.TTY {
		b = putAttr(b, AttrTTY, binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(nil, r.Cols), r.Rows))
	}
	for _, rl := range r.Rlimits {
		p := binary.NativeEndian.AppendUint32(u32(rl.Resource), 0)
		p = binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(p, rl.Soft), rl.Hard)
		b = putAttr(b, AttrRlimit, p)
	}
	for _, a := range r.Args {
		b = putAttr(b, AttrArg, cstr(a))
	}
	if len(b) > MaxRequest {
		return nil, fmt.Errorf("join request: %d bytes, more than %d (a command line that long cannot be joined)", len(b), MaxRequest)
	}
	return b, nil
}

// cstr is s NUL-terminated, as the C side reads strings in place.
func cstr(s string) []byte { return append([]byte(s), 0) }

// Unmarshal decodes a request (the joiner's side, in Go for tests).
func Unmarshal(b []byte) (*Request, error) {
	r := &Request{}
	version := uint32(0)
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("join request: truncated attribute header")
		}
		n, typ := int(binary.NativeEndian.Uint16(b)), binary.NativeEndian.Uint16(b[2:])
		if n < 4 || n > len(b) {
			return nil, fmt.Errorf("join request: attribute %d has length %d", typ, n)
		}
		p := b[4:n]
		str := func() (string, error) {
			if len(p) == 0 || p[len(p)-1] != 0 {
				return "", fmt.Errorf("join request: attribute %d is not a string", typ)
			}
			return string(p[:len(p)-1]), nil
		}
		var err error
		switch {
		case typ == AttrVersion && len(p) == 4:
			version = binary.NativeEndian.Uint32(p)
		case typ == AttrNSFlags && len(p) == 4:
			r.NSFlags = binary.NativeEndian.Uint32(p)
		case typ == AttrCaps && len(p) == 32:
			for i := range r.Caps {
				r.Caps[i] = binary.NativeEndian.Uint64(p[8*i:])
			}
		case typ == AttrBPF && len(p) == 4:
			r.BPF, r.BPFFlags = true, binary.NativeEndian.Uint32(p)
		case typ == AttrSession:
			r.Session, err = str()
		case typ == AttrCwd:
			r.Cwd, err = str()
		case typ == AttrTTY && len(p) == 4:
			r.TTY, r.Cols, r.Rows = true, binary.NativeEndian.Uint16(p), binary.NativeEndian.Uint16(p[2:])
		case typ == AttrRlimit && len(p) == 24:
			r.Rlimits = append(r.Rlimits, Rlimit{Resource: binary.NativeEndian.Uint32(p),
				Soft: binary.NativeEndian.Uint64(p[8:]), Hard: binary.NativeEndian.Uint64(p[16:])})
		case typ == AttrArg:
			var a string
			a, err = str()
			r.Args = append(r.Args, a)
		default:
			return nil, fmt.Errorf("join request: attribute %d with %d bytes is unknown", typ, len(p))
		}
		if err != nil {
			return nil, err
		}
		b = b[min((n+3)&^3, len(b)):]
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
	var sb strings.Builder
	sb.WriteString("// Generated from proto.go by TestProtoHeader (go test ./container/nsjoin -update): the\n")
	sb.WriteString("// join request's constants, shared with the Go side. Do not edit by hand.\n")
	sb.WriteString("#ifndef VECTL_NSJOIN_PROTO_H\n#define VECTL_NSJOIN_PROTO_H\n")
	for _, c := range []struct {
		name string
		v    int
	}{
		{"NSJ_PROTO_VERSION", ProtoVersion}, {"NSJ_SYNC_FD", SyncFD}, {"NSJ_MAX_REQUEST", MaxRequest},
		{"NSJ_ATTR_VERSION", AttrVersion}, {"NSJ_ATTR_NSFLAGS", AttrNSFlags}, {"NSJ_ATTR_CAPS", AttrCaps},
		{"NSJ_ATTR_BPF", AttrBPF}, {"NSJ_ATTR_SESSION", AttrSession}, {"NSJ_ATTR_CWD", AttrCwd},
		{"NSJ_ATTR_TTY", AttrTTY}, {"NSJ_ATTR_RLIMIT", AttrRlimit}, {"NSJ_ATTR_ARG", AttrArg},
		{"NSJ_ATTR_MAX", attrMaxValue},
	} {
		fmt.Fprintf(&sb, "#define %s %d\n", c.name, c.v)
	}
	fmt.Fprintf(&sb, "#define NSJ_ARG %q\n", Arg)
	sb.WriteString("#endif\n")
	return sb.String()
}
