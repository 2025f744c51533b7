//go:build integration

// Package integration drives the real vectl binary as root against real VEs. Every test gets
// its own state root, run and log directories, unique VE ids, and a cleanup that removes
// what it made even when it fails.
package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// fixtureCache keeps slow fixtures (the debootstrap'd Debian template) across runs.
	fixtureCache = "/var/cache/vectl-test"
	busyboxName  = "busybox-1.35-x86_64"
	debianName   = "debian-12-x86_64-minimal"
	debianSuite  = "bookworm"
)

// debianInclude are the extra packages the tests need inside Debian VEs.
var debianInclude = []string{"tcpdump", "netcat-openbsd", "kmod", "iputils-arping", "iperf3", "openssh-server"}

var vectlBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests need root: run make check as root")
		os.Exit(1)
	}
	vectlBin = os.Getenv("VECTL_BIN")
	if vectlBin == "" {
		vectlBin, _ = filepath.Abs("../bin/vectl")
	}
	if _, err := os.Stat(vectlBin); err != nil {
		fmt.Fprintf(os.Stderr, "vectl binary %s: %v (run make first or set VECTL_BIN)\n", vectlBin, err)
		os.Exit(1)
	}
	// A node's settings come from each test's flags. One inherited from the caller's shell
	// (VECTL_CGROUP_PARENT=... of a hand-made node, say) would apply to the vectl commands a
	// test runs itself but not to those a migration runs through ssh, whose sshd does not
	// pass it: the VE's processes then sit in another cgroup than the one its node looks at.
	for _, v := range inheritedNodeEnv {
		if val, ok := os.LookupEnv(v); ok {
			fmt.Fprintf(os.Stderr, "integration: ignoring %s=%s from the environment\n", v, val)
			os.Unsetenv(v)
		}
	}
	code := m.Run()
	fixtureCleanup()
	netCleanup()
	// The parent cgroup vectl made goes when it is empty; never anyone else's.
	for _, ctl := range []string{"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "memory", "pids", "systemd", "unified"} {
		os.Remove(filepath.Join("/sys/fs/cgroup", ctl, "vectl"))
	}
	os.Exit(code)
}

// inheritedNodeEnv are the environment variables of vectl's node settings (and its criu and
// fault injection), which TestMain drops. VECTL_CGROUP_MANAGER stays: the VM harness chooses
// the driver with it.
var inheritedNodeEnv = []string{"VECTL_ROOT", "VECTL_RUN_DIR", "VECTL_LOG_DIR", "VECTL_CGROUP_PARENT",
	"VECTL_FIREWALL_TABLE", "VECTL_NETWORK_CONFIG", "VECTL_VZ_CONF_DIR", "VECTL_TEMPLATE_DIR",
	"VECTL_PROFILE_DIR", "VECTL_CNI_PATH", "VECTL_LOCK_TIMEOUT", "VECTL_CRIU", "VECTL_TEMPLATE_SERVER",
	"VECTL_MIGRATE_FAULT"}

// requireTool fails the test when a host tool it needs is missing: a missing precondition is
// a failure, never a silent skip.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required (install it with make deps): %v", name, err)
	}
	return p
}

// result is the outcome of one vectl invocation.
type result struct {
	args   []string
	code   int
	stdout string
	stderr string
}

func (r result) String() string {
	return fmt.Sprintf("vectl %s\nexit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// env is one test's private vectl installation.
type env struct {
	t         testing.TB
	dir       string
	root      string
	run       string
	log       string
	netConfig string // set by withNetwork
	// table is the --firewall-table (testFwTable when empty); netns, when set, is a network
	// namespace (a path under /run/netns) that vectl runs in, as if it were the host's.
	table string
	netns string
	// cgroupParent, when set, is the instance's --cgroup-parent.
	cgroupParent string
	// vzConfDir is the --vz-conf-dir (DIR/vz when empty).
	vzConfDir string
}

// environ is the env's settings as the environment variables that vectl's personalities
// (vzctl, vzlist) read, for programs that run them with no flags of vectl's.
func (e *env) environ() []string {
	args := e.args()
	var out []string
	for i := 0; i+1 < len(args); i += 2 {
		name := strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(args[i], "--"), "-", "_"))
		out = append(out, "VECTL_"+name+"="+args[i+1])
	}
	if cgroupManager != "" {
		out = append(out, "VECTL_CGROUP_MANAGER="+cgroupManager)
	}
	return out
}

// newEnv makes a fresh state root and registers a cleanup that destroys every VE in it and
// checks that no mount is left below it.
func newEnv(t testing.TB) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "vectl-it-")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable, as /var/lib is: a user-namespace VE's root looks its root up below it.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, root: filepath.Join(dir, "root"), run: filepath.Join(dir, "run"), log: filepath.Join(dir, "log")}
	t.Cleanup(e.cleanup)
	return e
}

// cgroupManager is the driver the tests run vectl with (the VM harness runs both).
var cgroupManager = os.Getenv("VECTL_CGROUP_MANAGER")

