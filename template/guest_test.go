package template

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestAddBootedMark(t *testing.T) {
	root := t.TempDir()
	if err := AddBootedMark(root); !errors.Is(err, ErrNoInittab) {
		t.Fatalf("no inittab: %v, want ErrNoInittab", err)
	}
	if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	inittab := filepath.Join(root, "etc/inittab")
	if err := os.WriteFile(inittab, []byte("id:2:initdefault:\nl2:2:wait:/etc/init.d/rc 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second call changes nothing
		if err := AddBootedMark(root); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(inittab)
		if err != nil {
			t.Fatal(err)
		}
		want := "id:2:initdefault:\nl2:2:wait:/etc/init.d/rc 2\n" + bootedComment + "\n" + bootedInittab + "\n"
		if string(data) != want {
			t.Errorf("inittab:\n%s\nwant:\n%s", data, want)
		}
	}
	// A symlink that points out of the tree is replaced, never followed.
	outside := filepath.Join(t.TempDir(), "host-inittab")
	if err := os.WriteFile(outside, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(inittab)
	if err := os.Symlink(outside, inittab); err != nil {
		t.Fatal(err)
	}
	if err := AddBootedMark(root); err == nil {
		data, _ := os.ReadFile(outside)
		if string(data) != "host\n" {
			t.Errorf("wrote through a symlink out of the tree: %q", data)
		}
	}
}

func TestWantsTmpfsTmp(t *testing.T) {
	mk := func(t *testing.T, links map[string]string) string {
		root := t.TempDir()
		for p, target := range links {
			full := filepath.Join(root, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			var err error
			if target == "" {
				err = os.WriteFile(full, []byte("[Mount]\nWhat=tmpfs\n"), 0o644)
			} else {
				err = os.Symlink(target, full)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	unit := "usr/lib/systemd/system/tmp.mount"
	wants := "usr/lib/systemd/system/local-fs.target.wants/tmp.mount"
	tests := []struct {
		name  string
		links map[string]string
		want  bool
	}{
		{"Debian 13", map[string]string{unit: "", wants: "../tmp.mount"}, true},
		{"Debian 12: shipped, not wanted", map[string]string{"usr/share/systemd/tmp.mount": ""}, false},
		{"enabled by the admin", map[string]string{unit: "", "etc/systemd/system/local-fs.target.wants/tmp.mount": "/usr/lib/systemd/system/tmp.mount"}, true},
		{"masked", map[string]string{unit: "", wants: "../tmp.mount", "etc/systemd/system/tmp.mount": "/dev/null"}, false},
		{"dangling want", map[string]string{wants: "../tmp.mount"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := WantsTmpfsTmp(mk(t, tt.links)); got != tt.want {
				t.Errorf("WantsTmpfsTmp = %v, want %v", got, tt.want)
			}
		})
	}
	if WantsTmpfsTmp(filepath.Join(t.TempDir(), "missing")) {
		t.Error("a missing root wants a tmpfs")
	}
}
