//go:build integration

package integration

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// veInitPid is the host pid of a running VE's init, from libcontainer's state.
func (e *env) veInitPid(id string) int {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(e.run, "lc", id, "state.json"))
	if err != nil {
		e.t.Fatalf("VE %s: %v", id, err)
	}
	var st struct {
		Pid int `json:"init_process_pid"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Pid == 0 {
		e.t.Fatalf("VE %s: state.json: %v", id, err)
	}
	return st.Pid
}

type idMap struct{ UID, GID, Size uint32 }

// userNS is the id range status --json reports for a VE (nil: privileged).
func (e *env) userNS(id string) *idMap {
	e.t.Helper()
	var st struct {
		UserNS *idMap `json:"userns"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil {
		e.t.Fatal(err)
	}
	return st.UserNS
}

// procIDs returns the real uid and gid of a host process from /proc/PID/status.
func procIDs(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) > 1 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

// TestUserNSBusybox: a VE created with --userns yes runs in a user namespace of its own with
// a recorded range of host ids that no other VE shares; its root is an unprivileged host uid,
// its files belong to its range on the host, and the shared template is not chowned.
func TestUserNSBusybox(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	a, b := uniqueID(t), uniqueID(t)
	for _, id := range []string{a, b} {
		e.must("create", id, "--ostemplate", tmpl, "--hostname", "h"+id, "--userns", "yes")
		e.must("start", id, "--wait", "--timeout", "60")
	}
	ma, mb := e.userNS(a), e.userNS(b)
	if ma == nil || mb == nil || ma.Size != 65536 || mb.Size != 65536 {
		t.Fatalf("userns of %s = %+v, of %s = %+v: want recorded ranges of 65536 ids", a, ma, b, mb)
	}
	if ma.UID < mb.UID+mb.Size && mb.UID < ma.UID+ma.Size {
		t.Fatalf("ranges overlap: %+v and %+v", ma, mb)
	}
	if ma.UID == 0 || ma.GID == 0 {
		t.Fatalf("range %+v starts at host root", ma)
	}
	if got := strings.Fields(e.must("list", "-H", "-o", "uidmap", a).stdout); len(got) != 1 || got[0] != fmt.Sprintf("0:%d:65536", ma.UID) && !strings.HasPrefix(got[0], fmt.Sprintf("0:%d:65536,", ma.UID)) {
		t.Fatalf("list -o uidmap = %v", got)
	}

	pid := e.veInitPid(a)
	uid, gid := procIDs(t, pid)
	if uid != fmt.Sprint(ma.UID) || gid != fmt.Sprint(ma.GID) {
		t.Fatalf("init of %s runs as host uid %s gid %s, want %d %d", a, uid, gid, ma.UID, ma.GID)
	}
	uidMap, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(uidMap)); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(ma.UID) || f[2] != "65536" {
		t.Fatalf("uid_map of %s's init = %q, want 0 %d 65536", a, uidMap, ma.UID)
	}
	// Inside, root is root and owns the root directory and the template's files.
	if got := e.out(a, "id", "-u"); got != "0" {
		t.Fatalf("id -u in the VE = %s", got)
	}
	if got := e.out(a, "stat", "-c", "%u:%g", "/", "/bin/busybox"); got != "0:0\n0:0" {
		t.Fatalf("owner of / and /bin/busybox inside = %q, want root's", got)
	}
	// A file made in the VE is owned on the host by the range's base plus its id inside.
	e.must("exec", a, "sh", "-c", "echo x > /root-file && touch /user-file && chown 1000:1000 /user-file")
	for name, want := range map[string][2]uint32{"root-file": {ma.UID, ma.GID}, "user-file": {ma.UID + 1000, ma.GID + 1000}} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(e.root, "private", a, "upper", name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("host owner of %s = %d:%d, want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
		}
	}
	// The shared template was not chowned: host root still owns it.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(e.root, "templates", tmpl, "bin", "busybox"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Fatalf("template file owned by %d:%d: the template must stay host root's", st.Uid, st.Gid)
	}
	// Root inside cannot reach what its namespace does not own.
	for _, c := range []string{
		"echo b > /proc/sysrq-trigger",
		"mknod /tmp/sda b 8 0 && head -c1 /tmp/sda",
		"echo 1 > /proc/sys/kernel/panic",
	} {
		if r := e.exec(a, "sh", "-c", c); r.code == 0 {
			t.Errorf("in the user-namespace VE, %q succeeded", c)
		}
	}

	// Stop, start again: the same range; destroy frees it for the next VE.
	e.must("stop", a)
	e.must("start", a, "--wait", "--timeout", "60")
	if got := e.userNS(a); *got != *ma {
		t.Fatalf("range after restart = %+v, want %+v", got, ma)
	}
	e.must("stop", b)
	e.must("destroy", b)
	c := uniqueID(t)
	e.must("create", c, "--ostemplate", tmpl, "--userns", "yes")
	if got := e.userNS(c); got == nil || *got != *mb {
		t.Fatalf("a new VE after destroying %s got %+v, want its freed range %+v", b, got, mb)
	}
	// A privileged VE has no range.
	d := uniqueID(t)
	e.must("create", d, "--ostemplate", tmpl, "--userns", "no")
	if got := e.userNS(d); got != nil {
		t.Fatalf("privileged VE has userns %+v", got)
	}
	e.expect(21, "create", uniqueID(t), "--ostemplate", tmpl, "--userns", "maybe")
}

