package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as a second process holding a lock (see holdLock).
func TestMain(m *testing.M) {
	if path := os.Getenv("VECTL_TEST_HOLD_LOCK"); path != "" {
		l, err := Acquire(path, 5*time.Second)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		io.Copy(io.Discard, os.Stdin) // hold until the parent closes our stdin
		l.Unlock()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdLock starts a second process that takes the lock at path and keeps it until the
// returned release function is called.
func holdLock(t *testing.T, path string) (pid int, release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VECTL_TEST_HOLD_LOCK="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("lock holder: %q", line)
	}
	release = func() {
		stdin.Close()
		cmd.Wait()
	}
	t.Cleanup(release)
	return cmd.Process.Pid, release
}

func TestLockContentionTwoProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "101.lock")
	pid, release := holdLock(t, path)

	start := time.Now()
	l, err := Acquire(path, 300*time.Millisecond)
	if err == nil {
		l.Unlock()
		t.Fatal("second process got a lock that another process holds")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("err = %v, want ErrLocked", err)
	}
	var le *LockedError
	if !errors.As(err, &le) || le.Holder != pid {
		t.Fatalf("err = %#v, want holder pid %d", err, pid)
	}
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Fatalf("gave up after %v, before the 300ms timeout", waited)
	}

	// Once the holder exits, the lock is free: no stale lock survives a process.
	release()
	l, err = Acquire(path, time.Second)
	if err != nil {
		t.Fatalf("after the holder exited: %v", err)
	}
	l.Unlock()
}

func TestLockWaitsForRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.lock")
	_, release := holdLock(t, path)
	go func() {
		time.Sleep(100 * time.Millisecond)
		release()
	}()
	l, err := Acquire(path, 5*time.Second)
	if err != nil {
		t.Fatalf("waiting for a lock that is released after 100ms: %v", err)
	}
	l.Unlock()
}

func TestLockRemovedWhileWaiting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.lock")
	first, err := Acquire(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		l, err := Acquire(path, 5*time.Second)
		if err == nil {
			// The waiter must hold the lock on the file that path names now.
			if !samePath(l.f, path) {
				err = errors.New("waiter locked an unlinked file")
			}
			l.Unlock()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := first.Remove(); err != nil {
		t.Fatal(err)
	}
	first.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func testConfig(id string) *Config {
	return &Config{ID: id, OSTemplate: "busybox-1.35-x86_64", Layout: "overlay",
		Created: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
}

func TestWriteFileAtomicSimulatedCrash(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Init(); err != nil {
		t.Fatal(err)
	}
	c := testConfig("101")
	c.Hostname = "old"
	if err := s.Reserve(c); err != nil {
		t.Fatal(err)
	}
	// A crash between writing the temporary file and renaming it leaves a partial temp file
	// next to the intact config, and a temp directory entry in ve/.
	partial := filepath.Join(s.VEDir("101"), tempPrefix+"config.json.123")
	if err := os.WriteFile(partial, []byte(`{"schema":1,"id":"101","hostn`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.Root, "ve", tempPrefix+"x"), 0o700); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadConfig("101")
	if err != nil {
		t.Fatalf("config after simulated crash: %v", err)
	}
	if got.Hostname != "old" {
		t.Fatalf("hostname = %q, want the old content", got.Hostname)
	}
	ids, err := s.IDs()
	if err != nil || len(ids) != 1 || ids[0] != "101" {
		t.Fatalf("IDs = %v, %v; temp entries must be ignored", ids, err)
	}
	// The next successful write replaces the file whole; the temp file is cleaned up.
	got.Hostname = "new"
	if err := s.SaveConfig(got); err != nil {
		t.Fatal(err)
	}
	if err := RemoveTemps(s.VEDir("101")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial temp file survived RemoveTemps: %v", err)
	}
	again, err := s.LoadConfig("101")
	if err != nil || again.Hostname != "new" {
		t.Fatalf("reload = %+v, %v", again, err)
	}
}

func TestWriteFileAtomicFailureLeavesNoTemp(t *testing.T) {
	for name, write := range map[string]func(string, []byte, os.FileMode) error{
		"WriteFileAtomic": WriteFileAtomic, "ReplaceFile": ReplaceFile,
	} {
		dir := t.TempDir()
		target := filepath.Join(dir, "target")
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(target, "x"), nil, 0o600) // a non-empty dir cannot be renamed over
		if err := write(target, []byte("data"), 0o600); err == nil {
			t.Fatalf("%s: rename over a non-empty directory succeeded", name)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if IsTemp(e.Name()) {
				t.Fatalf("%s: temporary file %s left behind", name, e.Name())
			}
		}
	}
}

func TestReplaceFileReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spec.json")
	for _, data := range []string{"first", "second, longer"} {
		if err := ReplaceFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("after ReplaceFile(%q): %q, %v", data, got, err)
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, want 0600", st.Mode().Perm())
		}
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		data string
		want error
		in   string
	}{
		{"garbage", "not json at all", ErrCorrupt, ""},
		{"truncated", `{"schema":1,"id":"101"`, ErrCorrupt, ""},
		{"no schema", `{"id":"101"}`, ErrCorrupt, "no schema"},
		{"newer schema", `{"schema":99,"id":"101"}`, ErrNewerSchema, "99"},
		{"unknown field", `{"schema":1,"id":"101","colour":"blue"}`, ErrCorrupt, "colour"},
		{"wrong type", `{"schema":1,"id":101}`, ErrCorrupt, ""},
		{"no id", `{"schema":1}`, ErrCorrupt, "no id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.data))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.in) {
				t.Fatalf("err %q does not mention %q", err, tt.in)
			}
		})
	}
}

func TestLoadConfigNamesFileAndKeepsIt(t *testing.T) {
	s := New(t.TempDir())
	s.Init()
	os.Mkdir(s.VEDir("101"), 0o700)
	bad := []byte(`{"schema":1,"id":"101",`)
	os.WriteFile(s.ConfigPath("101"), bad, 0o600)
	_, err := s.LoadConfig("101")
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != s.ConfigPath("101") {
		t.Fatalf("err = %v, want a FileError naming %s", err, s.ConfigPath("101"))
	}
	if !strings.Contains(err.Error(), s.ConfigPath("101")) {
		t.Fatalf("message %q does not name the file", err)
	}
	if data, _ := os.ReadFile(s.ConfigPath("101")); string(data) != string(bad) {
		t.Fatal("a corrupt config was modified by reading it")
	}
}

func TestConfigRoundTrip(t *testing.T) {
	s := New(t.TempDir())
	s.Init()
	c := testConfig("web")
	c.Name, c.Description = "web", "front end"
	if err := s.Reserve(c); err != nil {
		t.Fatal(err)
	}
	if !s.Incomplete("web") {
		t.Fatal("a reserved VE must be marked incomplete")
	}
	if err := s.FinishCreate("web"); err != nil {
		t.Fatal(err)
	}
	if s.Incomplete("web") {
		t.Fatal("FinishCreate left the marker")
	}
	got, err := s.LoadConfig("web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) || got.Schema != SchemaVersion {
		t.Fatalf("round trip: got %+v, want %+v", got, c)
	}
	if fi, _ := os.Stat(s.ConfigPath("web")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v, want 0600", fi.Mode().Perm())
	}
}
