package idle

import (
	"flag"
	"reflect"
	"strings"
	"testing"

	"github.com/vectl/vectl/container/wire"
)

var update = flag.Bool("update", false, "rewrite proto.h from proto.go")

// TestProtoHeader: the C side's constants (proto.h, which idle.c includes) are the Go
// side's. A change to one without the other fails here; -update regenerates the header.
func TestProtoHeader(t *testing.T) {
	if err := wire.SyncHeader("proto.h", header(), *update); err != nil {
		t.Fatal(err)
	}
}

// TestMessagesRoundTrip: every field of both messages survives encoding and decoding.
func TestMessagesRoundTrip(t *testing.T) {
	h := Handover{VEID: "101", RunID: "r-1", InitPID: 4242, PtyFD: 7, ListenFD: 8, LogFD: 9,
		LogPath: "/var/log/vectl/101.console", LogMax: 1 << 20, ClientFDs: []int{10, 11},
		ResumeArgv: []string{"/proc/self/exe", "--root", "/var/lib/vectl", "__monitor"},
		Views:      "/run/vectl/ve/101/views", StopMark: "/run/vectl/ve/101/stopping", ExeFD: 12,
		StopArgv: []string{"/proc/self/exe", "--root", "/var/lib/vectl", "stop", "101"}, StopSignals: []int{15, 2, 1},
		ForwardSignals: []int{10, 12, 3}}
	msg, err := h.Hex()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseHandover(msg)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, h) {
		t.Errorf("hand-over round trip:\n got %+v\nwant %+v", *got, h)
	}
	r := Resume{VEID: "web", RunID: "r-2", ListenFD: 8, InitStatus: 0x100, ClientFDs: []int{3}}
	gotR, err := ParseResume(r.Hex())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*gotR, r) {
		t.Errorf("resume round trip:\n got %+v\nwant %+v", *gotR, r)
	}
}

func TestMessagesRefused(t *testing.T) {
	h := Handover{VEID: "101", ClientFDs: make([]int, MaxClients+1)}
	if _, err := h.Hex(); err == nil {
		t.Error("a hand-over with too many clients was encoded")
	}
	good := (&Resume{VEID: "101", ListenFD: 3, InitStatus: 1}).Hex()
	for name, msg := range map[string]string{
		"not hex":        "zz",
		"truncated":      good[:len(good)-2],
		"other version":  "0800010002000000" + good[16:],
		"no init status": (&Handover{VEID: "101"}).mustHex(t),
	} {
		if _, err := ParseResume(msg); err == nil {
			t.Errorf("%s resume message decoded", name)
		}
	}
	if _, err := ParseHandover(good); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a resume message read as a hand-over: %v", err)
	}
}

func (h *Handover) mustHex(t *testing.T) string {
	s, err := h.Hex()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