// TestUserNSDebianSystemd: a Debian systemd VE in its own user namespace boots to running
// with no failed unit, with systemd's own sandboxing working (a unit with PrivateTmp and
// ProtectSystem=strict runs), exec joins it as its root, and an in-VE reboot and a stop
// behave as for a privileged VE.
func TestUserNSDebianSystemd(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importDebian()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--hostname", "h"+id, "--userns", "yes")
	e.must("start", id, "--wait", "--timeout", "90")
	m := e.userNS(id)
	if uid, _ := procIDs(t, e.veInitPid(id)); uid != fmt.Sprint(m.UID) {
		t.Fatalf("systemd runs as host uid %s, want %d", uid, m.UID)
	}
	if got := e.out(id, "systemctl", "is-system-running"); got != "running" {
		failed := e.exec(id, "systemctl", "--failed", "--no-legend", "--plain", "--no-pager").stdout
		t.Fatalf("systemctl is-system-running = %q; failed units:\n%s", got, failed)
	}
	if failed := e.out(id, "systemctl", "--failed", "--no-legend", "--plain", "--no-pager"); failed != "" {
		t.Fatalf("failed units:\n%s", failed)
	}
	// systemd's sandboxing needs CAP_SYS_ADMIN in the VE: a unit that uses it runs.
	unit := "[Service]\nType=oneshot\nPrivateTmp=yes\nProtectSystem=strict\nProtectHome=yes\nReadWritePaths=/run\nExecStart=/bin/sh -c 'touch /tmp/inside && ! touch /usr/x 2>/dev/null && echo sandboxed > /run/sandbox-ok'\n"
	e.must("exec", id, "sh", "-c", "cat > /etc/systemd/system/sandbox.service <<'X'\n"+unit+"X\nsystemctl daemon-reload && systemctl start sandbox.service")
	if got := e.out(id, "cat", "/run/sandbox-ok"); got != "sandboxed" {
		t.Fatalf("sandboxed unit wrote %q", got)
	}
	if got := e.out(id, "sh", "-c", "id -u; cat /proc/self/uid_map"); !strings.HasPrefix(got, "0\n") ||
		!strings.Contains(got, fmt.Sprint(m.UID)) {
		t.Fatalf("exec runs as %q, want the VE's root in its user namespace", got)
	}
	// The VE's root manages its own network namespace.
	e.must("exec", id, "sh", "-c", "ip link add v0 type veth peer name v1 && ip addr add 192.0.2.1/24 dev v0 && ip link del v0")

	boot1 := e.out(id, "cat", "/proc/sys/kernel/random/boot_id")
	e.exec(id, "reboot")
	eventually(t, 90*time.Second, "the VE to come back after an in-VE reboot", func() bool {
		r := e.exec(id, "systemctl", "is-system-running", "--wait")
		b := e.exec(id, "cat", "/proc/sys/kernel/random/boot_id")
		return strings.TrimSpace(r.stdout) == "running" && strings.TrimSpace(b.stdout) != boot1
	})
	e.must("stop", id, "--timeout", "60")
	e.wantNoTrace(id)
}

