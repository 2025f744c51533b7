//go:build integration && !vmtest

package integration

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/network"
)

// criuBin is CRIU as make criu (part of make deps) installs it.
const criuBin = "/usr/local/lib/vectl/criu/criu"

// TestCriuInstalled (issue 17): make deps leaves a criu of at least 4.1 that runs on this
// kernel: `criu check` passes with the wrapper's own libraries.
func TestCriuInstalled(t *testing.T) {
	out, err := exec.Command(criuBin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s (run make criu)", criuBin, err, out)
	}
	v := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(out), "\n", 2)[0], "Version: "))
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil || major < 4 || major == 4 && minor < 1 {
		t.Fatalf("criu version %q: vectl needs 4.1 or newer", v)
	}
	out, err = exec.Command(criuBin, "check").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Looks good") {
		t.Fatalf("criu check: %v\n%s", err, out)
	}
}

// counterScript keeps a counter in a shell variable (memory only) and writes it out every
// 100 ms; its pid inside the VE is printed first.
const counterScript = `(i=0; while true; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done) </dev/null >/dev/null 2>&1 & echo $!`

// readCounter returns the counter a VE's counterScript last wrote.
func (e *env) readCounter(id string) int {
	e.t.Helper()
	n, err := strconv.Atoi(e.out(id, "cat", "/tmp/counter"))
	if err != nil {
		e.t.Fatalf("counter: %v", err)
	}
	return n
}

