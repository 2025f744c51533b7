package join

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/nsjoin"
)

// defaultCaps is package container's default capability set of a VE.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_SETFCAP", "CAP_MKNOD",
	"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE",
	"CAP_SYS_BOOT", "CAP_NET_ADMIN",
}

func TestCapMask(t *testing.T) {
	if got := capMask([]string{"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN", "CAP_NO_SUCH"}); got != 1<<unix.CAP_CHOWN|1<<unix.CAP_KILL|1<<unix.CAP_SYS_ADMIN {
		t.Fatalf("capMask = %#x", got)
	}
	// The VE's default set: the same bits as /proc/PID/status shows for a VE's init.
	if got := capMask(defaultCaps); got != 0xa84435fb {
		t.Fatalf("capMask(defaultCaps) = %#x, want 0xa84435fb", got)
	}
}

func TestNewSpec(t *testing.T) {
	st := &libcontainer.State{}
	st.ID, st.InitProcessPid, st.InitProcessStartTime = "101", 42, 7
	st.Config.Capabilities = &configs.Capabilities{Bounding: defaultCaps, Effective: defaultCaps, Permitted: defaultCaps}
	st.Config.Namespaces = configs.Namespaces{{Type: configs.NEWPID}, {Type: configs.NEWNS},
		{Type: configs.NEWNET, Path: "/run/vectl/netns/101"}, {Type: configs.NEWTIME}}
	st.Config.Rlimits = []configs.Rlimit{{Type: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 4096}}
	s, err := newSpec(st)
	if err != nil {
		t.Fatal(err)
	}
	if s.nsflags != unix.CLONE_NEWPID|unix.CLONE_NEWNS|unix.CLONE_NEWNET|unix.CLONE_NEWTIME {
		t.Errorf("nsflags = %#x", s.nsflags)
	}
	if s.caps != [4]uint64{0xa84435fb, 0xa84435fb, 0, 0xa84435fb} {
		t.Errorf("caps = %#x", s.caps)
	}
	if !slices.Equal(s.rlimits, []nsjoin.Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 1024, Hard: 4096}}) || s.pid != 42 || s.start != 7 {
		t.Errorf("spec = %+v", s)
	}

	// What only libcontainer's exec helper applies sends exec there.
	for name, change := range map[string]func(c *configs.Config){
		"ambient caps":  func(c *configs.Config) { c.Capabilities.Ambient = []string{"CAP_KILL"} },
		"no_new_privs":  func(c *configs.Config) { c.NoNewPrivileges = true },
		"unknown ns":    func(c *configs.Config) { c.Namespaces = append(c.Namespaces, configs.Namespace{Type: "NEWFOO"}) },
		"no capability": func(c *configs.Config) { c.Capabilities = nil },
	} {
		st2 := *st
		caps := *st.Config.Capabilities
		st2.Config.Capabilities = &caps
		st2.Config.Namespaces = append(configs.Namespaces(nil), st.Config.Namespaces...)
		change(&st2.Config)
		if _, err := newSpec(&st2); !errors.Is(err, ErrNotJoinable) {
			t.Errorf("%s: err = %v, want ErrNotJoinable", name, err)
		}
	}
}

func TestSeccompRecord(t *testing.T) {
	dir := t.TempDir()
	j := &Joiner{CacheDir: dir, RecordPath: func(id string) string { return filepath.Join(dir, id+".seccomp") }}
	// No record and no profile in the config: exec refuses rather than running unconfined.
	if _, err := j.readRecord("101", nil); !errors.Is(err, ErrNoSeccompRecord) {
		t.Fatalf("missing record: %v", err)
	}
	// A VE without a profile.
	cfg := &configs.Config{}
	if sc, err := j.TakeSeccomp("101", cfg); sc != nil || err != nil {
		t.Fatalf("takeSeccomp without a profile = %v, %v", sc, err)
	}
	if sc, err := j.readRecord("101", nil); sc != nil || err != nil {
		t.Fatalf("record of a VE without a profile = %v, %v", sc, err)
	}
	// A profile vectl loads itself.
	if err := os.WriteFile(j.RecordPath("101"), []byte("/run/vectl/seccomp/x.bpf 4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sc, err := j.readRecord("101", nil); err != nil || *sc != (Seccomp{path: "/run/vectl/seccomp/x.bpf", flags: 4}) {
		t.Fatalf("record = %+v, %v", sc, err)
	}
	// A profile a libcontainer config keeps (settings only libcontainer applies) is left there.
	cfg = &configs.Config{Seccomp: &configs.Seccomp{}, NoNewPrivileges: true,
		Capabilities: &configs.Capabilities{Bounding: defaultCaps}}
	if sc, err := j.TakeSeccomp("101", cfg); sc != nil || err != nil || cfg.Seccomp == nil {
		t.Fatalf("takeSeccomp of a non-joinable config = %v, %v, profile %v", sc, err, cfg.Seccomp)
	}
}
