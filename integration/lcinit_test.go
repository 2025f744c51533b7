//go:build integration

package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// execveLine is one execve that strace -f logged: pid, program, its argv text, and result.
var execveLine = regexp.MustCompile(`^(\d+)\s+execve\("([^"]*)", \[([^\]]*)\][^=]*= (.*)$`)

type execve struct {
	pid        string
	prog, argv string
	ok         bool
	result     string
}

// traceExecs runs vectl with args under strace -f and returns its exit status and every
// execve of the process tree, in order; t is the (sub)test that fails when that cannot be done.
func (e *env) traceExecs(t testing.TB, args ...string) (int, []execve) {
	t.Helper()
	code, text := e.trace(t, "execve", args...)
	return code, parseExecs(t, text)
}

// trace runs vectl with args under strace -f, tracing the system calls calls (strace's
// trace= list), and returns its exit status and strace's log.
func (e *env) trace(t testing.TB, calls string, args ...string) (int, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "strace.log")
	c := exec.Command(requireTool(t, "strace"), append([]string{"-f", "-qq", "-s", "200",
		"-e", "trace=" + calls, "-e", "signal=none", "-o", log, vectlBin}, e.args(args...)...)...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("strace vectl %v: %v", args, err)
	}
	text, rerr := os.ReadFile(log)
	if rerr != nil {
		t.Fatal(rerr)
	}
	return code, string(text) + "\n" + out.String()
}

// parseExecs is every execve in strace's log text, in order.
func parseExecs(t testing.TB, text string) []execve {
	t.Helper()
	var execs []execve
	for _, l := range strings.Split(text, "\n") {
		if m := execveLine.FindStringSubmatch(l); m != nil {
			execs = append(execs, execve{pid: m[1], prog: m[2], argv: m[3], ok: m[4] == "0", result: m[4]})
		}
	}
	if len(execs) == 0 {
		t.Fatalf("strace logged no execve:\n%s", text)
	}
	return execs
}

// TestSealedProgram: a VE's init wrapper and exec's joiner run as a sealed copy of the small
// idle-loop program (vectl-idle, which holds their C), not of vectl's 20 MB binary: under
// strace -f, a foreground run copies vectl-idle into a sealed memfd and executes the wrapper
// (__initwrap) from a descriptor, after which the VE's init runs; vectl exec does the same
// for its joiner (__nsjoin), and the command runs.
func TestSealedProgram(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	fg, id := uniqueID(t), uniqueID(t)
	e.must("create", fg, "--ostemplate", tmpl)
	e.setInit(fg, "#!/bin/sh\nexit 0\n")
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id)
	const memfd = `memfd_create("runc_cloned:vectl-idle"`
	for _, run := range []struct {
		args       []string
		code       int
		arg, after string
	}{
		{[]string{"start", "--foreground", fg}, 2, `"__initwrap"`, "/sbin/init"},
		{[]string{"exec", id, "/bin/true"}, 0, `"__nsjoin"`, "/bin/true"},
	} {
		code, text := e.trace(t, "execve,memfd_create", run.args...)
		if code != run.code {
			t.Fatalf("vectl %v exited %d, want %d:\n%s", run.args, code, run.code, text)
		}
		if !strings.Contains(text, memfd) {
			t.Errorf("vectl %v made no sealed copy of vectl-idle (%s...)", run.args, memfd)
		}
		wrapped, ran := false, false
		for _, x := range parseExecs(t, text) {
			if x.ok && strings.HasPrefix(x.prog, "/proc/self/fd/") && strings.Contains(x.argv, run.arg) {
				wrapped = true
			}
			if wrapped && x.ok && x.prog == run.after {
				ran = true
			}
		}
		if !wrapped || !ran {
			t.Errorf("vectl %v: %s executed from a descriptor %v, then %s %v:\n%s", run.args, run.arg, wrapped, run.after, ran, text)
		}
	}
}