// TestCheckpointRestore (issue 17): a busybox VE with a counter in memory is checkpointed
// (it is then down, "suspended", nothing of its run left) and restored: the counter goes on
// from where it was, with the same pid inside; the monitor is again the init's parent, so the
// console works and an in-VE reboot restarts the VE. --leave-running dumps and keeps it
// running; the refusals exit 31, 32 and 17 with nothing changed.
func TestCheckpointRestore(t *testing.T) {
	requireTool(t, "tmux")
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--userns", "no", "--ram", "128M")
	e.expect(31, "chkpnt", id)
	e.expect(17, "restore", id) // no dump
	e.must("start", id, "--wait", "--timeout", "60")
	pid := e.out(id, "sh", "-c", counterScript)
	eventually(t, 5*time.Second, "the counter", func() bool { return e.exec(id, "cat", "/tmp/counter").code == 0 })

	up1 := e.veUptime(id)
	dumped := time.Now()
	r := e.must("chkpnt", id)
	if !strings.Contains(r.stdout, "checkpointed") {
		t.Fatalf("chkpnt said %q", r.stdout)
	}
	e.wantStatus(id, "exist unmounted down suspended")
	if st := strings.TrimSpace(e.must("list", "-a", "-H", "-o", "status", id).stdout); st != "suspended" {
		t.Fatalf("list status = %q, want suspended", st)
	}
	var st struct {
		Suspended bool `json:"suspended"`
		Running   bool `json:"running"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil || !st.Suspended || st.Running {
		t.Fatalf("status --json: %+v %v", st, err)
	}
	e.wantNoTrace(id)
	dump := filepath.Join(e.root, "dump", id)
	if !fileExists(filepath.Join(dump, "vectl-dump.json")) {
		t.Fatalf("no dump in %s", dump)
	}
	time.Sleep(time.Second)
	e.must("restore", id)
	e.wantStatus(id, "exist mounted running")
	// The VE's clocks go on from the dump (criu's time namespace): its uptime neither went
	// back nor counted the time it was down.
	if up2 := e.veUptime(id); up2 < up1 || up2 > up1+age(dumped)-1 {
		t.Errorf("uptime %.2f s before the checkpoint, %.2f s after a restore %.2f s later", up1, up2, age(dumped))
	}
	// Its /proc views are back, kept by the new monitor.
	if got := e.out(id, "sed", "-n", "s/^MemTotal: *//p", "/proc/meminfo"); got != "131072 kB" {
		t.Errorf("MemTotal after the restore: %q, want the VE's 131072 kB", got)
	}
	if fileExists(dump) {
		t.Errorf("dump %s left after the restore", dump)
	}
	if got := e.out(id, "sh", "-c", "ps -o pid,args | grep -c '[w]hile true'"); got == "0" {
		t.Fatalf("the counter loop is gone after the restore")
	}
	if e.exec(id, "kill", "-0", pid).code != 0 {
		t.Fatalf("the counter's pid %s is gone after the restore:\n%s", pid, e.out(id, "ps"))
	}
	n1 := e.readCounter(id)
	eventually(t, 5*time.Second, "the counter to go on", func() bool { return e.readCounter(id) > n1 })

	// The monitor holds the console again.
	e.consoleAnswers(id, "restored")

	// --leave-running: a dump, and the VE goes on.
	e.must("chkpnt", id, "--leave-running")
	e.wantStatus(id, "exist mounted running")
	if !fileExists(filepath.Join(dump, "vectl-dump.json")) {
		t.Fatalf("chkpnt --leave-running made no dump in %s", dump)
	}
	n2 := e.readCounter(id)
	eventually(t, 5*time.Second, "the counter to go on after --leave-running", func() bool { return e.readCounter(id) > n2 })
	e.expect(32, "restore", id, "--dumpfile", dump)

	// An in-VE reboot restarts the restored VE (its monitor is the init's parent).
	init1 := e.initStart(id)
	e.exec(id, "reboot")
	eventually(t, 20*time.Second, "the reboot", func() bool {
		n := e.initStartNow(id)
		return n != 0 && n != init1 && e.exec(id, "true").code == 0
	})
	e.must("stop", id, "--timeout", "10")
	// The leave-running dump is stale now (the VE ran on): refused with 17 unless --force.
	r = e.expect(17, "restore", id, "--dumpfile", dump)
	if !strings.Contains(r.stderr, "--leave-running") {
		t.Errorf("restore of a --leave-running dump: %q", r.stderr)
	}
	e.wantNoTrace(id)
	e.must("destroy", id)
	if fileExists(dump) {
		t.Errorf("destroy left the dump %s", dump)
	}
}

// TestCheckpointStale (issue 17): a dump whose VE's private area changed since is refused
// (17, naming why) and kept; start --skip-restore drops it and boots afresh; destroy of a
// suspended VE removes its dump.
func TestCheckpointStale(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", e.importBusybox(), "--userns", "no")
	e.must("start", id, "--wait", "--timeout", "60")
	e.must("chkpnt", id)
	e.must("mount", id)
	if err := os.WriteFile(filepath.Join(e.root, "root", id, "changed"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must("umount", id)
	r := e.expect(17, "restore", id)
	if !strings.Contains(r.stderr, "stale") {
		t.Fatalf("restore of a stale dump: %q", r.stderr)
	}
	e.wantStatus(id, "exist unmounted down suspended")
	e.expect(17, "start", id) // a start restores, and refuses the same way
	e.must("start", id, "--skip-restore", "--wait", "--timeout", "60")
	e.wantStatus(id, "exist mounted running")
	e.out(id, "test", "-e", "/changed")
	e.must("chkpnt", id)
	dump := filepath.Join(e.root, "dump", id)
	e.must("destroy", id)
	if fileExists(dump) {
		t.Fatalf("destroy left the dump %s", dump)
	}
}

// TestCheckpointRefused (issue 17): with no usable criu, chkpnt exits 16 saying how to get
// one, and the VE keeps running.
func TestCheckpointRefused(t *testing.T) {
	e := newEnv(t)
	id := e.startVE(e.importBusybox())
	cmd := e.cmd("chkpnt", id)
	cmd.Env = append(os.Environ(), "VECTL_CRIU=/nonexistent/criu")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 16 || !strings.Contains(string(out), "make criu") {
		t.Fatalf("chkpnt with no criu: %v %q", err, out)
	}
	e.wantStatus(id, "exist mounted running")
	e.must("stop", id, "--fast")
}

// TestCheckpointUserNS (issue 16, 17): VEs in their own user namespace (the default) are
// checkpointed and restored into a new pinned user namespace with the same range: a busybox
// VE's counter goes on with its pid, files it makes afterwards are owned by its range on the
// host; a Debian systemd VE is running again with no failed unit, its boot id unchanged and
// its services back in their cgroups, and reboots afterwards.
func TestCheckpointUserNS(t *testing.T) {
	e := newEnv(t)
	id := e.startVE(e.importBusybox())
	var st struct {
		UserNS struct{ UID, GID uint32 } `json:"userns"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil || st.UserNS.UID == 0 {
		t.Fatalf("status --json: %+v %v", st, err)
	}
	pid := e.out(id, "sh", "-c", counterScript)
	eventually(t, 5*time.Second, "the counter", func() bool { return e.exec(id, "cat", "/tmp/counter").code == 0 })
	e.must("chkpnt", id)
	e.wantStatus(id, "exist unmounted down suspended")
	e.wantNoTrace(id)
	e.must("restore", id)
	if e.exec(id, "kill", "-0", pid).code != 0 {
		t.Fatalf("the counter's pid %s is gone after the restore", pid)
	}
	n := e.readCounter(id)
	eventually(t, 5*time.Second, "the counter to go on", func() bool { return e.readCounter(id) > n })
	wantCgroupNSRoot(t, e, id)
	if m := e.out(id, "cat", "/proc/self/uid_map"); !strings.HasPrefix(strings.Join(strings.Fields(m), " "), fmt.Sprintf("0 %d 65536", st.UserNS.UID)) {
		t.Fatalf("uid_map after the restore: %q, want the VE's range %d", m, st.UserNS.UID)
	}
	e.out(id, "touch", "/root/after-restore")
	var fi syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.root, "private", id, "upper", "root", "after-restore"), &fi); err != nil {
		t.Fatal(err)
	} else if fi.Uid != st.UserNS.UID {
		t.Errorf("a file made after the restore is owned by host uid %d, want %d", fi.Uid, st.UserNS.UID)
	}
	e.must("stop", id, "--fast")
	e.wantNoTrace(id)
	// The restore let the VE's root search the run directory; destroy takes that back.
	if !aclNames(t, e.run, st.UserNS.UID) {
		t.Fatalf("no ACL entry for the VE's uid %d on %s after its restore", st.UserNS.UID, e.run)
	}
	e.must("destroy", id)
	for _, d := range []string{e.run, filepath.Join(e.run, "ve"), filepath.Join(e.run, "lc"), filepath.Join(e.root, "dump")} {
		if aclNames(t, d, st.UserNS.UID) {
			t.Errorf("%s still grants the destroyed VE's uid %d", d, st.UserNS.UID)
		}
	}

	deb := e.startVE(e.importDebian())
	boot := e.out(deb, "cat", "/proc/sys/kernel/random/boot_id")
	// A service sandboxed as systemd-logind is (ProtectHostname=, PrivateIPC=, PrivateTmp=,
	// ProtectSystem=) runs in the VE's own UTS and IPC namespaces (CRIU cannot dump nested
	// ones) and in a mount namespace of its own, which vectl's criu restores (criu 4.2.1
	// itself cannot: another criu is refused up front, naming the service, the VE going on).
	e.out(deb, "sh", "-c", `printf '[Service]\nExecStart=/bin/sleep infinity\nProtectHostname=yes\nPrivateIPC=yes\nPrivateTmp=yes\nProtectSystem=strict\n' > /etc/systemd/system/vectl-sandboxed.service && systemctl daemon-reload && systemctl start vectl-sandboxed`)
	sandboxed := e.out(deb, "systemctl", "show", "-P", "MainPID", "vectl-sandboxed")
	for _, ns := range []string{"uts", "ipc"} {
		if a, b := e.out(deb, "readlink", "/proc/1/ns/"+ns), e.out(deb, "readlink", "/proc/"+sandboxed+"/ns/"+ns); a != b {
			t.Fatalf("the sandboxed service has a %s namespace of its own (%s, init's %s)", ns, b, a)
		}
	}
	if a, b := e.out(deb, "readlink", "/proc/1/ns/mnt"), e.out(deb, "readlink", "/proc/"+sandboxed+"/ns/mnt"); a == b {
		t.Fatalf("the sandboxed service has no mount namespace of its own (%s)", a)
	}
	other := otherCriu(t)
	c := e.cmd("chkpnt", deb)
	c.Env = append(os.Environ(), "VECTL_CRIU="+other)
	if out, err := c.CombinedOutput(); exitCode(err) != 16 || !strings.Contains(string(out), "vectl-sandboxed.service") || !strings.Contains(string(out), "keeps running") {
		t.Fatalf("chkpnt with another criu of a VE with a service in a mount namespace of its own: exit %d, %s", exitCode(err), out)
	}
	e.wantStatus(deb, "exist mounted running")
	e.must("chkpnt", deb)
	e.must("restore", deb)
	if st := e.out(deb, "systemctl", "is-system-running"); st != "running" {
		t.Errorf("systemd after the restore: %s (failed: %s)", st, e.out(deb, "systemctl", "--failed", "--no-legend"))
	}
	if b := e.out(deb, "cat", "/proc/sys/kernel/random/boot_id"); b != boot {
		t.Errorf("boot id %s after the restore, was %s", b, boot)
	}
	if got := e.out(deb, "systemctl", "show", "-P", "MainPID", "vectl-sandboxed"); got != sandboxed {
		t.Errorf("the sandboxed service's pid after the restore: %s, was %s", got, sandboxed)
	}
	if cg := e.out(deb, "sh", "-c", "grep -h -E '^0::|name=systemd' /proc/$(pidof systemd-journald)/cgroup"); !strings.Contains(cg, "systemd-journald.service") {
		t.Errorf("journald is not in its service's cgroup after the restore: %q", cg)
	}
	wantCgroupNSRoot(t, e, deb)
	// A restored VE is checkpointed again (systemd's inotify watches included).
	e.must("chkpnt", deb)
	e.must("restore", deb)
	if st := e.out(deb, "systemctl", "is-system-running"); st != "running" {
		t.Errorf("systemd after the second restore: %s", st)
	}
	e.exec(deb, "reboot")
	eventually(t, 60*time.Second, "systemd to be running after the reboot", func() bool {
		r := e.exec(deb, "systemctl", "is-system-running")
		b := e.exec(deb, "cat", "/proc/sys/kernel/random/boot_id")
		return strings.TrimSpace(r.stdout) == "running" && strings.TrimSpace(b.stdout) != boot
	})
	e.must("stop", deb)
	e.wantNoTrace(deb)
}

