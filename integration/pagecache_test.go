//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vectl/vectl/container/pagecache"
)

// rollupKB returns the kB figures of /proc/PID/smaps_rollup by name.
func rollupKB(t testing.TB, pid int) map[string]int64 {
	t.Helper()
	out, err := readRollup(pid)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readRollup is rollupKB's reading, its error returned.
func readRollup(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(rest, "kB")), 10, 64); ok && err == nil {
			out[name] = n
		}
	}
	return out, nil
}

// TestLayOutOnStart: a VE's monitor, background or foreground, that finds vectl's binary in
// the page cache in small folios (here a copy written 4 KiB at a time, as an execution
// faulting a program in leaves it too) has the idle loop program's layout helper read it
// again in 2 MiB folios, once a minute at most (RUN/layout). Seen from a vectl exec run from
// that binary: before the start it maps none of its binary through 2 MiB page-table entries,
// after it most.
func TestLayOutOnStart(t *testing.T) {
	if thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); bytes.Contains(thp, []byte("[never]")) {
		t.Skip("transparent huge pages are off on this host: no 2 MiB folios to lay out")
	}
	e := newEnv(t)
	if !pagecache.LargeFolios(e.dir) {
		t.Skipf("the file system of %s keeps no large page-cache folios on this kernel (ext4 from Linux 6.16 and xfs from 5.18 do): nothing to lay out", e.dir)
	}
	tmpl := e.importBusybox()
	id, run := uniqueID(t), uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("create", run, "--ostemplate", tmpl)
	e.setInit(run, "#!/bin/true\n")
	e.must("start", id) // vectlBin's own monitor may lay vectlBin out and mark RUN/layout
	stamp := filepath.Join(e.run, "layout")

	// copy makes a fresh copy of vectl written 4 KiB at a time and written back (cp may
	// copy in the kernel, whose folio sizes are its own).
	copy := func(name string) string {
		t.Helper()
		bin := filepath.Join(e.dir, name)
		out, err := exec.Command("dd", "if="+vectlBin, "of="+bin, "bs=4k", "conv=fsync", "status=none").CombinedOutput()
		if err == nil {
			err = os.Chmod(bin, 0o755)
		}
		if err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
		return bin
	}
	// mapped runs vectl exec from bin and returns, once it waits for its program, the kB of
	// its binary it maps through 2 MiB entries and the file-backed kB it has resident.
	mapped := func(bin string) (int64, int64) {
		t.Helper()
		c := exec.Command(bin, e.args("exec", id, "sleep", "2")...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Wait()
		time.Sleep(time.Second)
		r := rollupKB(t, c.Process.Pid)
		return r["FilePmdMapped"], r["Rss"] - r["Anonymous"]
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"start", []string{"start", id}},
		{"start --foreground", []string{"start", "--foreground", run}}, // init #!/bin/true: exit 2
	} {
		bin := copy("vectl-" + strings.ReplaceAll(tc.name, " ", ""))
		os.Remove(stamp)
		if pmd, file := mapped(bin); pmd != 0 {
			t.Fatalf("%s: before, vectl exec from a copy written 4 KiB at a time maps %d of %d kB through 2 MiB entries, want 0",
				tc.name, pmd, file)
		}
		if tc.args[1] != "--foreground" {
			e.must("stop", "--fast", id)
		}
		out, err := exec.Command(bin, e.args(tc.args...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 2 && tc.args[1] == "--foreground") {
			t.Fatalf("%s from the copy: %v\n%s", tc.name, err, out)
		}
		// The helper starts (it waits 200 ms before its work) and ends; nothing runs from
		// bin meanwhile: pages a process maps stay as they are.
		for _, running := range []bool{true, false} {
			deadline := time.Now().Add(20 * time.Second)
			for layoutRunning(t, bin) != running {
				if time.Now().After(deadline) {
					t.Fatalf("%s: 20 s on, the layout helper of %s is running: %v, want %v", tc.name, bin, !running, running)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if _, err := os.Stat(stamp); err != nil {
			t.Fatalf("%s: the monitor did not mark %s: %v", tc.name, stamp, err)
		}
		pmd, file := mapped(bin)
		if pmd*2 < file {
			t.Fatalf("%s: after, vectl exec maps %d of %d kB of its binary through 2 MiB entries, want at least half",
				tc.name, pmd, file)
		}
		t.Logf("%s: after, %d of %d kB through 2 MiB entries", tc.name, pmd, file)
	}
}

// layoutRunning reports whether a layout helper (vectl-layout __layout ...) of bin runs.
func layoutRunning(t *testing.T, bin string) bool {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p) // a process gone meanwhile reads empty
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) > 2 && argv[1] == "__layout" && argv[2] == bin {
			return true
		}
	}
	return false
}
