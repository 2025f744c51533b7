package criuwrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstall: the wrapper's directory holds criu, a link to this binary, and the parameter
// file its constructor reads: seven NUL-ended fields, the clock offsets empty without a time
// namespace. A NUL in a parameter is refused.
func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "criu-bin")
	p := Params{Criu: "/usr/sbin/criu", Log: "/d/restore-wrapper.log", UserNS: "/run/u", NetNS: "/run/n", Hostname: "ve.example"}
	params, err := Install(dir, p)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if target, err := os.Readlink(filepath.Join(dir, "criu")); err != nil || target != exe {
		t.Errorf("criu links to %q (%v), want %q", target, err, exe)
	}
	data, err := os.ReadFile(params)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/usr/sbin/criu\x00/d/restore-wrapper.log\x00/run/u\x00/run/n\x00ve.example\x00\x00\x00"; string(data) != want {
		t.Errorf("parameters %q, want %q", data, want)
	}
	p.TimeNS, p.Mono, p.Boot = true, -79000, 42
	if params, err = Install(dir, p); err != nil {
		t.Fatal(err)
	}
	if data, _ = os.ReadFile(params); !strings.HasSuffix(string(data), "\x00-79000\x0042\x00") {
		t.Errorf("parameters with a time namespace %q", data)
	}
	p.Hostname = "a\x00b"
	if _, err := Install(dir, p); err == nil {
		t.Error("a host name with a NUL byte was taken")
	}
}

// TestVersionQuery: run as "criu" with the parameter file named, this test binary's
// constructor is the wrapper; criu's version query (anything but "swrk 3") goes straight to
// the real criu, here echo, with the same arguments and without the wrapper's variable. A
// missing parameter file is an error naming it, before anything else happens.
func TestVersionQuery(t *testing.T) {
	run := func(real string, args ...string) (string, error) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "criu-bin")
		params, err := Install(dir, Params{Criu: real, Log: "/nonexistent/log", UserNS: "/nonexistent/u",
			NetNS: "/nonexistent/n", Hostname: "h"})
		if err != nil {
			t.Fatal(err)
		}
		if real == "" {
			os.Remove(params)
		}
		cmd := exec.Command(filepath.Join(dir, "criu"), args...)
		cmd.Args[0] = "criu"
		cmd.Env = []string{Env + "=" + params}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	tool := func(name string) string {
		path, err := exec.LookPath(name)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	if out, err := run(tool("echo"), "swrk", "9"); err != nil || out != "swrk 9\n" {
		t.Errorf("version query through the wrapper: %q, %v; want echo's \"swrk 9\"", out, err)
	}
	// printenv exits 1, printing nothing, for a variable that is not set.
	if out, err := run(tool("printenv"), Env); err == nil || out != "" {
		t.Errorf("the real criu sees %s: %q, %v", Env, out, err)
	}
	if out, err := run("", "swrk", "3"); err == nil || !strings.Contains(out, "criu wrapper: read its parameters") {
		t.Errorf("wrapper without its parameters: %q, %v; want a failure naming them", out, err)
	}
}
