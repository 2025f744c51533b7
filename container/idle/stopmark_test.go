package idle

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startTime is field 22 of /proc/PID/stat, as vectl's pid files record it.
func startTime(t *testing.T, pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))[19]
}

// TestStopInProgress: the idle loop leaves the teardown to a stop only while the marker
// names a live process with the recorded start time.
func TestStopInProgress(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	for _, c := range []struct {
		name, content string
		want          int
	}{
		{"live", fmt.Sprintf("%d %s\n", self, startTime(t, self)), self},
		{"recycled pid", fmt.Sprintf("%d 1\n", self), 0},
		{"dead", fmt.Sprintf("%d 1\n", dead.Process.Pid), 0},
		{"garbage", "stop\n", 0},
		{"empty", "", 0},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := stopInProgress(path); got != c.want {
			t.Errorf("%s marker %q: %d, want %d", c.name, c.content, got, c.want)
		}
	}
	if got := stopInProgress(filepath.Join(dir, "missing")); got != 0 {
		t.Errorf("no marker: %d, want 0", got)
	}
}
