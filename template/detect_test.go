package template

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDetectInit(t *testing.T) {
	type node struct{ path, link, data string } // link set: a symlink; else a file with data
	tests := []struct {
		name  string
		nodes []node
		want  string
	}{
		{"missing", nil, ""},
		{"absolute link to systemd", []node{{path: "sbin/init", link: "/lib/systemd/systemd"}}, "systemd"},
		{"merged /usr", []node{
			{path: "sbin", link: "usr/sbin"},
			{path: "usr/sbin/init", link: "../lib/systemd/systemd"},
			{path: "usr/lib/systemd/systemd", data: "ELF"},
		}, "systemd"},
		{"relative link to busybox", []node{{path: "sbin/init", link: "../bin/busybox"}}, "busybox"},
		{"openrc", []node{{path: "sbin/init", link: "openrc-init"}}, "openrc"},
		{"Debian's OpenRC", []node{{path: "sbin/init", data: "\x7fELF sysvinit"}, {path: "sbin/openrc", data: "ELF"}}, "openrc"},
		{"runit", []node{{path: "sbin/init", link: "runit-init"}}, "runit"},
		{"regular file", []node{{path: "sbin/init", data: "\x7fELF sysvinit"}}, "sysvinit"},
		{"busybox by content", []node{{path: "sbin/init", data: "\x7fELF ... BusyBox v1.36 ..."}}, "busybox"},
		{"chain to a plain file", []node{
			{path: "sbin/init", link: "/usr/sbin/init.real"},
			{path: "usr/sbin/init.real", link: "../../lib/init/real"},
			{path: "lib/init/real", data: "sysvinit"},
		}, "sysvinit"},
		{"chain to systemd by inode", []node{
			{path: "sbin/init", link: "/lib/init-wrapper"},
			{path: "lib/init-wrapper", link: "systemd/systemd.real"},
			{path: "lib/systemd/systemd.real", data: "ELF"},
			{path: "lib/systemd/systemd", link: "systemd.real"},
		}, "systemd"},
		{"dangling", []node{{path: "sbin/init", link: "/nowhere/init"}}, ""},
		// Outside the root, ../../outside-init from sbin is a regular file; inside it does not exist.
		{"escape is contained", []node{{path: "sbin/init", link: "../../outside-init"}}, ""},
		{"absolute escape is contained", []node{{path: "sbin/init", link: "/../outside-init"}}, ""},
		{"loop", []node{{path: "sbin/init", link: "init"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			if err := os.WriteFile(filepath.Join(tmp, "outside-init"), []byte("sysvinit"), 0o755); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(tmp, "root")
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.nodes {
				p := filepath.Join(root, n.path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				if n.link != "" {
					err = os.Symlink(n.link, p)
				} else {
					err = os.WriteFile(p, []byte(n.data), 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if got := DetectInit(root); got != tt.want {
				t.Errorf("DetectInit = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDetectInitHardlinkedBusybox(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"bin", "sbin"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("no banner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "sbin/init")); err != nil {
		t.Fatal(err)
	}
	if got := DetectInit(root); got != "busybox" {
		t.Errorf("DetectInit = %q, want busybox", got)
	}
}

func TestDetectOS(t *testing.T) {
	root := t.TempDir()
	if d, v := DetectOS(root, "busybox-1.35-x86_64"); d != "busybox" || v != "1.35" {
		t.Errorf("from the name: %q %q", d, v)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nID=debian\nVERSION_ID=\"13\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	if d, v := DetectOS(root, "mine-1-x86_64"); d != "debian" || v != "13" {
		t.Errorf("os-release: %q %q", d, v)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/os-release"), []byte("ID=debian\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if d, v := DetectOS(root, "debian-sid-x86_64"); d != "debian" || v != "sid" {
		t.Errorf("no VERSION_ID: %q %q", d, v)
	}
}
