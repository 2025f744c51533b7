package template

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// hostBusybox returns the host's busybox if it is static, or skips the test.
func hostBusybox(t *testing.T) string {
	t.Helper()
	const bb = "/bin/busybox"
	f, err := elf.Open(bb)
	if err != nil {
		t.Skip("requires busybox-static at /bin/busybox")
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skip("requires busybox-static: /bin/busybox is dynamically linked")
		}
	}
	return bb
}

func TestBuildBusybox(t *testing.T) {
	bb := hostBusybox(t)
	s := newTestStore(t)
	info, err := s.Build(context.Background(), "busybox-test-x86_64", BuildOptions{From: "busybox"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Init != "busybox" || info.Source != "busybox "+bb || info.Format != "tar.zst" || info.Size == 0 || info.SHA256 == "" {
		t.Errorf("Build = %+v", info)
	}
	if got, err := s.Get(info.Name); err != nil || got.SHA256 != info.SHA256 {
		t.Errorf("Get = %+v, %v", got, err)
	}
	root := s.LowerDir(info.Name)
	for link, want := range map[string]string{
		"bin/sh":      "busybox",
		"sbin/init":   "../bin/busybox",
		"usr/bin/env": "../../bin/busybox",
		"var/run":     "../run",
	} {
		if got, err := os.Readlink(filepath.Join(root, link)); err != nil || got != want {
			t.Errorf("%s -> %q, %v; want %q", link, got, err, want)
		}
	}
	inittab, err := os.ReadFile(filepath.Join(root, "etc/inittab"))
	if err != nil {
		t.Fatal(err)
	}
	wantInittab := "::sysinit:/etc/init.d/rcS\n::respawn:/etc/init.d/console\n::ctrlaltdel:/sbin/reboot\n::shutdown:/etc/init.d/rcK\n"
	if string(inittab) != wantInittab {
		t.Errorf("etc/inittab = %q", inittab)
	}
	for p, want := range map[string]os.FileMode{
		"bin/busybox":        0o755,
		"etc/init.d/rcS":     0o755,
		"etc/init.d/rcK":     0o755,
		"etc/init.d/console": 0o755,
		"etc/shadow":         0o600,
		"etc/resolv.conf":    0o644,
		"tmp":                os.ModeDir | os.ModeSticky | 0o777,
		"root":               os.ModeDir | 0o700,
		"etc/rc.d":           os.ModeDir | 0o755,
		"dev":                os.ModeDir | 0o755,
	} {
		if fi, err := os.Lstat(filepath.Join(root, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v, %v; want mode %v", p, fi, err, want)
		}
	}
	rcS, _ := os.ReadFile(filepath.Join(root, "etc/init.d/rcS"))
	if !strings.HasPrefix(string(rcS), "#!/bin/sh\n") || !strings.Contains(string(rcS), "touch /run/vectl-booted") {
		t.Errorf("etc/init.d/rcS = %q", rcS)
	}
	release, _ := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if !strings.Contains(string(release), "ID=busybox\n") || !strings.Contains(string(release), "VERSION_ID=1.") {
		t.Errorf("etc/os-release = %q", release)
	}
	if os.Geteuid() == 0 {
		if st := lstat(t, filepath.Join(root, "etc/passwd")); st.Uid != 0 || st.Gid != 0 {
			t.Errorf("etc/passwd owned by %d:%d", st.Uid, st.Gid)
		}
	}
	checkNoTemps(t, s)
	if _, err := s.Build(context.Background(), info.Name, BuildOptions{From: "busybox"}); !errors.Is(err, ErrExist) {
		t.Errorf("second Build = %v, want ErrExist", err)
	}
}

func TestBuildRefusals(t *testing.T) {
	dynamic := "/bin/ls"
	tests := []struct {
		name   string
		opts   BuildOptions
		substr string
	}{
		{"unknown builder", BuildOptions{From: "yum"}, "unknown template builder"},
		{"dynamic busybox", BuildOptions{From: "busybox", Busybox: dynamic}, "install busybox-static"},
		{"not a binary", BuildOptions{From: "busybox", Busybox: "/etc/hostname"}, "/etc/hostname"},
		{"missing busybox", BuildOptions{From: "busybox", Busybox: "/nonexistent/busybox"}, "/nonexistent/busybox"},
		{"bad suite", BuildOptions{From: "debootstrap", Suite: "--foreign"}, "invalid debootstrap suite"},
		{"bad mirror", BuildOptions{From: "debootstrap", Mirror: "-x"}, "invalid debootstrap mirror"},
		{"bad package", BuildOptions{From: "debootstrap", Include: []string{"vim", "--x"}}, "invalid package name"},
		{"another init's package", BuildOptions{From: "debootstrap", Init: "runit", Include: []string{"vim,systemd-sysv"}},
			"package systemd-sysv makes systemd the init: use --init systemd, not --include"},
		{"bad init", BuildOptions{From: "debootstrap", Init: "upstart"}, `invalid init "upstart": want systemd, sysvinit, openrc or runit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Busybox == dynamic {
				if f, err := elf.Open(dynamic); err != nil || f.Progs == nil {
					t.Skip("requires a dynamically linked /bin/ls")
				}
			}
			s := newTestStore(t)
			_, err := s.Build(context.Background(), "t-1", tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("Build = %v, want an error saying %q", err, tt.substr)
			}
			if _, err := os.Lstat(s.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("refused build touched %s", s.Dir)
			}
		})
	}
}

func TestDebootstrapSource(t *testing.T) {
	d := &debootstrap{suite: "bookworm", mirror: "http://deb.debian.org/debian"}
	if got := d.source(); got != "debootstrap bookworm http://deb.debian.org/debian" {
		t.Errorf("source = %q", got)
	}
	d.extras = []string{"vim", "curl"}
	if got := d.source(); got != "debootstrap bookworm http://deb.debian.org/debian +vim,curl" {
		t.Errorf("source = %q", got)
	}
	d.init = "runit"
	if got := d.source(); got != "debootstrap bookworm http://deb.debian.org/debian init runit +vim,curl" {
		t.Errorf("source = %q", got)
	}
}

func TestDebootstrapInitPackages(t *testing.T) {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		t.Skip("requires debootstrap")
	}
	for init, want := range map[string]string{
		"":         "systemd-sysv,iproute2",
		"systemd":  "systemd-sysv,iproute2",
		"sysvinit": "sysvinit-core,iproute2",
		"openrc":   "sysvinit-core,openrc,iproute2",
		"runit":    "runit-init,iproute2",
	} {
		d, err := newDebootstrap(BuildOptions{From: "debootstrap", Init: init, Include: []string{"vim," + want[:strings.Index(want, ",")]}})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(d.include, ",")
		if !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ",vim") {
			t.Errorf("init %q: packages %s, want %s... ending in vim", init, got, want)
		}
	}
}

func TestVEInittab(t *testing.T) {
	in := `id:2:initdefault:
si::sysinit:/etc/init.d/rcS
l2:2:wait:/etc/init.d/rc 2
ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now
1:2345:respawn:/sbin/getty --noclear 38400 tty1
2:23:respawn:/sbin/getty 38400 tty2
#T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100
T1:23:respawn:/sbin/getty -L ttyS1 9600 vt100`
	want := `id:2:initdefault:
si::sysinit:/etc/init.d/rcS
l2:2:wait:/etc/init.d/rc 2
ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now
1:2345:respawn:/sbin/getty --noclear 38400 console
#2:23:respawn:/sbin/getty 38400 tty2  # vectl: a VE has no virtual terminals
#T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100
T1:23:respawn:/sbin/getty -L ttyS1 9600 vt100
` + bootedComment + "\n" + bootedInittab + "\n"
	got := veInittab(in)
	if got != want {
		t.Errorf("veInittab:\n%s\nwant:\n%s", got, want)
	}
	if again := veInittab(got); again != got {
		t.Errorf("veInittab is not idempotent:\n%s", again)
	}
}

func TestOpenRCConf(t *testing.T) {
	in := "# comment\n#rc_sys=\"\"\nrc_sys=\"xen0\"\nrc_tty_number=12\n"
	got := openrcConf(in)
	for _, want := range []string{"# comment\n#rc_sys=\"\"\n#rc_sys=\"xen0\"\nrc_tty_number=12\n# vectl: a container\nrc_sys=\"lxc\"\n",
		"\nrc_cgroup_mode=\"legacy\"\n", "\nrc_checkroot_sh_keyword=\"-lxc\"\n", "\nrc_checkroot_bootclean_sh_keyword=\"-lxc\"\n",
		"\nrc_cgroups_keyword=\"-lxc\"\n", "\nrc_umountroot_keyword=\"-lxc\"\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("openrcConf: no %q in\n%s", want, got)
		}
	}
	if again := openrcConf(got); again != got {
		t.Errorf("openrcConf is not idempotent:\n%s", again)
	}
}
