//go:build integration

package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// personality runs vectl under another name (vzctl, vzlist) with the env's settings in the
// environment, as node scripts run vzctl.
func (e *env) personality(name string, args ...string) result {
	e.t.Helper()
	dir := filepath.Join(e.dir, "sbin")
	link := filepath.Join(dir, name)
	if _, err := os.Lstat(link); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.t.Fatal(err)
		}
		if err := os.Symlink(vectlBin, link); err != nil {
			e.t.Fatal(err)
		}
	}
	c := exec.Command(link, args...)
	c.Env = append(os.Environ(), e.environ()...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	r := result{args: append([]string{name}, args...), stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

func (e *env) vz(code int, name string, args ...string) result {
	e.t.Helper()
	r := e.personality(name, args...)
	if r.code != code {
		e.t.Fatalf("want exit %d:\n%s", code, r)
	}
	return r
}

// TestVzctlPersonality drives a busybox VE through vzctl's and vzlist's command lines and
// checks vzctl's statuses, messages and output formats against vzctl 4.11's.
func TestVzctlPersonality(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)

	// Names and banners.
	if r := e.vz(0, "vzctl", "--help"); !strings.HasPrefix(r.stdout, "vzctl version 4.11.1\n") {
		t.Fatalf("vzctl --help does not start with the version line:\n%s", r)
	}
	e.vz(20, "vzctl")
	e.vz(0, "vzctl", "--version")
	if r := e.vz(0, "vzlist", "-a"); r.stderr != "Container(s) not found\n" || r.stdout != "" {
		t.Errorf("vzlist with nothing to list:\n%s", r)
	}
	if r := e.vz(0, "vzlist", "-a", "-j"); r.stdout != "[]\n" {
		t.Errorf("vzlist -j with nothing to list: %q", r.stdout)
	}

	e.vz(0, "vzctl", "--quiet", "--verbose", "--skiplock", "create", id, "--ostemplate", tmpl,
		"--hostname", "vz1.example", "--userns", "no")
	conf := filepath.Join(e.dir, "vz", "conf", id+".conf")
	data, err := os.ReadFile(conf)
	if err != nil || !bytes.Contains(data, []byte(`ONBOOT="no"`)) || !bytes.Contains(data, []byte(`OSTEMPLATE="`+tmpl+`"`)) {
		t.Fatalf("vzctl config %s after create: %v\n%s", conf, err, data)
	}

	// Refusals and their statuses, as vzctl's man page and vzerror.h give them.
	for _, c := range []struct {
		code int
		args []string
		msg  string
	}{
		{20, []string{"frobnicate", id}, "Bad command: frobnicate"},
		{21, []string{"start"}, "CT ID missing"},
		{21, []string{"start", "Bad_ID!"}, "Bad CT ID"},
		{14, []string{"start", "4242424242"}, "Container config file does not exist"},
		{20, []string{"start", id, "--bogus"}, "unrecognized option '--bogus'"},
		{20, []string{"stop", id, "--wait"}, "not applicable to stop"},
		{0, []string{"stop", id}, "Unable to stop: container is not running"},
		{40, []string{"umount", id}, "CT is not mounted"},
		{31, []string{"exec2", id, "true"}, "Container is not running"},
		{8, []string{"exec", id, "true"}, "Container is not running"},
		{31, []string{"enter", id}, "Container is not running"},
		{21, []string{"set", id, "--ram", "lots", "--save"}, "Bad parameter for --ram"},
		{27, []string{"set", id}, "Nothing to set"},
		{0, []string{"set", id, "--cpus", "1"}, ""}, // stopped, no --save: a warning, nothing kept
		{20, []string{"chkpnt", id, "--suspend", "--resume"}, "only one sub command"},
		{44, []string{"create", id, "--ostemplate", tmpl}, ""},
		{91, []string{"create", uniqueID(t) + "7", "--ostemplate", "no-such-template"}, ""},
	} {
		r := e.personality("vzctl", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr+r.stdout, c.msg) {
			t.Errorf("want exit %d and %q:\n%s", c.code, c.msg, r)
		}
	}
	if r := e.vz(0, "vzlist", "-a", "-H", "-octid,cpus", id); strings.TrimSpace(r.stdout) != id+"     -" {
		t.Fatalf("set without --save kept a setting: %q", r.stdout)
	}

	// set: vzctl's value forms, stored where vectl has the control, stored and reported
	// where it has none.
	r := e.vz(0, "vzctl", "set", id, "--ram", "256M", "--swap", "32768P", "--numproc", "100:200",
		"--kmemsize", "64M:80M", "--privvmpages", "65536:69632", "--onboot", "yes", "--save")
	if !strings.Contains(r.stderr, "kmemsize, privvmpages: stored and shown by vzlist, not enforced") {
		t.Errorf("no warning about beancounters that are not enforced:\n%s", r)
	}
	r = e.vz(0, "vzlist", "-a", "-o", "ctid,physpages.l,swappages.l,numproc.l,kmemsize.b,kmemsize.l,privvmpages.l,onboot", id)
	row := strings.Fields(strings.Split(r.stdout, "\n")[1])
	if strings.Join(row, " ") != id+" 65536 32768 200 67108864 83886080 69632 yes" {
		t.Fatalf("vzlist after set:\n%s", r.stdout)
	}
	data, _ = os.ReadFile(conf)
	for _, kv := range []string{`PHYSPAGES="0:65536"`, `SWAPPAGES="0:32768"`, `NUMPROC="200:200"`,
		`KMEMSIZE="67108864:83886080"`, `PRIVVMPAGES="65536:69632"`, `ONBOOT="yes"`} {
		if !bytes.Contains(data, []byte(kv+"\n")) {
			t.Errorf("%s lacks %s:\n%s", conf, kv, data)
		}
	}

	// Lines of others survive vectl's rewrites; vzctl's keys changed in the file are taken in.
	data = append(data, []byte("\n#UUID: 54cd4489-187b-4299-999e-4410f59c26b9\nCUSTOM_KEY=\"kept\"\n")...)
	data = regexp.MustCompile(`(?m)^HOSTNAME=.*$`).ReplaceAll(data, []byte(`HOSTNAME="edited.example"`))
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.vz(0, "vzlist", "-H", "-o", "hostname", id); strings.TrimSpace(r.stdout) != "edited.example" {
		t.Fatalf("HOSTNAME edited in %s was not taken in:\n%s", conf, r)
	}
	e.vz(0, "vzctl", "set", id, "--description", "a VE", "--save")
	data, _ = os.ReadFile(conf)
	for _, kv := range []string{"#UUID: 54cd4489-187b-4299-999e-4410f59c26b9\n", "CUSTOM_KEY=\"kept\"\n",
		`HOSTNAME="edited.example"` + "\n", `DESCRIPTION="a VE"` + "\n"} {
		if !bytes.Contains(data, []byte(kv)) {
			t.Errorf("%s lost %q:\n%s", conf, kv, data)
		}
	}

	// runscript in a stopped VE: the VE's shell runs the script in its root without the init
	// (vzctl's "not really started"), and the VE is down again afterwards.
	stopped := filepath.Join(e.dir, "stopped.sh")
	os.WriteFile(stopped, []byte("echo pid-$$; echo written >/root/by-runscript; sleep 60 &\nexit 5\n"), 0o644)
	if r := e.vz(5, "vzctl", "runscript", id, stopped); r.stdout != "pid-1\n" {
		t.Errorf("runscript in a stopped VE: %q", r.stdout)
	}
	e.wantStatus(id, "exist unmounted down")

	// Running: exec through a shell, exec2's status, exec3's argv, stdin scripts.
	r = e.vz(0, "vzctl", "start", id)
	if !strings.Contains(r.stdout, "Starting container...") || !strings.Contains(r.stdout, "Container start in progress...") {
		t.Errorf("start messages:\n%s", r)
	}
	e.vz(32, "vzctl", "start", id)
	e.vz(32, "vzctl", "destroy", id)
	e.vz(32, "vzctl", "umount", id)
	if r := e.vz(0, "vzctl", "status", id); r.stdout != "CTID "+id+" exist mounted running\n" {
		t.Errorf("status: %q", r.stdout)
	}
	if r := e.vz(0, "vzctl", "status", "4242424242"); r.stdout != "CTID 4242424242 deleted unmounted down\n" {
		t.Errorf("status of a VE that does not exist: %q", r.stdout)
	}
	if r := e.vz(0, "vzctl", "exec", id, "echo a; echo b | tr b c"); r.stdout != "a\nc\n" {
		t.Errorf("exec through a shell: %q", r.stdout)
	}
	e.vz(8, "vzctl", "exec", id, "exit 3")
	e.vz(3, "vzctl", "exec2", id, "exit 3")
	if r := e.vz(0, "vzctl", "exec3", id, "echo", "a;b"); r.stdout != "a;b\n" {
		t.Errorf("exec3 runs argv without a shell: %q", r.stdout)
	}
	script := filepath.Join(e.dir, "script.sh")
	os.WriteFile(script, []byte("echo from-script $((6*7))\n"), 0o644)
	if r := e.vz(0, "vzctl", "runscript", id, script); r.stdout != "from-script 42\n" {
		t.Errorf("runscript: %q", r.stdout)
	}
	if r := e.vz(0, "vzctl", "exec", id, "cat /root/by-runscript"); r.stdout != "written\n" {
		t.Errorf("what runscript wrote in the stopped VE: %q", r.stdout)
	}

	// enter --exec: the command runs on the shell's terminal, and the shell stays.
	requireTool(t, "tmux")
	sess := "vectl-it-enter" + id
	env := strings.Join(e.environ(), " ")
	shell := fmt.Sprintf("env %s %s enter %s --exec echo entered-\\$\\(\\(6\\*7\\)\\); echo ENTER-EXIT=$?; sleep 600", env, filepath.Join(e.dir, "sbin", "vzctl"), id)
	if out, err := exec.Command("tmux", "new-session", "-d", "-s", sess, "-x", "100", "-y", "30", shell).CombinedOutput(); err != nil {
		t.Fatalf("tmux: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "kill-session", "-t", sess).Run() })
	pane := func() string {
		out, _ := exec.Command("tmux", "capture-pane", "-p", "-t", sess).CombinedOutput()
		return string(out)
	}
	eventually(t, 10*time.Second, "enter --exec's command", func() bool { return strings.Contains(pane(), "entered-42") })
	exec.Command("tmux", "send-keys", "-t", sess, "echo still-$((7*6))", "Enter").Run()
	eventually(t, 10*time.Second, "the shell after the command", func() bool { return strings.Contains(pane(), "still-42") })
	exec.Command("tmux", "send-keys", "-t", sess, "exit 4", "Enter").Run()
	eventually(t, 10*time.Second, "the end of enter", func() bool { return strings.Contains(pane(), "ENTER-EXIT=4") })

	// laverage: the VE's own load average, kept by its monitor from the VE's threads every
	// 5 s; two busy loops for 12 s raise the 1-minute average to about 0.36.
	e.vz(0, "vzctl", "exec", id, "for i in 1 2; do (while :; do :; done) & done; sleep 12; kill $(jobs -p)")
	r = e.vz(0, "vzlist", "-H", "-o", "laverage", id)
	var l1, l5, l15 float64
	if n, _ := fmt.Sscanf(strings.TrimSpace(r.stdout), "%f/%f/%f", &l1, &l5, &l15); n != 3 || l1 < 0.2 || l1 < l5 || l5 < l15 {
		t.Errorf("laverage after 12 s of two busy loops: %q", r.stdout)
	}
	if r := e.vz(0, "vzlist", "-j", "-o", "laverage", id); !regexp.MustCompile(`"laverage": \[\d+\.\d\d, \d+\.\d\d, \d+\.\d\d\]`).MatchString(r.stdout) {
		t.Errorf("vzlist -j laverage: %s", r.stdout)
	}

	// vzlist's formats.
	r = e.vz(0, "vzlist")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if lines[0] != "      CTID      NPROC STATUS    IP_ADDR         HOSTNAME" {
		t.Errorf("vzlist header: %q", lines[0])
	}
	if !regexp.MustCompile(`^ *` + id + ` +\d+ running   -               edited\.example$`).MatchString(lines[1]) {
		t.Errorf("vzlist row: %q", lines[1])
	}
	if r := e.vz(0, "vzlist", "-a", "-ovpsid,status", "-H", id); r.stdout != fmt.Sprintf("%10s running\n", id) {
		t.Errorf("vzlist -ovpsid,status -H: %q", r.stdout)
	}
	if r := e.vz(0, "vzlist", "-1"); !strings.Contains(r.stdout, fmt.Sprintf("%10s\n", id)) {
		t.Errorf("vzlist -1: %q", r.stdout)
	}
	if r := e.vz(0, "vzlist", "-j", id); !strings.Contains(r.stdout, "\n    \"ctid\": "+id+",\n") ||
		!strings.Contains(r.stdout, "\"numproc\": {\n      \"held\": ") {
		t.Errorf("vzlist -j shape:\n%s", r.stdout)
	}
	if r := e.vz(0, "vzlist", "-o", "uptime", "-H", id); !regexp.MustCompile(`^000d00h:0\dm:\d\ds\n$`).MatchString(r.stdout) {
		t.Errorf("vzlist uptime format: %q", r.stdout)
	}
	e.vz(1, "vzlist", "4242424242")
	e.vz(1, "vzlist", "-o", "nosuchfield")

	// chkpnt --suspend/--resume freeze and thaw (libvirt's suspend and resume).
	e.vz(0, "vzctl", "chkpnt", id, "--suspend")
	if r := e.must("status", id); !strings.Contains(r.stdout, "frozen") {
		t.Errorf("chkpnt --suspend did not freeze: %s", r.stdout)
	}
	e.vz(0, "vzctl", "chkpnt", id, "--resume")
	if r := e.must("status", id); strings.Contains(r.stdout, "frozen") {
		t.Errorf("chkpnt --resume did not thaw: %s", r.stdout)
	}

	r = e.vz(0, "vzctl", "stop", id)
	if !strings.Contains(r.stdout, "Container was stopped") {
		t.Errorf("stop messages:\n%s", r)
	}
	e.vz(0, "vzctl", "--quiet", "destroy", id)
	if _, err := os.Stat(conf + ".destroyed"); err != nil {
		t.Errorf("destroy did not move %s aside as vzctl does: %v", conf, err)
	}
	if _, err := os.Stat(conf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s is still there after destroy", conf)
	}
}

// TestVzctlSetExtras covers vzctl set's --userpasswd, --disabled, --devnodes, --devices,
// --capability and --features on busybox VEs.
func TestVzctlSetExtras(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.vz(0, "vzctl", "create", id, "--ostemplate", tmpl, "--userns", "no")
	shadow := func() string {
		r := e.vz(0, "vzctl", "exec", id, "cat /etc/shadow")
		return r.stdout
	}

	// --userpasswd on a stopped VE: vzctl starts it for the change and stops it again.
	e.vz(0, "vzctl", "set", id, "--userpasswd", "alice:pa:ss word")
	if st := e.must("status", id).stdout; !strings.Contains(st, "down") {
		t.Fatalf("the VE was left running after --userpasswd: %s", st)
	}
	e.vz(0, "vzctl", "start", id)
	sh := shadow()
	m := regexp.MustCompile(`(?m)^alice:(\$6\$[^:]+):`).FindStringSubmatch(sh)
	if m == nil {
		t.Fatalf("alice has no SHA-512 password in /etc/shadow:\n%s", sh)
	}
	check := exec.Command("python3", "-W", "ignore", "-c", "import crypt,sys; sys.exit(crypt.crypt(sys.argv[1], sys.argv[2]) != sys.argv[2])", "pa:ss word", m[1])
	if err := check.Run(); err != nil {
		t.Fatalf("alice's hash %s does not match the password: %v", m[1], err)
	}
	if r := e.vz(0, "vzctl", "exec", id, "grep ^alice: /etc/passwd"); !strings.Contains(r.stdout, ":/home/alice:") {
		t.Errorf("alice was not added to /etc/passwd: %q", r.stdout)
	}
	// On a running VE, at once; the password is never in a command line.
	e.vz(0, "vzctl", "set", id, "--userpasswd", "root:n3w")
	if !regexp.MustCompile(`(?m)^root:\$6\$`).MatchString(shadow()) {
		t.Errorf("root's password was not set:\n%s", shadow())
	}
	e.vz(21, "vzctl", "set", id, "--userpasswd", "no-colon")
	e.vz(21, "vzctl", "set", id, "--userpasswd", "Bad User:x")

	// --capability off takes the capability from the VE's init at the next start.
	e.vz(0, "vzctl", "set", id, "--capability", "net_admin:off", "--devnodes", "net/tun:rw", "--devices", "c:10:229:rw", "--save")
	e.vz(0, "vzctl", "restart", id)
	r := e.vz(0, "vzctl", "exec", id, "grep CapBnd /proc/1/status")
	var bnd uint64
	fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(r.stdout, "CapBnd:")), "%x", &bnd)
	if bnd&(1<<12) != 0 || bnd&(1<<0) == 0 {
		t.Errorf("CapBnd %x: net_admin (12) should be off, chown (0) on", bnd)
	}
	if r := e.vz(0, "vzctl", "exec", id, "exec 3<>/dev/net/tun && echo opened"); r.stdout != "opened\n" {
		t.Errorf("/dev/net/tun in the VE: %q %q", r.stdout, r.stderr)
	}
	if r := e.vz(0, "vzlist", "-H", "-o", "capability,disabled", id); strings.Fields(r.stdout)[0] != "net_admin:off" {
		t.Errorf("vzlist capability: %q", r.stdout)
	}
	data, _ := os.ReadFile(filepath.Join(e.dir, "vz", "conf", id+".conf"))
	for _, kv := range []string{`CAPABILITY="net_admin:off"`, `DEVNODES="net/tun:rw"`, `DEVICES="c:10:229:rw"`} {
		if !strings.Contains(string(data), kv+"\n") {
			t.Errorf("%s.conf lacks %s:\n%s", id, kv, data)
		}
	}
	e.vz(21, "vzctl", "set", id, "--capability", "ve_admin:on", "--save")
	e.vz(21, "vzctl", "set", id, "--devnodes", "../etc/passwd:rw", "--save")
	e.vz(21, "vzctl", "set", id, "--devices", "x:1:2:rw", "--save")
	if _, err := os.Stat("/dev/ppp"); err != nil {
		if r := e.vz(21, "vzctl", "set", id, "--features", "ppp:on", "--save"); !strings.Contains(r.stderr, "no /dev/ppp") {
			t.Errorf("ppp:on without /dev/ppp on the host:\n%s", r)
		}
	}
	if r := e.vz(0, "vzctl", "set", id, "--features", "bridge:on", "--save"); !strings.Contains(r.stderr, "change nothing here") {
		t.Errorf("features that change nothing are not reported:\n%s", r)
	}

	// --disabled: start refuses (105) unless forced; boot skips the VE.
	e.vz(0, "vzctl", "stop", id)
	e.vz(0, "vzctl", "set", id, "--disabled", "yes", "--onboot", "yes", "--save")
	if r := e.vz(105, "vzctl", "start", id); !strings.Contains(r.stderr, "Container start disabled") {
		t.Errorf("start of a disabled VE:\n%s", r)
	}
	e.expect(105, "start", id)
	if r := e.must("boot"); strings.Contains(r.stdout, id) || !strings.Contains(e.must("status", id).stdout, "down") {
		t.Errorf("boot started a disabled VE:\n%s", r)
	}
	e.vz(0, "vzctl", "start", id, "--force")
	e.vz(0, "vzctl", "stop", id)
	e.vz(0, "vzctl", "set", id, "--disabled", "no", "--save")
	e.vz(0, "vzctl", "start", id)
}
