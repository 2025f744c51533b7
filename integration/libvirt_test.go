//go:build integration && !vmtest

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The libvirt test runs Debian's own virsh (libvirt-clients; libvirt0 9.0 has the OpenVZ
// driver built in) against vectl installed as vzctl and vzlist. libvirt 9.0 runs the fixed
// paths /usr/sbin/vzctl and /usr/sbin/vzlist and reads /etc/vz/conf, so the test puts links
// there (refusing if a real vzctl is installed) and removes them, and whatever it made in
// /etc/vz, afterwards. The only thing faked is the OpenVZ kernel's presence check: an
// LD_PRELOAD shim, built here, answers access("/proc/vz") for virsh.

const procVZShim = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

/* libvirt's OpenVZ driver asks access("/proc/vz", F_OK and W_OK) before anything else. */
int access(const char *path, int mode) {
	static int (*real)(const char *, int);
	if (path && strcmp(path, "/proc/vz") == 0)
		return 0;
	if (!real)
		real = (int (*)(const char *, int))dlsym(RTLD_NEXT, "access");
	return real(path, mode);
}
`

// installVZ links /usr/sbin/vzctl and /usr/sbin/vzlist to vectl and prepares /etc/vz; the
// cleanup removes what it made.
func installVZ(t *testing.T) {
	t.Helper()
	for _, name := range []string{"vzctl", "vzlist"} {
		link := filepath.Join("/usr/sbin", name)
		if target, err := os.Readlink(link); err == nil && target == vectlBin {
			os.Remove(link) // left by an earlier run that was killed
		}
		if _, err := os.Lstat(link); err == nil {
			t.Fatalf("%s exists and is not this test's link: refusing to replace an installed vzctl", link)
		}
		if err := os.Symlink(vectlBin, link); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.Remove(link); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		})
	}
	made := []string{}
	for _, dir := range []string{"/etc/vz", "/etc/vz/conf"} {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			made = append(made, dir)
		}
	}
	// Files of another node's (a demo's VE 101, say) that the test rewrites: vz.conf, which the
	// test's node writes with its own paths, and each VE's config, to which libvirt's driver
	// adds a #UUID line when it lists the VE. The cleanup puts back vz.conf as it was, and a
	// config whose only change is that line.
	global, globalErr := os.ReadFile("/etc/vz/vz.conf")
	before := map[string][]byte{}
	confs, _ := filepath.Glob("/etc/vz/conf/*.conf")
	for _, p := range confs {
		if data, err := os.ReadFile(p); err == nil {
			before[p] = data
		}
	}
	t.Cleanup(func() {
		if globalErr != nil {
			os.Remove("/etc/vz/vz.conf")
		} else if err := os.WriteFile("/etc/vz/vz.conf", global, 0o644); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for p, data := range before {
			now, err := os.ReadFile(p)
			if err == nil && !bytes.Equal(now, data) && bytes.Equal(withoutUUID(now), withoutUUID(data)) {
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
		// Made by this test: everything in them is the test's VEs' (ID.conf.destroyed too).
		for i := len(made) - 1; i >= 0; i-- {
			if err := os.RemoveAll(made[i]); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// withoutUUID is a VE config without the #UUID line libvirt's OpenVZ driver adds.
func withoutUUID(conf []byte) []byte {
	var out []byte
	for line := range bytes.Lines(conf) {
		if !bytes.HasPrefix(line, []byte("#UUID:")) {
			out = append(out, line...)
		}
	}
	return bytes.TrimRight(out, "\n")
}

// TestLibvirtOpenVZ manages vectl VEs through virsh -c openvz:///system, unmodified, and
// checks after each step that vectl agrees with what virsh says.
func TestLibvirtOpenVZ(t *testing.T) {
	virsh := requireTool(t, "virsh")
	gcc := requireTool(t, "gcc")
	// Before the env: cleanups run last first, so the env's VEs are destroyed (and vectl
	// writes /etc/vz one last time) before /etc/vz is taken away.
	installVZ(t)
	e := newEnv(t)
	e.vzConfDir = "/etc/vz"
	tmpl := e.importBusybox()
	a, b := uniqueID(t), uniqueID(t)
	for _, id := range []string{a, b} {
		conf := filepath.Join("/etc/vz/conf", id+".conf")
		t.Cleanup(func() {
			e.vectl("stop", "--fast", id)
			e.vectl("destroy", id)
			os.Remove(conf)
			os.Remove(conf + ".destroyed")
		})
	}

	shim := filepath.Join(e.dir, "procvz.so")
	src := filepath.Join(e.dir, "procvz.c")
	if err := os.WriteFile(src, []byte(procVZShim), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-o", shim, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("building the /proc/vz shim: %v\n%s", err, out)
	}
	run := func(args ...string) result {
		t.Helper()
		c := exec.Command(virsh, append([]string{"-q", "-c", "openvz:///system"}, args...)...)
		c.Env = append(os.Environ(), e.environ()...)
		c.Env = append(c.Env, "LD_PRELOAD="+shim, "XDG_CONFIG_HOME="+e.dir, "XDG_CACHE_HOME="+e.dir,
			"XDG_RUNTIME_DIR="+e.dir)
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		err := c.Run()
		r := result{args: append([]string{"virsh"}, args...), stdout: out.String(), stderr: errb.String()}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if r.code != 0 {
			t.Fatalf("virsh failed:\n%s", r)
		}
		return r
	}
	vectlState := func(id string) string {
		t.Helper()
		return strings.TrimSpace(strings.TrimPrefix(e.must("status", id).stdout, "VEID "+id+" "))
	}
	field := func(out, name string) string {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `:\s+(.*)$`).FindStringSubmatch(out)
		if m == nil {
			return ""
		}
		return strings.TrimSpace(m[1])
	}

	e.must("create", a, "--ostemplate", tmpl, "--hostname", "lv1.example", "--userns", "no")

	if r := run("version"); !strings.Contains(r.stdout, "Running hypervisor: OpenVZ 4.11.1") {
		t.Fatalf("virsh version:\n%s", r)
	}
	if r := run("list", "--all"); !regexp.MustCompile(`(?m)^\s*-\s+` + a + `\s+shut off$`).MatchString(r.stdout) {
		t.Fatalf("virsh list --all:\n%s", r)
	}
	if s := strings.TrimSpace(run("domstate", a).stdout); s != "shut off" || vectlState(a) != "exist unmounted down" {
		t.Fatalf("domstate %q, vectl %q", s, vectlState(a))
	}
	info := run("dominfo", a).stdout
	if field(info, "State") != "shut off" || field(info, "Autostart") != "disable" || field(info, "Name") != a {
		t.Fatalf("dominfo of a stopped VE:\n%s", info)
	}
	if h := strings.TrimSpace(run("domhostname", a).stdout); h != "lv1.example" {
		t.Fatalf("domhostname: %q", h)
	}

	run("autostart", a)
	if field(run("dominfo", a).stdout, "Autostart") != "enable" || !configOf(t, e, a).OnBoot {
		t.Fatalf("autostart: vectl's onboot is not set")
	}
	run("autostart", "--disable", a)
	if configOf(t, e, a).OnBoot {
		t.Fatal("autostart --disable: vectl's onboot is still set")
	}
	run("setvcpus", a, "1")
	if c := configOf(t, e, a); c.Resources.CPUs == nil || *c.Resources.CPUs != 1 {
		t.Fatalf("setvcpus 1: vectl's cpus is %v", c.Resources.CPUs)
	}

	run("start", a)
	if s := strings.TrimSpace(run("domstate", a).stdout); s != "running" || vectlState(a) != "exist mounted running" {
		t.Fatalf("after start: domstate %q, vectl %q", s, vectlState(a))
	}
	if r := run("list"); !regexp.MustCompile(`(?m)^\s*` + a + `\s+` + a + `\s+running$`).MatchString(r.stdout) {
		t.Fatalf("virsh list after start:\n%s", r)
	}
	pid := e.veInitPid(a)
	run("reboot", a)
	if vectlState(a) != "exist mounted running" || e.veInitPid(a) == pid {
		t.Fatalf("reboot: vectl %q, init pid %d before and after", vectlState(a), pid)
	}

	// suspend and resume: within one virsh session (libvirt keeps "paused" in memory), and
	// suspend alone, after which vectl says frozen.
	r := run("suspend " + a + "; domstate " + a + "; resume " + a + "; domstate " + a)
	states := strings.Fields(r.stdout)
	if len(states) == 0 || !strings.Contains(r.stdout, "paused") || states[len(states)-1] != "running" {
		t.Fatalf("suspend; resume in one session:\n%s", r)
	}
	if vectlState(a) != "exist mounted running" {
		t.Fatalf("after resume vectl says %q", vectlState(a))
	}
	run("suspend", a)
	if vectlState(a) != "exist mounted running frozen" {
		t.Fatalf("after suspend vectl says %q", vectlState(a))
	}
	e.must("thaw", a)

	run("shutdown", a)
	if s := strings.TrimSpace(run("domstate", a).stdout); s != "shut off" || vectlState(a) != "exist unmounted down" {
		t.Fatalf("after shutdown: domstate %q, vectl %q", s, vectlState(a))
	}

	// define and undefine. libvirt 9.0 passes vzctl create a pointer's bytes for the
	// template name; vzctl then uses vz.conf's DEF_OSTEMPLATE, as without --ostemplate.
	global, err := os.ReadFile("/etc/vz/vz.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(global, []byte("DEF_OSTEMPLATE=")) {
		global = append(global, []byte(`DEF_OSTEMPLATE="`+tmpl+`"`+"\n")...)
		if err := os.WriteFile("/etc/vz/vz.conf", global, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	xml := filepath.Join(e.dir, "ve.xml")
	os.WriteFile(xml, []byte(`<domain type='openvz'>
  <name>`+b+`</name>
  <memory unit='KiB'>262144</memory>
  <vcpu>1</vcpu>
  <os><type>exe</type><init>/sbin/init</init></os>
  <devices>
    <filesystem type='template'><source name='`+tmpl+`'/><target dir='/'/></filesystem>
  </devices>