// cgroupV2 reports whether the host runs the unified cgroup hierarchy.
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// veCgroupDir is the directory of a VE's cgroup: in a v1 controller's hierarchy (ctl), or
// the unified one on v2; for the fs or systemd driver.
func veCgroupDir(ctl, id string) string {
	rel := filepath.Join("vectl", id)
	if cgroupManager == "systemd" {
		rel = filepath.Join("vectl.slice", "vectl-"+id+".scope")
	}
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup", rel)
	}
	return filepath.Join("/sys/fs/cgroup", ctl, rel)
}

func (e *env) args(args ...string) []string {
	netConfig := e.netConfig
	if netConfig == "" {
		netConfig = filepath.Join(e.dir, "no-network.json") // missing: vectl's defaults
	}
	table := e.table
	if table == "" {
		table = testFwTable
	}
	vzConf := e.vzConfDir
	if vzConf == "" {
		vzConf = filepath.Join(e.dir, "vz") // never the host's /etc/vz unless a test asks
	}
	g := []string{"--root", e.root, "--run-dir", e.run, "--log-dir", e.log,
		"--network-config", netConfig, "--firewall-table", table, "--vz-conf-dir", vzConf}
	if e.cgroupParent != "" {
		g = append(g, "--cgroup-parent", e.cgroupParent)
	}
	return append(g, args...)
}

// cmd returns an unstarted vectl command in this env.
func (e *env) cmd(args ...string) *exec.Cmd {
	if e.netns != "" {
		return exec.Command("nsenter", append([]string{"--net=" + e.netns, vectlBin}, e.args(args...)...)...)
	}
	return exec.Command(vectlBin, e.args(args...)...)
}

// vectl runs vectl and returns its result whatever the exit status.
func (e *env) vectl(args ...string) result {
	e.t.Helper()
	return e.vectlIn(nil, args...)
}

func (e *env) vectlIn(stdin io.Reader, args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = stdin, &out, &errb
	err := c.Run()
	r := result{args: args, stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("vectl %v: %v", args, err)
	}
	return r
}

// must runs vectl and fails the test, printing command, status and output, unless it exits 0.
func (e *env) must(args ...string) result {
	e.t.Helper()
	r := e.vectl(args...)
	if r.code != 0 {
		e.t.Fatalf("unexpected failure:\n%s", r)
	}
	return r
}

// expect runs vectl and fails the test unless it exits with code.
func (e *env) expect(code int, args ...string) result {
	e.t.Helper()
	r := e.vectl(args...)
	if r.code != code {
		e.t.Fatalf("want exit %d:\n%s", code, r)
	}
	if code != 0 && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		e.t.Errorf("error is not one line:\n%s", r)
	}
	return r
}

func (e *env) cleanup() {
	t := e.t
	for _, id := range strings.Fields(e.vectl("list", "-1").stdout) {
		if st := e.vectl("stop", "--fast", id); st.code != 0 && st.code != 31 {
			t.Errorf("cleanup: %s", st)
		}
	}
	for _, id := range strings.Fields(e.vectl("list", "-a", "-1").stdout) {
		if d := e.vectl("destroy", "--force", id); d.code != 0 {
			t.Errorf("cleanup: %s", d)
		}
	}
	if e.cgroupParent != "" {
		// The instance's own cgroup parent, in every hierarchy, once its VEs are gone.
		dirs, _ := filepath.Glob("/sys/fs/cgroup" + e.cgroupParent)
		more, _ := filepath.Glob("/sys/fs/cgroup/*" + e.cgroupParent)
		for _, d := range append(dirs, more...) {
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cleanup: cgroup parent: %v", err)
			}
		}
	}
	if m := mountsUnder(e.dir); len(m) > 0 {
		t.Errorf("cleanup: mounts left under %s: %v", e.dir, m)
		for i := len(m) - 1; i >= 0; i-- {
			exec.Command("umount", "-l", m[i]).Run()
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// mountsUnder lists the mount points at or below dir from /proc/self/mountinfo.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Strings(out)
	return out
}

// uniqueID returns a VE id no other test (or earlier run) uses.
func uniqueID(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("%d", 100000+time.Now().UnixNano()%800000000+int64(os.Getpid()%1000))
}

var (
	fixtureMu  sync.Mutex
	fixtureDir string
	fixtures   = map[string]string{}
)

func fixtureCleanup() {
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
}

// busyboxFixture builds the busybox template once per test run with vectl itself (it is
// fast, and its content depends on this very binary) and returns the archive path.
func busyboxFixture(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VECTL_TEST_BUSYBOX"); p != "" {
		return p // a prebuilt archive (the VM harness brings its own)
	}
	requireTool(t, "busybox")
	return fixture(t, "busybox", func(dir string) string {
		return buildTemplate(t, dir, busyboxName, "--from", "busybox")
	})
}

// debianFixture returns the debootstrap'd Debian template archive, cached under
// /var/cache/vectl-test keyed by suite, package list and the template builder's source.
func debianFixture(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VECTL_TEST_DEBIAN"); p != "" {
		return p
	}
	return debootstrapFixture(t, debianName, debianSuite, "systemd", debianInclude)
}

