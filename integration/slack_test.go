//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSysmonSlack: in a vectl process exactly one thread, the Go runtime's sysmon (the first
// it starts; never the main thread), has 1 ms of timer slack, and every other thread, the
// VE's init (libcontainer's init, vectl-init's main thread, executed it) and a program vectl
// exec runs in the VE have the slack vectl was started with (container/slack).
func TestSysmonSlack(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id)
	// exec.Cmd forks from one of this test's threads, whose slack is the process's default.
	want := readSlack(t, "/proc/self/timerslack_ns")

	if got := readSlack(t, fmt.Sprintf("/proc/%d/timerslack_ns", e.veInitPid(id))); got != want {
		t.Errorf("the VE's init has timer slack %s ns, want %s (vectl's)", got, want)
	}

	c := e.cmd("exec", id, "sleep", "3")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	time.Sleep(time.Second)
	pid := c.Process.Pid
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) < 3 {
		t.Fatalf("vectl exec's threads: %v %v", tasks, err)
	}
	var slow []string
	for _, task := range tasks {
		tid := filepath.Base(task)
		s := readSlack(t, "/proc/"+tid+"/timerslack_ns")
		switch {
		case s == "1000000":
			slow = append(slow, tid)
		case s != want:
			t.Errorf("vectl exec's thread %s has timer slack %s ns, want %s or 1000000 (sysmon)", tid, s, want)
		}
	}
	if len(slow) != 1 || slow[0] == strconv.Itoa(pid) {
		t.Errorf("vectl exec (pid %d, %d threads): threads with 1 ms of slack %v, want one (sysmon), not the main thread", pid, len(tasks), slow)
	}
	prog := descendant(pid, "sleep")
	if prog == "" {
		t.Fatalf("vectl exec (pid %d) has no process sleep below it", pid)
	}
	if got := readSlack(t, "/proc/"+prog+"/timerslack_ns"); got != want {
		t.Errorf("the program vectl exec runs has timer slack %s ns, want %s", got, want)
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("vectl exec: %v", err)
	}
}

func readSlack(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// descendant is the pid of a process named comm below process pid ("" if none).
func descendant(pid int, comm string) string {
	kids, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, k := range kids {
		b, _ := os.ReadFile(k)
		for _, c := range strings.Fields(string(b)) {
			if name, _ := os.ReadFile("/proc/" + c + "/comm"); strings.TrimSpace(string(name)) == comm {
				return c
			}
			if n, err := strconv.Atoi(c); err == nil {
				if d := descendant(n, comm); d != "" {
					return d
				}
			}
		}
	}
	return ""
}
