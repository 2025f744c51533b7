package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuestHostname(t *testing.T) {
	mk := func(t *testing.T, hostname string) string {
		root := t.TempDir()
		if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if hostname != "" {
			if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte(hostname+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	read := func(root, f string) string {
		data, _ := os.ReadFile(filepath.Join(root, "etc", f))
		return string(data)
	}
	tmpl := mk(t, "buildhost") // debootstrap leaves the build host's name
	for _, tt := range []struct {
		name, configured, inVE, want string
	}{
		{"configured", "web.example.org", "buildhost", "web.example.org"},
		{"template's name", "", "buildhost", "101"},
		{"placeholder", "", "localhost", "101"},
		{"none", "", "", "101"},
		{"the VE's own", "", "mine", "mine"},
		{"invalid", "", "-bad-", "101"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := mk(t, tt.inVE)
			got, err := guestHostname(&Config{Hostname: tt.configured}, "101", root, tmpl)
			if err != nil || got != tt.want {
				t.Fatalf("guestHostname = %q, %v; want %q", got, err, tt.want)
			}
			if tt.want == "101" {
				if h := read(root, "hostname"); h != "101\n" {
					t.Errorf("/etc/hostname = %q", h)
				}
				if h := read(root, "hosts"); !strings.Contains(h, "127.0.1.1\t101\t# vectl") {
					t.Errorf("/etc/hosts = %q", h)
				}
			}
			if tt.want == "mine" && read(root, "hostname") != "mine\n" {
				t.Errorf("the VE's own /etc/hostname was changed: %q", read(root, "hostname"))
			}
		})
	}
}
