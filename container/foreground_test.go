package container

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vectl/vectl/container/join"
)

// TestRestartAsked: a foreground monitor honours a restart request only when it names this
// very process and its requester still lives; a dead requester's request is removed, another
// monitor's left alone. The monitor's answer removes it, or puts the failure in its place.
func TestRestartAsked(t *testing.T) {
	m := &Manager{opts: Options{RunDir: t.TempDir()}}
	if err := os.MkdirAll(filepath.Join(m.opts.RunDir, "ve"), 0o700); err != nil {
		t.Fatal(err)
	}
	const id = "101"
	self := os.Getpid()
	st, err := join.StartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	// A requester that has ended.
	c := exec.Command("/bin/true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	gone := c.Process.Pid
	gst, err := join.StartTime(gone)
	if err != nil {
		t.Fatal(err)
	}
	c.Wait()
	write := func(format string, a ...any) {
		t.Helper()
		if err := os.WriteFile(m.restartFile(id), []byte(fmt.Sprintf(format, a...)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exists := func() bool {
		_, err := os.Stat(m.restartFile(id))
		return err == nil
	}

	if m.restartAsked(id) {
		t.Fatal("no request: asked")
	}
	write("%d %d %d %d\n", self, st, self, st)
	if !m.restartAsked(id) {
		t.Fatal("a request naming this process, from a live requester: not asked")
	}
	write("%d %d %d %d\n", self, st+1, self, st)
	if m.restartAsked(id) {
		t.Fatal("a request naming an earlier process of this pid: asked")
	}
	write("%d %d %d %d\n", self+1, st, self, st)
	if m.restartAsked(id) || !exists() {
		t.Fatal("another monitor's request: asked, or removed")
	}
	write("%d %d %d %d\n", self, st, gone, gst)
	if m.restartAsked(id) || exists() {
		t.Fatal("a request whose requester has ended: asked, or left")
	}

	// Another live monitor's request from a live requester: a restart under way (which no
	// one else may start meanwhile, startable); over once that monitor has ended.
	sleep := exec.Command("sleep", "30")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleep.Process.Kill()
	sst, err := join.StartTime(sleep.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	write("%d %d %d %d\n", sleep.Process.Pid, sst, self, st)
	if got := m.restarting(id); got != sleep.Process.Pid {
		t.Fatalf("restarting = %d, want the live monitor %d", got, sleep.Process.Pid)
	}
	sleep.Process.Kill()
	sleep.Wait()
	if got := m.restarting(id); got != 0 {
		t.Fatalf("restarting = %d after the monitor ended, want 0", got)
	}
	write("%d %d %d %d\n", self, st, self, st)
	if got := m.restarting(id); got != 0 {
		t.Fatalf("restarting = %d for this process's own request, want 0", got)
	}
	m.restartDone(id, errors.New("start 101: no\nmore"))
	data, _ := os.ReadFile(m.restartFile(id))
	if string(data) != "error: start 101: no; more\n" || m.restartAsked(id) {
		t.Fatalf("after a failed boot the request holds %q, want the error on one line", data)
	}
	m.restartDone(id, nil)
	if exists() {
		t.Fatal("after a boot the request is left")
	}
	if ents, _ := os.ReadDir(filepath.Join(m.opts.RunDir, "ve")); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("left in the run directory: %s", strings.Join(names, " "))
	}
}