// aclNames reports whether directory dir's access ACL has an entry for host uid uid.
func aclNames(t *testing.T, dir string, uid uint32) bool {
	t.Helper()
	v := make([]byte, 4096)
	n, err := syscall.Getxattr(dir, "system.posix_acl_access", v)
	if err == syscall.ENODATA {
		return false
	}
	if err != nil {
		t.Fatalf("ACL of %s: %v", dir, err)
	}
	for i := 4; i+8 <= n; i += 8 {
		if binary.LittleEndian.Uint16(v[i:]) == 0x02 && binary.LittleEndian.Uint32(v[i+4:]) == uid {
			return true
		}
	}
	return false
}

// wantCgroupNSRoot checks that the VE's init sees its cgroups from a cgroup namespace rooted
// at the VE's cgroup in every hierarchy (no "/.." in /proc/1/cgroup as seen inside): one
// rooted elsewhere makes the next dump fail.
func wantCgroupNSRoot(t *testing.T, e *env, id string) {
	t.Helper()
	if cg := e.out(id, "cat", "/proc/1/cgroup"); strings.Contains(cg, "/..") {
		t.Errorf("the VE's init has a cgroup namespace rooted outside the VE's cgroup:\n%s", cg)
	}
}

// echoService starts a line echo service on port 9000 in a Debian VE (perl-base is in every
// Debian system).
const echoService = `nohup perl -MIO::Socket::INET -e '$l = IO::Socket::INET->new(LocalPort => 9000, Listen => 5, ReuseAddr => 1) or die "listen: $!"; $c = $l->accept; $c->autoflush(1); print $c $_ while <$c>' >/dev/null 2>&1 &`

