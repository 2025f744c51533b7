//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// distro is one cell of the distribution matrix: a Debian suite booting one init system.
type distro struct {
	name, suite, init string
	include           []string
}

// distroMatrix is what TestDistroMatrix boots. Debian 12 with systemd is the shared Debian
// fixture (its extra packages do not change the boot); the others are minimal builds.
var distroMatrix = []distro{
	{name: debianName, suite: debianSuite, init: "systemd", include: debianInclude},
	{name: "debian-13-x86_64-minimal", suite: "trixie", init: "systemd"},
	{name: "debian-11-x86_64-minimal", suite: "bullseye", init: "systemd"},
	{name: "debian-12-x86_64-sysvinit", suite: "bookworm", init: "sysvinit"},
	{name: "debian-12-x86_64-openrc", suite: "bookworm", init: "openrc"},
	{name: "debian-12-x86_64-runit", suite: "bookworm", init: "runit"},
}

// TestDistroMatrix boots each distribution of the matrix in a user-namespace VE (the
// default) and checks that it comes fully up with nothing failed, within start --wait's
// probe and well before its timeout; that the host name is the VE's before the init reads
// it; that exec works; that an in-VE reboot brings it back in place; and that stop shuts it
// down through its own init, within 10 s, with nothing left to kill.
//
// VECTL_TEST_DISTROS, a comma-separated list of cells (trixie-systemd,...), restricts the
// matrix to those (the VM harness runs the systemd guests); each cell that runs is logged.
func TestDistroMatrix(t *testing.T) {
	only := os.Getenv("VECTL_TEST_DISTROS")
	for _, d := range distroMatrix {
		cell := d.suite + "-" + d.init
		if only != "" && !slices.Contains(strings.Split(only, ","), cell) {
			continue
		}
		t.Run(cell, func(t *testing.T) {
			e := newEnv(t)
			archive := debootstrapFixture(t, d.name, d.suite, d.init, d.include)
			e.must("template", "import", archive, "--name", d.name)
			if got := templateInit(e, d.name); got != d.init {
				t.Fatalf("template list says init %q, want %q", got, d.init)
			}
			id := uniqueID(t)
			e.must("create", id, "--ostemplate", d.name)
			start := time.Now()
			e.must("start", id, "--wait", "--timeout", "90")
			t.Logf("%s: start --wait took %v", d.name, time.Since(start).Round(time.Millisecond))
			checkFullyUp(e, id, d.init)
			if got := e.out(id, "hostname"); got != id {
				t.Errorf("hostname = %q, want the id %s", got, id)
			}
			if got := e.out(id, "cat", "/etc/hostname"); got != id {
				t.Errorf("/etc/hostname = %q, want the id %s", got, id)
			}
			if got := e.out(id, "sh", "-c", "echo $((6*7))"); got != "42" {
				t.Errorf("exec: %q", got)
			}

			// Reboot in place: a new boot (boot id), fully up again, same VE.
			boot1 := e.out(id, "cat", "/proc/sys/kernel/random/boot_id")
			e.exec(id, "reboot")
			eventually(t, 60*time.Second, "the VE to come back with a new boot id", func() bool {
				r := e.exec(id, "cat", "/proc/sys/kernel/random/boot_id")
				b := strings.TrimSpace(r.stdout)
				return r.code == 0 && b != "" && b != boot1
			})
			waitUp(e, id, d.init)
			checkFullyUp(e, id, d.init)

			// Stop through the init: within 10 s and nothing left to kill (vectl says when
			// it has to kill).
			start = time.Now()
			r := e.must("stop", id, "--timeout", "10")
			if took := time.Since(start); took > 10*time.Second || strings.Contains(r.stderr, "killing") {
				t.Fatalf("stop took %v and said %q", took, r.stderr)
			}
			e.wantNoTrace(id)

			// A stop right after a start (which returns before the init program runs and
			// sets up its signals; runit's stage 1 ignores a halt) goes through the init too.
			e.must("start", id)
			start = time.Now()
			r = e.must("stop", id, "--timeout", "15")
			if took := time.Since(start); took > 15*time.Second || strings.Contains(r.stderr, "killing") {
				t.Fatalf("stop right after the start took %v and said %q", took, r.stderr)
			}
			e.wantNoTrace(id)

			// Booting, rebooting and stopping left the shared template as it was installed.
			if r := e.must("template", "verify", d.name); !strings.Contains(r.stdout, "as installed") {
				t.Errorf("template verify: %s", r)
			}
		})
	}
}

