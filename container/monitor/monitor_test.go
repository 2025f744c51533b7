package monitor

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestConsoleLogRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "101.console")
	l, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write([]byte("boot\r\n"))
	if data, _ := os.ReadFile(path); string(data) != "boot\n" {
		t.Fatalf("log = %q: carriage returns must be dropped", data)
	}
	chunk := bytes.Repeat([]byte("x"), 64*1024)
	for i := 0; i < 20; i++ {
		l.Write(chunk)
	}
	for _, p := range []string{path, path + ".1"} {
		st, err := os.Stat(p)
		if err != nil || st.Size() > LogMax {
			t.Fatalf("%s: %v, size %v; want at most %d", p, err, st, LogMax)
		}
	}
}

func TestExitCodeAndDescription(t *testing.T) {
	if got := describeExit(syscall.WaitStatus(unix.SIGHUP)); !strings.Contains(got, "reboot") {
		t.Errorf("SIGHUP: %q", got)
	}
	if got := describeExit(syscall.WaitStatus(unix.SIGINT)); !strings.Contains(got, "poweroff") {
		t.Errorf("SIGINT: %q", got)
	}
	if got := describeExit(syscall.WaitStatus(3 << 8)); !strings.Contains(got, "status 3") {
		t.Errorf("exit 3: %q", got)
	}
}