// debootstrapFixture returns a template archive built with template build --from
// debootstrap, cached under /var/cache/vectl-test as NAME-KEY.tar.zst, KEY hashing the
// suite, init, package list and the template builder's source.
func debootstrapFixture(t testing.TB, name, suite, init string, include []string) string {
	t.Helper()
	if dir := os.Getenv("VECTL_TEST_FIXTURES"); dir != "" {
		// Prebuilt archives named NAME.tar.zst (the VM harness brings them).
		p := filepath.Join(dir, name+".tar.zst")
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		return p
	}
	requireTool(t, "debootstrap")
	key := debootstrapKey(t, suite, init, include)
	cached := filepath.Join(fixtureCache, fmt.Sprintf("%s-%s.tar.zst", name, key))
	if _, err := os.Stat(cached); err == nil {
		return cached
	}
	return fixture(t, name, func(dir string) string {
		start := time.Now()
		args := []string{"--from", "debootstrap", "--suite", suite, "--init", init}
		if len(include) > 0 {
			args = append(args, "--include", strings.Join(include, ","))
		}
		built := buildTemplate(t, dir, name, args...)
		t.Logf("debootstrap template %s built in %v", name, time.Since(start).Round(time.Second))
		if err := os.MkdirAll(fixtureCache, 0o755); err != nil {
			t.Fatal(err)
		}
		// Drop older keys of the same fixture, then publish atomically.
		old, _ := filepath.Glob(filepath.Join(fixtureCache, name+"-*.tar.zst"))
		for _, o := range old {
			os.Remove(o)
		}
		tmp := cached + ".tmp"
		if err := copyFile(built, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cached); err != nil {
			t.Fatal(err)
		}
		os.Remove(built) // the build's own copy: the cache has it now
		return cached
	})
}

// debootstrapKey hashes everything a debootstrap fixture is made from.
func debootstrapKey(t testing.TB, suite, init string, include []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", suite, strings.Join(include, ","))
	if init != "systemd" { // keeps the key of the fixtures made before --init
		fmt.Fprintf(h, "init %s\n", init)
	}
	// The sources that make the archive: the debootstrap builder, the tree writes and the
	// packer (not import, list or verify, whose changes do not change what is built).
	for _, f := range []string{"debootstrap.go", "build.go", "guest.go", "rooted.go", "pack.go"} {
		f = filepath.Join("../template", f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func fixture(t testing.TB, name string, build func(dir string) string) string {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if p, ok := fixtures[name]; ok {
		return p
	}
	if fixtureDir == "" {
		d, err := os.MkdirTemp("", "vectl-it-fixtures-")
		if err != nil {
			t.Fatal(err)
		}
		fixtureDir = d
	}
	dir := filepath.Join(fixtureDir, name)
	p := build(dir)
	fixtures[name] = p
	return p
}

// buildTemplate runs vectl template build in a scratch root under dir and returns the archive.
func buildTemplate(t testing.TB, dir, name string, args ...string) string {
	t.Helper()
	b := &env{t: t, dir: dir, root: filepath.Join(dir, "root"), run: filepath.Join(dir, "run"), log: filepath.Join(dir, "log")}
	r := b.vectl(append([]string{"template", "build", name}, args...)...)
	if r.code != 0 {
		t.Fatalf("building fixture %s:\n%s", name, r)
	}
	archive := filepath.Join(b.root, "templates", name+".tar.zst")
	if _, err := os.Stat(archive); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return archive
}

// importBusybox and importDebian add the fixture templates to this env.
func (e *env) importBusybox() string {
	e.t.Helper()
	e.must("template", "import", busyboxFixture(e.t), "--name", busyboxName)
	return busyboxName
}

func (e *env) importDebian() string {
	e.t.Helper()
	e.must("template", "import", debianFixture(e.t), "--name", debianName)
	return debianName
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// setInit replaces the /sbin/init of the stopped VE id with a script (it may be a symlink
// to busybox, which must stay as it is).
func (e *env) setInit(id, script string) {
	e.t.Helper()
	e.must("mount", id)
	initPath := filepath.Join(e.root, "root", id, "sbin", "init")
	os.Remove(initPath)
	if err := os.WriteFile(initPath, []byte(script), 0o755); err != nil {
		e.t.Fatal(err)
	}
	e.must("umount", id)
}

// initStart is the start time (clock ticks after the host's boot) of a VE's current init,
// as libcontainer's state has it: inside, /proc/1/stat counts from the VE's own boot (its
// time namespace), the same for every boot.
func (e *env) initStart(id string) int64 {
	e.t.Helper()
	n := e.initStartNow(id)
	if n == 0 {
		e.t.Fatalf("VE %s has no init (no libcontainer state)", id)
	}
	return n
}

// initStartNow is initStart, or 0 while the VE has no init (between two boots).
func (e *env) initStartNow(id string) int64 {
	var st struct {
		Start int64 `json:"init_process_start"`
	}
	data, err := os.ReadFile(filepath.Join(e.run, "lc", id, "state.json"))
	if err != nil || json.Unmarshal(data, &st) != nil {
		return 0
	}
	return st.Start
}