// TestDebian13 checks what Debian 13's systemd brings beyond the matrix: the tmpfs /tmp it
// mounts (a user-namespace VE's systemd mounts it; vectl mounts it for a privileged VE,
// which may not) and a --hostname in place at its first boot.
func TestDebian13(t *testing.T) {
	d := distroMatrix[1]
	e := newEnv(t)
	e.must("template", "import", debootstrapFixture(t, d.name, d.suite, d.init, d.include), "--name", d.name)
	for _, userns := range []string{"yes", "no"} {
		id := uniqueID(t)
		host := "web" + id + ".example.org"
		e.must("create", id, "--ostemplate", d.name, "--userns", userns, "--hostname", host)
		e.must("start", id, "--wait", "--timeout", "90")
		checkFullyUp(e, id, "systemd")
		if got := e.out(id, "stat", "-f", "-c", "%T", "/tmp"); got != "tmpfs" {
			t.Errorf("userns %s: /tmp is %s, want tmpfs", userns, got)
		}
		if got := e.out(id, "systemctl", "show", "-P", "ActiveState", "tmp.mount"); got != "active" {
			t.Errorf("userns %s: tmp.mount is %s", userns, got)
		}
		if got := e.out(id, "hostname"); got != host {
			t.Errorf("userns %s: hostname %q, want %q", userns, got, host)
		}
		if got := e.out(id, "cat", "/etc/hostname"); got != host {
			t.Errorf("userns %s: /etc/hostname %q, want %q", userns, got, host)
		}
		if failed := e.out(id, "journalctl", "-b", "-p", "err", "--no-pager", "-q"); failed != "" {
			t.Errorf("userns %s: errors in the journal:\n%s", userns, failed)
		}
		e.must("stop", id)
		e.must("destroy", id)
	}
}

// templateInit returns the init template list --json reports for name.
func templateInit(e *env, name string) string {
	var infos []struct{ Name, Init string }
	if err := json.Unmarshal([]byte(e.must("template", "list", "--json").stdout), &infos); err != nil {
		e.t.Fatal(err)
	}
	for _, i := range infos {
		if i.Name == name {
			return i.Init
		}
	}
	return ""
}

// waitUp waits until the init says its boot is complete again (after a reboot).
func waitUp(e *env, id, init string) {
	e.t.Helper()
	eventually(e.t, 90*time.Second, init+" to have booted", func() bool {
		switch init {
		case "systemd":
			s := strings.TrimSpace(e.exec(id, "systemctl", "is-system-running", "--wait").stdout)
			return s == "running" || s == "degraded"
		case "runit":
			return e.exec(id, "pidof", "runsvdir").code == 0
		default:
			return e.exec(id, "test", "-e", "/run/vectl-booted").code == 0
		}
	})
}

// bootFailure matches what Debian's boot and shutdown scripts print when something does not
// work: the LSB functions' "failed" and "[FAIL]", OpenRC's " * ERROR:", refused mounts,
// missing files and commands, misused tools, and sysvinit's respawn complaints.
var bootFailure = regexp.MustCompile(`(?i)fail|error|respawning too fast|not found|no such file|cannot|permission denied|usage:`)

// checkFullyUp checks that the VE's init reached its fully-up state with nothing failed:
// systemd "running" and no failed unit; OpenRC's default runlevel with nothing crashed or
// stopped that should run; runit's services all up; and for sysvinit, OpenRC and runit, no
// failure printed on the console by this boot's scripts.
func checkFullyUp(e *env, id, init string) {
	t := e.t
	t.Helper()
	switch init {
	case "systemd":
		if got := e.out(id, "systemctl", "is-system-running", "--wait"); got != "running" {
			failed := e.exec(id, "systemctl", "--failed", "--no-legend", "--plain", "--no-pager").stdout
			t.Fatalf("systemctl is-system-running = %q; failed units:\n%s", got, failed)
		}
		return
	case "sysvinit":
		if got := e.out(id, "runlevel"); !strings.HasSuffix(got, " 2") {
			t.Errorf("runlevel = %q, want 2", got)
		}
	case "openrc":
		if got := e.out(id, "rc-status", "--runlevel"); got != "default" {
			t.Errorf("rc-status --runlevel = %q, want default", got)
		}
		if got := strings.TrimSpace(e.exec(id, "rc-status", "--crashed").stdout); got != "" {
			t.Errorf("rc-status --crashed: %q", got)
		}
		// Every service of the default runlevel is started.
		for _, l := range strings.Split(e.out(id, "rc-status", "default"), "\n") {
			if strings.Contains(l, "[") && !strings.Contains(l, "started") {
				t.Errorf("rc-status default: %q", l)
			}
		}
	case "runit":
		r := e.exec(id, "sh", "-c", "sv status /etc/service/*")
		if r.code != 0 {
			t.Errorf("sv status: %s", r)
		}
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if !strings.HasPrefix(l, "run: ") {
				t.Errorf("runit service not up: %q", l)
			}
		}
	}
	// The console log holds every boot of this VE so far: none may have printed a failure.
	data, err := os.ReadFile(filepath.Join(e.log, id+".console"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if bootFailure.MatchString(l) {
			t.Errorf("%s boot printed a failure: %q\nconsole log:\n%s", init, l, data)
			return
		}
	}
}