// buildEscape builds the static helper that makes the escape attempts a shell cannot make.
func buildEscape(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VECTL_TEST_ESCAPE"); p != "" {
		return p // prebuilt (the VM harness brings it)
	}
	out := filepath.Join(t.TempDir(), "escape")
	cmd := exec.Command("go", "build", "-o", out, "./testdata/escape")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the escape helper: %v\n%s", err, b)
	}
	return out
}

// copyIn copies a host file into a running VE as an executable, through vectl exec.
func (e *env) copyIn(id, src, dst string) {
	e.t.Helper()
	f, err := os.Open(src)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if r := e.vectlIn(f, "exec", id, "sh", "-c", "cat > "+dst+" && chmod 755 "+dst); r.code != 0 {
		e.t.Fatalf("copy %s into VE %s:\n%s", src, id, r)
	}
}

// TestUserNSEscapes runs escape attempts as root in a user-namespace VE and in a
// privileged one. Every attempt must fail in the user-namespace VE; the test logs which ones a
// privileged VE stops only by its capability and seccomp filter, or not at all. Attempts that
// would change the host if they succeeded write back what is already there. A neighbour VE on
// the same bridge holds a secret file and receives traffic the attacker tries to capture.
func TestUserNSEscapes(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	tmpl := e.importBusybox()
	helper := buildEscape(t)
	exeSum := func() string {
		b, err := os.ReadFile(vectlBin)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	binBefore := exeSum()
	bootID := func() string {
		b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
		return string(b)
	}
	bootBefore := bootID()

	mark := fmt.Sprintf("vectl-escape-%d", time.Now().UnixNano())
	nb, nbIP := uniqueID(t), testIP("b4")
	e.must("create", nb, "--ostemplate", tmpl)
	e.must("set", nb, "--netif_add", "eth1,bridge="+testBridge, "--ipadd", nbIP, "--save")
	e.must("start", nb, "--wait", "--timeout", "60")
	e.must("exec", nb, "sh", "-c", "echo "+mark+" > /vectl-secret")
	nbInit := e.veInitPid(nb)
	nbStart, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", nbInit))
	if out, err := exec.Command("ping", "-c", "1", "-W", "5", nbIP).CombinedOutput(); err != nil {
		t.Fatalf("the host cannot reach the neighbour VE: %v\n%s", err, out)
	}
	host := exec.Command("sleep", "600")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { host.Process.Kill(); host.Wait() }()

	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	major, minor := (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff
	attempts := []struct{ name, cmd string }{
		{"mknod and read the host's disk", fmt.Sprintf("mknod /tmp/d b %d %d && head -c 512 /tmp/d | wc -c | grep -qx 512", major, minor)},
		{"mount the host's disk", fmt.Sprintf("mknod /tmp/d2 b %d %d; mkdir -p /tmp/m && mount -o ro /tmp/d2 /tmp/m && ls /tmp/m", major, minor)},
		{"write /proc/sysrq-trigger", "echo h > /proc/sysrq-trigger"},
		{"write /proc/sys/kernel", "v=$(cat /proc/sys/kernel/panic) && echo $v > /proc/sys/kernel/panic"},
		// busybox date reports a refused clock change on stderr but exits 0.
		{"set the clock", "err=$(date -s \"$(date '+%Y-%m-%d %H:%M:%S')\" 2>&1 >/dev/null); [ -z \"$err\" ]"},
		{"write a cgroup v1 release_agent", "for f in $(find /sys/fs/cgroup -maxdepth 2 -name release_agent); do v=$(cat $f); echo \"$v\" > $f && exit 0; done; exit 1"},
		{"remount /sys writable", "mount -o remount,rw /sys && touch /sys/kernel/vectl-test"},
		{"load a kernel module", "/escape module"},
		{"open_by_handle_at of a host inode", "/escape handle"},
		{"ptrace a host process", fmt.Sprintf("/escape ptrace %d", host.Process.Pid)},
		{"read another VE's files through /proc", fmt.Sprintf("grep -qs %s /proc/%d/root/vectl-secret /proc/[0-9]*/root/vectl-secret", mark, nbInit)},
	}
	for _, userns := range []string{"yes", "no"} {
		id, ip := uniqueID(t), testIP("b4")
		e.must("create", id, "--ostemplate", tmpl, "--userns", userns)
		e.must("set", id, "--netif_add", "eth1,bridge="+testBridge, "--ipadd", ip, "--save")
		e.must("start", id, "--wait", "--timeout", "60")
		e.copyIn(id, helper, "/escape")
		var open []string
		for _, a := range attempts {
			r := e.exec(id, "sh", "-c", a.cmd)
			if r.code == 0 {
				open = append(open, a.name)
			}
			t.Logf("VE %s (userns %s): %s: exit %d %s%s", id, userns, a.name, r.code, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
		}
		// A setuid-root binary made inside: on the host it runs as its owner.
		e.must("exec", id, "sh", "-c", "mkdir -p /x && cp /bin/busybox /x/suid && chmod 4755 /x/suid")
		var fst syscall.Stat_t
		if err := syscall.Stat(filepath.Join(e.root, "private", id, "upper", "x", "suid"), &fst); err != nil {
			t.Fatal(err)
		}
		if fst.Uid == 0 && fst.Mode&syscall.S_ISUID != 0 {
			open = append(open, "a setuid-root binary made inside is setuid host root")
		}

		// CVE-2019-5736: a script whose interpreter is /proc/self/exe makes vectl exec run the
		// binary it entered the VE with inside the VE; the helper waits for that process and
		// tries to write to its /proc/PID/exe, and once it is gone, through the O_PATH
		// descriptor it kept. The program's output is a pipe whose buffer is full, so that it
		// blocks at its first message and lives until the helper has seen it (the joiner's
		// small program would otherwise end within microseconds); then the pipe goes.
		e.must("exec", id, "sh", "-c", "printf '#!/proc/self/exe\\n' > /x/evil && chmod 755 /x/evil")
		exeOut := make(chan result, 1)
		go func() { exeOut <- e.vectl("exec", id, "/escape", "exe", "/x/evil", "/tmp/exe.out") }()
		full, fill, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fill.Write(make([]byte, 65536)); err != nil { // a pipe holds 64 KiB
			t.Fatal(err)
		}
		evil := e.cmd("exec", id, "/x/evil")
		evil.Stdout, evil.Stderr = fill, fill
		if err := evil.Start(); err != nil {
			t.Fatal(err)
		}
		fill.Close()
		for i := 0; i < 600 && e.exec(id, "test", "-e", "/tmp/exe.out.seen").code != 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		full.Close() // the program's write fails; it ends
		<-exeOut
		evil.Wait()
		res := e.out(id, "cat", "/tmp/exe.out")
		t.Logf("VE %s (userns %s): overwrite vectl through /proc/PID/exe: %s", id, userns, res)
		if !strings.HasPrefix(res, "seen") {
			t.Errorf("the /proc/PID/exe attack never saw vectl's binary run in the VE: %s", res)
		}
		if strings.Contains(res, "open:") || exeSum() != binBefore {
			open = append(open, "overwrite vectl through /proc/PID/exe")
		}

		// Sniffing: capture on every interface of the VE while the host sends to the neighbour.
		sniff := make(chan result, 1)
		go func() { sniff <- e.vectl("exec", id, "/escape", "sniff", mark, "4") }()
		time.Sleep(time.Second)
		if c, err := net.Dial("udp", net.JoinHostPort(nbIP, "9")); err == nil {
			for i := 0; i < 20; i++ {
				c.Write([]byte(mark))
				time.Sleep(50 * time.Millisecond)
			}
			c.Close()
		} else {
			t.Fatal(err)
		}
		r := <-sniff
		t.Logf("VE %s (userns %s): sniff the neighbour's traffic: exit %d %s", id, userns, r.code, strings.TrimSpace(r.stdout))
		if r.code == 0 {
			open = append(open, "sniff another VE's traffic")
		} else if r.code != 1 {
			t.Errorf("the sniffer could not run:\n%s", r)
		}

		// reboot(2) from inside restarts the VE and nothing else.
		before := e.veInitPid(id)
		e.exec(id, "reboot", "-f")
		eventually(t, 60*time.Second, "the VE to come back after reboot -f", func() bool {
			data, _ := os.ReadFile(filepath.Join(e.run, "lc", id, "state.json"))
			return !strings.Contains(string(data), fmt.Sprintf(`"init_process_pid":%d,`, before)) &&
				strings.TrimSpace(e.vectl("list", "-a", "-H", "-o", "status", id).stdout) == "running"
		})
		now, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", nbInit))
		if string(now) == "" || strings.Fields(string(now))[21] != strings.Fields(string(nbStart))[21] || bootID() != bootBefore {
			open = append(open, "reboot(2) affects something outside the VE")
		}

		if userns == "yes" && len(open) > 0 {
			t.Errorf("in a user-namespace VE these escapes were not stopped: %s", strings.Join(open, "; "))
		}
		if userns == "no" {
			t.Logf("a privileged VE does not stop: %s (why user namespaces are the default)", strings.Join(open, "; "))
		}
		e.must("stop", id)
	}
	e.must("stop", nb)
}

// TestUserNSConvert: set --userns on a stopped VE converts its private data and back; the
// files and their owners as seen inside stay the same, and a file that cannot be mapped is
// named and nothing is converted.
func TestUserNSConvert(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl, "--userns", "no")
	e.must("start", id, "--wait", "--timeout", "60")
	e.must("exec", id, "sh", "-c", "mkdir -p /data && echo a > /data/a && echo b > /data/b && chown 1000:1001 /data/b && cp /bin/busybox /data/s && chmod 4755 /data/s")
	inside := func() string { return e.out(id, "stat", "-c", "%n %u:%g %A", "/data/a", "/data/b", "/data/s", "/") }
	want := inside()
	e.expect(32, "set", id, "--userns", "yes", "--save")
	e.must("stop", id)
	e.expect(20, "set", id, "--userns", "yes")
	e.expect(21, "set", id, "--userns", "perhaps", "--save")

	hostOwner := func(name string) string {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(e.root, "private", id, "upper", name), &st); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	// A file no user namespace can map stops the conversion before anything changes.
	stray := filepath.Join(e.root, "private", id, "upper", "data", "stray")
	if err := os.WriteFile(stray, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chown(stray, 70000, 70000)
	r := e.expect(21, "set", id, "--userns", "yes", "--save")
	if !strings.Contains(r.stderr, "/data/stray") {
		t.Fatalf("refusal does not name the file:\n%s", r)
	}
	if hostOwner("data/b") != "1000:1001" || e.userNS(id) != nil {
		t.Fatal("a refused conversion changed the VE")
	}
	os.Remove(stray)

	e.must("set", id, "--userns", "yes", "--save")
	m := e.userNS(id)
	if m == nil {
		t.Fatal("no range after set --userns yes")
	}
	if got := hostOwner("data/b"); got != fmt.Sprintf("%d:%d", m.UID+1000, m.GID+1001) {
		t.Fatalf("host owner of /data/b = %s after the conversion", got)
	}
	e.must("start", id, "--wait", "--timeout", "60")
	if got := inside(); got != want {
		t.Fatalf("inside after the conversion:\n%s\nwant\n%s", got, want)
	}
	if uid, _ := procIDs(t, e.veInitPid(id)); uid != fmt.Sprint(m.UID) {
		t.Fatalf("init runs as host uid %s", uid)
	}
	e.must("stop", id)

	e.must("set", id, "--userns", "no", "--save")
	if e.userNS(id) != nil || hostOwner("data/b") != "1000:1001" || hostOwner("data/a") != "0:0" {
		t.Fatalf("back to privileged: userns %+v, owners %s %s", e.userNS(id), hostOwner("data/a"), hostOwner("data/b"))
	}
	e.must("start", id, "--wait", "--timeout", "60")
	if got := inside(); got != want {
		t.Fatalf("inside after converting back:\n%s\nwant\n%s", got, want)
	}
	e.must("stop", id)
}

// TestUserNSNested: vectl itself, copied into a user-namespace VE, creates, starts, execs
// into, stops and destroys a busybox VE there (no network). The nested VE's cgroup lies below
// the outer VE's, with its own limit, and the outer VE still cannot raise its own.
func TestUserNSNested(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.expect(21, "create", uniqueID(t), "--ostemplate", tmpl, "--userns", "no", "--nesting", "yes")
	e.must("create", id, "--ostemplate", tmpl, "--ram", "512M")
	e.must("start", id, "--wait", "--timeout", "60")
	e.copyIn(id, vectlBin, "/bin/vectl")
	in := func(cmd string) result { return e.exec(id, "sh", "-c", cmd) }
	// Without nesting (the default) a nested start is refused, saying how to allow it; on
	// cgroup v2 the VE's cgroup is delegated anyway (its systemd needs it), and it runs.
	in("vectl template build bb --from busybox >/dev/null && vectl create 10 --ostemplate bb --userns no --layout copy >/dev/null")
	if r := in("vectl start 10"); !cgroupV2() && (r.code == 0 || !strings.Contains(r.stderr, "--nesting yes")) {
		t.Fatalf("a nested start without nesting:\n%s", r)
	}
	in("vectl stop 10; vectl destroy 10")
	e.expect(20, "set", id, "--nesting", "yes")
	e.must("set", id, "--nesting", "yes", "--save")
	e.must("stop", id)
	e.must("start", id, "--wait", "--timeout", "60")
	var st struct {
		Nesting bool `json:"nesting"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil || !st.Nesting {
		t.Fatalf("status --json nesting: %+v %v", st, err)
	}
	e.copyIn(id, vectlBin, "/bin/vectl")
	must := func(cmd string) string {
		t.Helper()
		r := in(cmd)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("in VE %s: %s:\n%s", id, cmd, r)
		}
		return strings.TrimSpace(r.stdout)
	}
	// The outer VE's root is an overlay, which cannot hold another overlay's upper directory,
	// and its 65536 ids leave no range for a user namespace inside: both refused, named.
	if r := in("vectl create 11 --ostemplate bb --userns no"); r.code != 21 || !strings.Contains(r.stderr, "--layout copy") {
		t.Fatalf("nested overlay VE:\n%s", r)
	}
	if r := in("vectl create 12 --ostemplate bb --layout copy"); r.code == 0 || !strings.Contains(r.stderr, "--userns no") {
		t.Fatalf("nested user-namespace VE:\n%s", r)
	}
	if got := must("ls /var/lib/vectl/ve /var/lib/vectl/private"); strings.Contains(got, "1") {
		t.Fatalf("a refused create left %q", got)
	}
	must("vectl create 11 --ostemplate bb --userns no --layout copy --ram 64M >/dev/null")
	must("vectl start 11 --wait --timeout 60 >/dev/null")
	got := must("vectl exec 11 sh -c 'hostname; cat /proc/1/comm; readlink /proc/self/ns/pid'")
	outerPid := must("readlink /proc/self/ns/pid")
	if l := strings.Split(got, "\n"); len(l) != 3 || l[0] != "11" || l[1] != "init" || l[2] == outerPid {
		t.Fatalf("vectl exec in the nested VE: %q (outer pid namespace %s)", got, outerPid)
	}
	if got := must("vectl status 11"); got != "VEID 11 exist mounted running" {
		t.Fatalf("nested status %q", got)
	}
	nested := filepath.Join(veCgroupDir("memory", id), "vectl", "11")
	limit, own := "memory.max", "/sys/fs/cgroup/memory.max"
	if !cgroupV2() {
		limit, own = "memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	}
	if b, err := os.ReadFile(filepath.Join(nested, limit)); err != nil || strings.TrimSpace(string(b)) != "67108864" {
		t.Fatalf("the nested VE's memory limit on the host: %q, %v", b, err)
	}
	if r := in("echo 4294967296 > " + own); r.code == 0 {
		t.Fatalf("the outer VE raised its own memory limit")
	}
	if b, _ := os.ReadFile(filepath.Join(veCgroupDir("memory", id), limit)); strings.TrimSpace(string(b)) != "536870912" {
		t.Fatalf("the outer VE's memory limit is now %q", b)
	}
	must("vectl stop 11 >/dev/null")
	must("vectl destroy 11 >/dev/null")
	if _, err := os.Stat(nested); !os.IsNotExist(err) {
		t.Fatalf("the nested VE's cgroup is left: %v", err)
	}
	e.must("stop", id)
}

// TestUserNSDefaults: create without --userns takes the --config profile's "userns", else the
// node's default in /etc/vectl/vectl.json (restored afterwards), else yes; --userns beats both.
func TestUserNSDefaults(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	profiles := t.TempDir()
	os.WriteFile(filepath.Join(profiles, "priv.json"), []byte(`{"userns": "no", "ram": "256M"}`), 0o644)
	os.WriteFile(filepath.Join(profiles, "small.json"), []byte(`{"ram": "256M"}`), 0o644)
	os.WriteFile(filepath.Join(profiles, "bad.json"), []byte(`{"userns": "maybe"}`), 0o644)
	setNode := nodeConfig(t)
	create := func(want bool, args ...string) {
		t.Helper()
		id := uniqueID(t)
		e.must(append([]string{"--profile-dir", profiles, "create", id, "--ostemplate", tmpl}, args...)...)
		if got := e.userNS(id) != nil; got != want {
			t.Fatalf("create %v: own user namespace = %v, want %v", args, got, want)
		}
		e.must("destroy", id)
	}
	setNode("")
	create(true)
	create(false, "--config", "priv")
	create(true, "--config", "priv", "--userns", "yes")
	create(true, "--config", "small")
	setNode(`{"userns": "no"}`)
	create(false)
	create(false, "--config", "small")
	create(true, "--userns", "yes")
	setNode(`{"userns": "maybe"}`)
	if r := e.vectl("create", uniqueID(t), "--ostemplate", tmpl); r.code != 21 || !strings.Contains(r.stderr, nodeConfigPath) {
		t.Fatalf("a bad node default:\n%s", r)
	}
	setNode("")
	if r := e.vectl("--profile-dir", profiles, "create", uniqueID(t), "--ostemplate", tmpl, "--config", "bad"); r.code != 21 {
		t.Fatalf("a bad profile userns:\n%s", r)
	}
	if out := e.must("list", "-a", "-H", "-o", "ctid").stdout; strings.TrimSpace(out) != "" {
		t.Fatalf("refused creates left VEs: %q", out)
	}
}

// nodeConfigPath holds vectl's node settings.
const nodeConfigPath = "/etc/vectl/vectl.json"

// nodeConfig returns a function that sets the node's settings to body (nodeConfigPath; ""
// removes the file); they are as before when the test ends.
func nodeConfig(t *testing.T) func(body string) {
	conf := nodeConfigPath
	old, readErr := os.ReadFile(conf)
	if readErr != nil && !os.IsNotExist(readErr) {
		t.Fatal(readErr)
	}
	_, dirErr := os.Stat(filepath.Dir(conf))
	t.Cleanup(func() {
		if readErr == nil {
			os.WriteFile(conf, old, 0o644)
			return
		}
		os.Remove(conf)
		if os.IsNotExist(dirErr) {
			os.Remove(filepath.Dir(conf))
		}
	})
	return func(body string) {
		t.Helper()
		if body == "" {
			os.Remove(conf)
			return
		}
		if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
