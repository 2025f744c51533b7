package template

import (
	"context"
	"debug/elf"
	"errors"
	"os"
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
}
