package lcinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain: this test binary links the package's constructor; run as "init" with an argv[0]
// the constructor does not take, it exits 7 as libcontainer's init would go on in place.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		os.Exit(7)
	}
	os.Exit(m.Run())
}

// TestConstructor: executed with argv[1] "init" and an absolute argv[0] naming vectl-init,
// the binary executes that program at once with the same arguments (here a script that
// records them); with any other argv[0] or argument it goes on as itself.
func TestConstructor(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	prog := filepath.Join(dir, Name)
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"$0 $*\" > "+out+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(argv ...string) (int, string) {
		t.Helper()
		os.Remove(out)
		c := &exec.Cmd{Path: self, Args: argv}
		err := c.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
		b, _ := os.ReadFile(out)
		return code, strings.TrimSpace(string(b))
	}
	if code, got := run(prog, "init"); code != 0 || got != prog+" init" {
		t.Fatalf("run as %s init: exit %d, the program saw %q; want it executed with \"init\"", prog, code, got)
	}
	for _, argv := range [][]string{
		{Name, "init"}, // not absolute
		{filepath.Join(dir, "vectl-init2"), "init"}, // another name
		{prog, "-test.run=^$"},                      // not the init
	} {
		wantCode := 7
		if argv[1] != "init" {
			wantCode = 0
		}
		if code, got := run(argv...); code != wantCode || got != "" {
			t.Errorf("run as %v: exit %d, the program saw %q; want exit %d and no exec", argv, code, got, wantCode)
		}
	}
}

// TestUse: argv[0] names the program while start runs, and is back afterwards; a path that
// is not an absolute one to vectl-init (or "") leaves it alone.
func TestUse(t *testing.T) {
	saved := os.Args[0]
	prog := "/var/lib/vectl/init-bin/0123456789ab/" + Name
	var during string
	if err := Use(prog, func() error { during = os.Args[0]; return nil }); err != nil || during != prog {
		t.Fatalf("Use(%s): argv[0] %q during start (%v)", prog, during, err)
	}
	if os.Args[0] != saved {
		t.Fatalf("argv[0] is %q after Use, want %q", os.Args[0], saved)
	}
	for _, p := range []string{"", Name, "/usr/bin/other"} {
		if err := Use(p, func() error { during = os.Args[0]; return nil }); err != nil || during != saved {
			t.Errorf("Use(%q): argv[0] %q during start, want it unchanged", p, during)
		}
	}
}