</domain>
`), 0o644)
	run("define", xml)
	if vectlState(b) != "exist unmounted down" {
		t.Fatalf("after define vectl says %q", vectlState(b))
	}
	c := configOf(t, e, b)
	if c.OSTemplate != tmpl || c.Resources.CPUs == nil || *c.Resources.CPUs != 1 || c.Resources.UBC["kmemsize"] != "268435456:268435456" {
		t.Fatalf("defined VE's config: %+v", c)
	}
	if r := run("list", "--all"); !regexp.MustCompile(`(?m)^\s*-\s+` + b + `\s+shut off$`).MatchString(r.stdout) {
		t.Fatalf("virsh list --all after define:\n%s", r)
	}
	uuid := strings.TrimSpace(run("domuuid", b).stdout)
	e.must("set", b, "--description", "defined by virsh", "--save") // a rewrite of its config
	if u := strings.TrimSpace(run("domuuid", b).stdout); u != uuid {
		t.Fatalf("the UUID libvirt keeps in %s.conf changed across vectl's rewrite: %s, then %s", b, uuid, u)
	}
	run("undefine", b)
	if vectlState(b) != "deleted unmounted down" {
		t.Fatalf("after undefine vectl says %q", vectlState(b))
	}
	if r := run("list", "--all"); strings.Contains(r.stdout, b) {
		t.Fatalf("virsh still lists %s after undefine:\n%s", b, r)
	}
}

// veConfig is the part of a VE's config.json the libvirt test checks.
type veConfig struct {
	OSTemplate string `json:"ostemplate"`
	OnBoot     bool   `json:"onboot"`
	Resources  struct {
		CPUs *uint64           `json:"cpus"`
		UBC  map[string]string `json:"ubc"`
	} `json:"resources"`
}

// configOf reads a VE's config.json from the env's root.
func configOf(t *testing.T, e *env, id string) veConfig {
	t.Helper()
	var c veConfig
	data, err := os.ReadFile(filepath.Join(e.root, "ve", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}