// TestInitProgram: libcontainer's init for a VE's first process runs in vectl-init, the
// small program embedded in vectl, not in vectl's binary. Traced with strace -f over a
// foreground run of a VE whose init writes a file and exits, for a VE with its own user
// namespace and a privileged one: libcontainer executes its sealed copy of vectl as
// "vectl-init init" (argv[0] the extracted program), that process executes the program at
// once, the VE's init then runs (its file is there) and the run ends with the init's exit
// (2). The program is root's, mode 0700, under ROOT/init-bin/SUM. When the program cannot
// be executed (a damaged copy of the same size), the init goes on in vectl's binary and
// the VE runs all the same.
func TestInitProgram(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	for _, userns := range []string{"yes", "no"} {
		t.Logf("--userns %s", userns)
		func() {
			id := uniqueID(t)
			e.must("create", id, "--ostemplate", tmpl, "--userns", userns)
			e.setInit(id, "#!/bin/sh\necho $$ > /init-ran\n")
			ran := func() string {
				t.Helper()
				e.must("mount", id)
				defer e.must("umount", id)
				b, _ := os.ReadFile(filepath.Join(e.root, "root", id, "init-ran"))
				os.Remove(filepath.Join(e.root, "root", id, "init-ran"))
				return strings.TrimSpace(string(b))
			}

			code, execs := e.traceExecs(t, "start", "--foreground", id)
			if code != 2 {
				t.Fatalf("start --foreground exited %d, want 2 (the init ended)", code)
			}
			if got := ran(); got != "1" {
				t.Fatalf("the VE's init did not run as PID 1: /init-ran holds %q", got)
			}
			prog := checkInitExec(t, execs, true)
			want := regexp.MustCompile(`^` + regexp.QuoteMeta(filepath.Join(e.root, "init-bin")) + `/[0-9a-f]{12}/vectl-init$`)
			if !want.MatchString(prog) {
				t.Fatalf("the init executed %s, want ROOT/init-bin/SUM/vectl-init", prog)
			}
			st, err := os.Stat(prog)
			if err != nil {
				t.Fatal(err)
			}
			if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o700 || sys.Uid != 0 {
				t.Errorf("%s: mode %v, uid %d; want 0700, root", prog, st.Mode().Perm(), sys.Uid)
			}
			for _, dir := range []string{filepath.Dir(prog), filepath.Dir(filepath.Dir(prog))} {
				if st, err := os.Stat(dir); err != nil || st.Mode().Perm()&0o022 != 0 {
					t.Errorf("%s: %v, mode %v: others may write it", dir, err, st.Mode().Perm())
				}
			}

			if userns == "no" {
				// The same size, not a program: the exec fails and the init stays in vectl.
				if err := os.WriteFile(prog, make([]byte, st.Size()), 0o700); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(prog) // the next start extracts it again
				code, execs := e.traceExecs(t, "start", "--foreground", id)
				if code != 2 {
					t.Fatalf("start --foreground with a damaged vectl-init exited %d, want 2", code)
				}
				if got := ran(); got != "1" {
					t.Fatalf("with a damaged vectl-init the VE's init did not run: /init-ran holds %q", got)
				}
				checkInitExec(t, execs, false)
			}
		}()
	}
}

// checkInitExec finds libcontainer's init in execs, the execve of its sealed copy of vectl
// with the argument "init", and checks that the same process then executed vectl-init
// (named by argv[0]) with the same arguments, successfully when ok is true and failing
// otherwise, and that the VE's own init (/sbin/init) ran later. It returns vectl-init's path.
func checkInitExec(t *testing.T, execs []execve, ok bool) string {
	t.Helper()
	for i, x := range execs {
		if !x.ok || !strings.HasPrefix(x.prog, "/proc/self/fd/") || !strings.HasSuffix(x.argv, `, "init"`) {
			continue
		}
		prog := strings.Trim(strings.TrimSuffix(x.argv, `, "init"`), `"`)
		var next *execve
		for j := i + 1; j < len(execs); j++ {
			if execs[j].pid == x.pid {
				next = &execs[j]
				break
			}
		}
		if next == nil || next.prog != prog || next.argv != x.argv || next.ok != ok {
			t.Fatalf("libcontainer's init %s %s, then %+v; want an exec of %s (success %v)", x.prog, x.argv, next, prog, ok)
		}
		for _, y := range execs[i+1:] {
			if y.prog == "/sbin/init" && y.ok {
				return prog
			}
		}
		t.Fatalf("no exec of /sbin/init after libcontainer's init: %v", execs[i:])
	}
	t.Fatalf("no exec of libcontainer's init (a sealed copy of vectl with \"init\"): %v", execs)
	return ""
}
