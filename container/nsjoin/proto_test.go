package nsjoin

import (
	"flag"
	"reflect"
	"testing"

	"github.com/vectl/vectl/container/wire"
)

var update = flag.Bool("update", false, "rewrite proto.h from proto.go")

// TestProtoHeader: the C side's constants (proto.h, which nsjoin.c includes) are the Go
// side's. A change to one without the other fails here; -update regenerates the header.
func TestProtoHeader(t *testing.T) {
	if err := wire.SyncHeader("proto.h", header(), *update); err != nil {
		t.Fatal(err)
	}
}

// TestRequestRoundTrip: every field survives Marshal and Unmarshal.
func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{NSFlags: 0x6c020000, Caps: [4]uint64{1, 2, 3, 0xffffffffff}, Cwd: "/", Args: []string{"true"}},
		{Cwd: "/", TTY: true, Args: []string{"sh"}}, // a pty of unknown size
		{NSFlags: 1, Caps: [4]uint64{^uint64(0), 0, 7, 8}, BPF: true, BPFFlags: 0x1, Session: "_ses.101",
			Cwd: "/root", TTY: true, Cols: 132, Rows: 43, Rlimits: []Rlimit{{7, 1024, 4096}, {6, ^uint64(0), ^uint64(0)}},
			Args: []string{"sh", "-c", "echo 'a b' \"c\"", "", "ünïcødé"}},
	} {
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b)%4 != 0 {
			t.Errorf("request of %d bytes is not 4-byte aligned", len(b))
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", *got, r)
		}
	}
}

func TestRequestRefusals(t *testing.T) {
	if _, err := (&Request{Cwd: "/"}).Marshal(); err == nil {
		t.Error("a request without a command was encoded")
	}
	long := &Request{Cwd: "/", Args: []string{string(make([]byte, MaxRequest))}}
	if _, err := long.Marshal(); err == nil {
		t.Error("a request over MaxRequest was encoded")
	}
	good, _ := (&Request{Cwd: "/", Args: []string{"true"}}).Marshal()
	bad := append([]byte(nil), good...)
	bad[4] = ProtoVersion + 1 // the version attribute's payload
	for name, b := range map[string][]byte{"truncated": good[:len(good)-5], "other version": bad, "empty": nil} {
		if _, err := Unmarshal(b); err == nil {
			t.Errorf("%s request decoded", name)
		}
	}
}

// TestInitWrapRoundTrip: the init wrapper's message survives encoding and decoding.
func TestInitWrapRoundTrip(t *testing.T) {
	for _, w := range []InitWrap{
		{BPFFD: 5, ExeFD: 6, BPFFlags: 0x8, Caps: [4]uint64{0xa80425fb, 0xa80425fb, 0, 0xa80425fb | 1<<21}},
		{BPFFD: 5, ExeFD: 6, Binds: [][2]string{{"/dev/.v/meminfo", "/proc/meminfo"}, {"/dev/.v/cpus", "/sys/devices/system/cpu/online"}},
			Detach: []string{"/dev/.v", "/dev/.d"}},
		{BPFFD: 5, ExeFD: 6, Cgroups: []CgroupMount{{Name: "cpu,cpuacct", Source: "cgroup", Data: "cpu,cpuacct"},
			{Name: "memory", Source: "cgroup", Data: "memory", RW: true}, {Name: "systemd", Source: "systemd", Data: "name=systemd", RW: true}},
			Mounts: []Mount{{Target: "/run", Source: "tmpfs", FSType: "tmpfs", Data: "mode=755", Flags: 6},
				{Target: "/dev/mqueue", Source: "mqueue", FSType: "mqueue", Flags: 14}}},
		{BPFFD: 5, ExeFD: 6, Mounts: []Mount{{Target: "/sys", Source: "sysfs", FSType: "sysfs", Flags: 15}},
			Masks: []string{"/sys/firmware", "/sys/devices/virtual/powercap"}},
	} {
		got, err := ParseInitWrap(w.Hex())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, w) {
			t.Errorf("round trip: got %+v, want %+v", *got, w)
		}
	}
	if _, err := ParseInitWrap("08000100"); err == nil {
		t.Error("a truncated message decoded")
	}
	var e wire.Encoder
	e.U32(AttrVersion, ProtoVersion)
	e.String(AttrBind, "/proc/meminfo")
	if _, err := ParseInitWrap(e.Hex()); err == nil {
		t.Error("a bind without a target decoded")
	}
	for _, bad := range []string{"memory\x00cgroup", "memory\x00\x00memory", "a/b\x00cgroup\x00memory", "memory\x00cgroup\x00memory\x00x"} {
		var e wire.Encoder
		e.U32(AttrVersion, ProtoVersion)
		e.String(AttrCgroupRO, bad)
		if _, err := ParseInitWrap(e.Hex()); err == nil {
			t.Errorf("cgroup %q decoded", bad)
		}
	}
	for _, bad := range []string{"", "\x06\x00\x00", "\x06\x00\x00\x00/run\x00tmpfs\x00tmpfs\x00", "\x06\x00\x00\x00run\x00tmpfs\x00tmpfs\x00\x00",
		"\x06\x00\x00\x00/run\x00\x00tmpfs\x00\x00", "\x06\x00\x00\x00/run\x00tmpfs\x00tmpfs\x00\x00x\x00"} {
		var e wire.Encoder
		e.U32(AttrVersion, ProtoVersion)
		e.Raw(AttrMount, []byte(bad))
		if _, err := ParseInitWrap(e.Hex()); err == nil {
			t.Errorf("mount %q decoded", bad)
		}
	}
	for _, bad := range []string{"", "sys/firmware"} {
		var e wire.Encoder
		e.U32(AttrVersion, ProtoVersion)
		e.String(AttrMask, bad)
		if _, err := ParseInitWrap(e.Hex()); err == nil {
			t.Errorf("mask %q decoded", bad)
		}
	}
}