// debianEcho starts a Debian VE with an address and the echoService, and a client that
// exchanges lines with it (dialEcho).
func (e *env) debianEcho() (id, ip string, c *echoClient) {
	e.t.Helper()
	id, ip = uniqueID(e.t), testIP("4")
	e.must("create", id, "--ostemplate", e.importDebian(), "--ipadd", ip)
	e.must("start", id, "--wait", "--timeout", "90")
	e.out(id, "sh", "-c", echoService)
	return id, ip, dialEcho(e.t, ip)
}

// TestCheckpointDebianTCP (issue 17): a Debian systemd VE with an established TCP
// connection from the host (a client that exchanges a numbered line every 100 ms with an
// echo service in the VE) is checkpointed and restored: the connection survives without a
// reset, no line is lost or duplicated, systemd is still running with no failed unit, and
// an in-VE reboot works afterwards.
func TestCheckpointDebianTCP(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	id, _, c := e.debianEcho()
	time.Sleep(time.Second)
	e.must("chkpnt", id)
	e.wantStatus(id, "exist unmounted down suspended")
	e.must("restore", id)
	e.wantStatus(id, "exist mounted running")
	time.Sleep(2 * time.Second)
	sent := c.finish(t)
	if sent < 25 {
		t.Fatalf("only %d lines went through", sent)
	}
	t.Logf("%d lines echoed across the checkpoint", sent)
	if st := e.out(id, "systemctl", "is-system-running"); st != "running" {
		t.Errorf("systemd after the restore: %s (failed: %s)", st, e.out(id, "systemctl", "--failed", "--no-legend"))
	}
	e.rebootSystemd(id)
	e.must("stop", id)
	e.wantNoTrace(id)
}

// rebootSystemd reboots a systemd VE from inside and waits until it runs again with a new
// boot id and systemd says running.
func (e *env) rebootSystemd(id string) {
	e.t.Helper()
	boot1 := e.out(id, "cat", "/proc/sys/kernel/random/boot_id")
	e.exec(id, "reboot")
	eventually(e.t, 90*time.Second, "systemd to be running after the reboot", func() bool {
		r := e.exec(id, "systemctl", "is-system-running")
		b := e.exec(id, "cat", "/proc/sys/kernel/random/boot_id")
		return strings.TrimSpace(r.stdout) == "running" && b.code == 0 && strings.TrimSpace(b.stdout) != boot1
	})
}

// TestBootSuspend (issue 17): boot --stop --suspend checkpoints the running VEs instead of
// stopping them (status "suspended"), and the next boot restores them: a busybox VE's
// counter goes on with its pid, a Debian systemd VE keeps its boot id, its uptime goes on and
// a TCP connection from the host to it survives (a line every 100 ms, none lost).
// A VE whose restore fails (its dump went stale) is started afresh, reported, exit 3.
func TestBootSuspend(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	busybox := e.importBusybox()
	a := e.startVE(busybox)
	b, _, conn := e.debianEcho()
	c := e.startVE(busybox)
	pid := e.out(a, "sh", "-c", counterScript)
	eventually(t, 5*time.Second, "the counter", func() bool { return e.exec(a, "cat", "/tmp/counter").code == 0 })
	boot := e.out(b, "cat", "/proc/sys/kernel/random/boot_id")
	up1, _ := strconv.ParseFloat(strings.Fields(e.out(b, "cat", "/proc/uptime"))[0], 64)

	e.expect(20, "boot", "--suspend") // --suspend goes with --stop
	r := e.must("boot", "--stop", "--suspend")
	for _, id := range []string{a, b, c} {
		if !strings.Contains(r.stdout, "VE "+id+" suspended") {
			t.Fatalf("boot --stop --suspend did not suspend %s:\n%s", id, r)
		}
		e.wantStatus(id, "exist unmounted down suspended")
	}
	// C's dump goes stale: the next boot starts it afresh and says so.
	e.must("mount", c)
	if err := os.WriteFile(filepath.Join(e.root, "root", c, "changed"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must("umount", c)

	r = e.expect(3, "boot")
	for _, id := range []string{a, b} {
		if !strings.Contains(r.stdout, "VE "+id+" restored") {
			t.Fatalf("boot did not restore %s:\n%s", id, r)
		}
	}
	if !strings.Contains(r.stderr, "restore "+c) || !strings.Contains(r.stderr, "started afresh") {
		t.Fatalf("boot does not report the VE it started afresh:\n%s", r)
	}
	for _, id := range []string{a, b, c} {
		e.wantStatus(id, "exist mounted running")
	}
	if e.exec(a, "kill", "-0", pid).code != 0 {
		t.Fatalf("the counter's pid %s is gone after boot", pid)
	}
	n := e.readCounter(a)
	eventually(t, 5*time.Second, "the counter to go on", func() bool { return e.readCounter(a) > n })
	if got := e.out(b, "cat", "/proc/sys/kernel/random/boot_id"); got != boot {
		t.Errorf("boot id of %s after boot: %s, was %s", b, got, boot)
	}
	up2, _ := strconv.ParseFloat(strings.Fields(e.out(b, "cat", "/proc/uptime"))[0], 64)
	if up2 < up1 {
		t.Errorf("uptime of %s went back: %.2f s before, %.2f s after", b, up1, up2)
	}
	t.Logf("uptime of the Debian VE: %.2f s before the suspend, %.2f s after the restore", up1, up2)
	time.Sleep(3 * time.Second) // the client's retransmission backs off while the VE is down
	if sent := conn.finish(t); sent < 20 {
		t.Fatalf("only %d lines went through the Debian VE's connection", sent)
	}
	e.out(c, "test", "-e", "/changed")
	for _, id := range []string{a, b, c} {
		e.must("stop", id, "--fast")
		e.wantNoTrace(id)
	}
}

// exitCode is the exit status of a command that ran (0 for nil, -1 if it did not run).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// otherCriu copies vectl's criu to a path of another name, where vectl takes it for a criu
// that is not its own build (one that cannot restore nested mount namespaces).
func otherCriu(t *testing.T) string {
	t.Helper()
	other := filepath.Join(t.TempDir(), "criu")
	if err := copyFile("/usr/local/lib/vectl/criu/criu", other); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(other, 0o755); err != nil {
		t.Fatal(err)
	}
	return other
}

// TestCriuLogLevel: criu logs a dump at its own default level (errors and warnings: no
// progress lines), at debug with {"criu_log_level": 4} in the node's settings; a level out
// of range is refused (exit 21) naming the file, and nothing runs.
func TestCriuLogLevel(t *testing.T) {
	e := newEnv(t)
	setNode := nodeConfig(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--userns", "no")
	e.must("start", id, "--wait", "--timeout", "60")
	log := filepath.Join(e.root, "dump", id, "dump.log")
	dumpLog := func() string {
		t.Helper()
		e.must("chkpnt", id, "--leave-running")
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	const done = "Dumping finished successfully" // an information line (level 3)
	setNode("")
	if got := dumpLog(); strings.Contains(got, done) || strings.Count(got, "\n") > 100 {
		t.Fatalf("a dump at the default level logged progress (%d lines):\n%.2000s", strings.Count(got, "\n"), got)
	}
	setNode(`{"criu_log_level": 4}`)
	if got := dumpLog(); !strings.Contains(got, done) {
		t.Fatalf("a dump at level 4 did not log its progress:\n%.2000s", got)
	}
	setNode(`{"criu_log_level": 7}`)
	r := e.expect(21, "chkpnt", id, "--leave-running")
	if !strings.Contains(r.stderr, nodeConfigPath) || !strings.Contains(r.stderr, "criu_log_level") {
		t.Fatalf("a level out of range: %s", r)
	}
	setNode("")
	e.wantStatus(id, "exist mounted running")
}

// TestRestoreNetworkLock: a restore keeps the VE's network namespace closed to the outside
// until CRIU has put the VE's sockets back (network.LockNetns: a table whose input chain
// drops what does not come over loopback), the monitor opens it once restored (OpenNetns)
// and removes the table after reporting (RemoveNetnsLock), so a restored VE's firewall holds
// nothing of vectl's.
func TestRestoreNetworkLock(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	tmpl := e.importBusybox()
	id := uniqueID(t)
	ip := testIP("4")
	e.must("create", id, "--ostemplate", tmpl, "--ipadd", ip)
	e.must("start", id)
	netns := filepath.Join(e.run, "netns", id)
	tables := func() string {
		out, err := exec.Command("nsenter", "--net="+netns, "nft", "list", "tables").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list tables in %s: %v\n%s", netns, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if !ping(ip) {
		t.Fatalf("host cannot ping %s before the lock", ip)
	}
	if err := network.LockNetns(netns); err != nil {
		t.Fatal(err)
	}
	if ping(ip) {
		t.Errorf("host pings %s through the restore lock", ip)
	}
	if out := e.out(id, "ping", "-c", "1", "-W", "1", "127.0.0.1"); !strings.Contains(out, "1 packets received") {
		t.Errorf("loopback inside the VE is closed by the lock: %s", out)
	}
	if err := network.OpenNetns(netns); err != nil {
		t.Fatal(err)
	}
	if !ping(ip) {
		t.Errorf("host cannot ping %s once the lock is open", ip)
	}
	if err := network.RemoveNetnsLock(netns); err != nil {
		t.Fatal(err)
	}
	if got := tables(); got != "" {
		t.Errorf("tables left by RemoveNetnsLock: %s", got)
	}
	if err := network.RemoveNetnsLock(netns); err != nil {
		t.Errorf("a second RemoveNetnsLock: %v", err)
	}
	// The real thing: chkpnt and restore leave the VE reachable and its firewall empty.
	e.must("chkpnt", id)
	e.must("restore", id)
	if !ping(ip) {
		t.Errorf("host cannot ping %s after the restore", ip)
	}
	eventually(t, 5*time.Second, "the monitor to remove the restore lock", func() bool { return tables() == "" })
	e.must("stop", id)
}

// TestRestoreBecomesMonitor (issue 22): a background vectl restore forks before its Go
// runtime starts, as a start does, and the child that restores stays as the VE's monitor: no
// monitor program is spawned. The caller sees "restored" and status 0 once the VE runs and
// its dump is gone; a dump that cannot be removed makes the command fail with the reason
// while the restored VE runs on under the same monitor. The VE has its own user namespace, so
// criu runs through the restore wrapper (package criuwrap): the VE keeps its uptime, host name
// and a cgroup namespace rooted at its own cgroups.
func TestRestoreBecomesMonitor(t *testing.T) {
	e := newEnv(t)
	id := uniqueID(t)
	tmpl := e.importBusybox()
	e.must("create", id, "--ostemplate", tmpl, "--hostname", "rbm.example")
	e.must("start", id, "--wait", "--timeout", "60")
	dump := filepath.Join(e.root, "dump", id)
	restore := func(id string) (worker int, out, errb string, err error) {
		// The VE's lock, held, keeps the restore waiting in its child until it is found.
		lock, err := os.OpenFile(filepath.Join(e.root, "locks", id+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
		c := e.cmd("restore", id)
		var o, eb strings.Builder
		c.Stdout, c.Stderr = &o, &eb
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		worker = startChild(t, c)
		lock.Close()
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			c.Process.Kill()
			t.Fatalf("vectl restore did not return within 60 s (stdout %q)", o.String())
		}
		return worker, o.String(), eb.String(), err
	}
	rests := func(id string, worker int) {
		t.Helper()
		eventually(t, 10*time.Second, "the restoring process to rest as the monitor", func() bool {
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", worker))
			return slices.Equal(monitorPids(e, id), []int{worker}) && strings.Contains(string(cmd), "\x00__monitor-idle\x00")
		})
		data, _ := os.ReadFile(filepath.Join(e.run, "ve", id, "monitor.pid"))
		if f := strings.Fields(string(data)); len(f) == 0 || f[0] != strconv.Itoa(worker) {
			t.Fatalf("monitor pid file %q, want the restore's child %d", data, worker)
		}
	}

	up := e.veUptime(id)
	e.must("chkpnt", id)
	time.Sleep(3 * time.Second) // not counted by the VE's clocks
	worker, out, errb, err := restore(id)
	if err != nil || out != "VE "+id+" restored\n" {
		t.Fatalf("vectl restore: %v\nstdout %q\nstderr %q", err, out, errb)
	}
	rests(id, worker)
	e.wantStatus(id, "exist mounted running")
	if _, err := os.Stat(dump); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dump is still there after the restore returned: %v", err)
	}
	if got := e.veUptime(id); got < up || got > up+2.5 {
		t.Errorf("uptime %.2f after the restore, %.2f before the dump: the VE's clocks did not go on", got, up)
	}
	if h := strings.TrimSpace(e.out(id, "hostname")); h != "rbm.example" {
		t.Errorf("host name after the restore %q, want rbm.example", h)
	}
	for _, l := range strings.Split(strings.TrimSpace(e.out(id, "cat", "/proc/1/cgroup")), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) != 3 || f[2] != "/" {
			t.Errorf("the restored init's cgroup %q: the cgroup namespace is not rooted at the VE's cgroups", l)
		}
	}
	e.out(id, "true")

	// A dump that cannot be removed: restored, but the command fails and says why. (A VE
	// without a user namespace: the restore of one with its own chowns its dump first.)
	priv := uniqueID(t)
	e.must("create", priv, "--ostemplate", tmpl, "--userns", "no")
	e.must("start", priv, "--wait", "--timeout", "60")
	e.must("chkpnt", priv)
	stuck := filepath.Join(e.root, "dump", priv, "keep")
	if err := os.WriteFile(stuck, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	setImmutable(t, stuck, true)
	defer func() {
		setImmutable(t, stuck, false)
		os.RemoveAll(filepath.Dir(stuck))
	}()
	worker, out, errb, err = restore(priv)
	if err == nil || !strings.Contains(errb, "remove its dump") || strings.Count(errb, "\n") != 1 {
		t.Fatalf("restore whose dump cannot be removed: %v, want a failure naming the dump\nstdout %q\nstderr %q", err, out, errb)
	}
	rests(priv, worker)
	e.wantStatus(priv, "exist mounted running")
	e.out(priv, "true")
}

// setImmutable sets or clears a file's immutable attribute (chattr +i), which keeps even root
// from removing it.
func setImmutable(t *testing.T, path string, on bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if !on {
			return
		}
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("FS_IOC_GETFLAGS %s: %v", path, err)
	}
	const immutable = 0x10 // FS_IMMUTABLE_FL (linux/fs.h)
	if on {
		flags |= immutable
	} else {
		flags &^= immutable
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
		t.Fatalf("FS_IOC_SETFLAGS %s: %v", path, err)
	}
}

// TestCheckpointDualStack: a busybox VE with an IPv4 and an IPv6 address (ptp gives it the
// IPv4 one, vectl the IPv6 one) has both again after a checkpoint and restore, and the
// restored VE reaches the host's gateways in both families.
func TestCheckpointDualStack(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	tmpl := e.importBusybox()
	a4, a6 := testIP("4"), testIP("6")
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--ipadd", a4, "--ipadd", a6)
	e.must("start", id, "--wait", "--timeout", "60")
	both := func(when string) {
		t.Helper()
		for _, a := range []string{a4, a6} {
			if !ping(a) {
				t.Fatalf("%s: the host cannot ping %s", when, a)
			}
		}
		e.out(id, "ping", "-c", "1", "-W", "2", testGW4)
		e.out(id, "ping", "-6", "-c", "1", "-W", "2", testGW6)
		if a := e.out(id, "ip", "-6", "addr", "show", "dev", "eth0"); !strings.Contains(a, a6+"/128") || strings.Contains(a, "tentative") {
			t.Fatalf("%s: IPv6 addresses of eth0: %s", when, a)
		}
	}
	both("started")
	e.must("chkpnt", id)
	e.wantStatus(id, "exist unmounted down suspended")
	if ping(a4) || ping(a6) {
		t.Fatalf("the VE's addresses answer while it is checkpointed")
	}
	e.must("restore", id)
	e.wantStatus(id, "exist mounted running")
	both("restored")
	e.must("stop", id)
	e.wantNoTrace(id)
}
