//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
)

// hugePageAdvice returns, by start address, the mappings of process pid whose VmFlags have
// hg (advised MADV_HUGEPAGE) or nh (MADV_NOHUGEPAGE, which the Go runtime gives some of its
// own mappings) and which of the two.
func hugePageAdvice(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	advice := map[string]string{}
	start := ""
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			for _, fl := range strings.Fields(flags) {
				if fl == "hg" || fl == "nh" {
					advice[start] = fl
				}
			}
		} else if r, _, _ := strings.Cut(line, " "); strings.Contains(r, "-") && !strings.HasSuffix(r, ":") {
			start, _, _ = strings.Cut(r, "-")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return advice
}

// advised returns the start addresses advice gives hg.
func advised(advice map[string]string) []string {
	var hg []string
	for start, a := range advice {
		if a == "hg" {
			hg = append(hg, start)
		}
	}
	return hg
}

// freeHugeBlocks counts the free 2 MiB blocks /proc/buddyinfo lists (a block of order 10 is
// two), as vectl's programs decide whether to advise huge pages for their heap.
func freeHugeBlocks(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/buddyinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		_, counts, ok := strings.Cut(line, "zone")
		if !ok {
			continue
		}
		for order, c := range strings.Fields(counts)[1:] { // after the zone's name
			v, err := strconv.Atoi(c)
			if err != nil {
				t.Fatalf("/proc/buddyinfo: %q", line)
			}
			if order >= 9 {
				n += v << (order - 9)
			}
		}
	}
	return n
}

// TestHeapHugePages (issue 22): a vectl command's Go heap is advised MADV_HUGEPAGE from the
// runtime's first commit where the kernel has at least 64 free 2 MiB blocks (and not where it
// has fewer), a command still running after two seconds withdraws the advice (MADV_NOHUGEPAGE),
// and a foreground monitor with a terminal, which lives as long as its VE as a Go program, is
// never advised; one without (a systemd unit's) rests in the idle loop, which has no Go heap.
func TestHeapHugePages(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id, fg := uniqueID(t), uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("create", fg, "--ostemplate", tmpl)
	e.must("start", id)

	advises := freeHugeBlocks(t) >= 64
	t.Logf("free 2 MiB blocks: %d (advice expected: %v)", freeHugeBlocks(t), advises)
	c := e.cmd("exec", id, "sleep", "4")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	time.Sleep(time.Second)
	hg := advised(hugePageAdvice(t, c.Process.Pid))
	if (len(hg) > 0) != advises {
		t.Errorf("vectl exec after 1 s: mappings advised MADV_HUGEPAGE at %v, want advice %v", hg, advises)
	}
	time.Sleep(2 * time.Second)
	after := hugePageAdvice(t, c.Process.Pid)
	if now := advised(after); len(now) != 0 {
		t.Errorf("vectl exec after 3 s: mappings advised MADV_HUGEPAGE at %v, want none", now)
	}
	for _, start := range hg {
		if after[start] != "nh" {
			t.Errorf("vectl exec after 3 s: the mapping at %s advised before has %q, want nh", start, after[start])
		}
	}
	if err := c.Wait(); err != nil {
		t.Fatalf("vectl exec: %v", err)
	}

	for _, terminal := range []bool{false, true} {
		f := e.cmd("start", "--foreground", fg)
		if terminal {
			pty, slave, err := console.NewPty()
			if err != nil {
				t.Fatal(err)
			}
			defer pty.Close()
			in, err := os.OpenFile(slave, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			f.Stdin = in
			go io.Copy(io.Discard, pty) // the VE's console, echoed to the terminal
		}
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the foreground VE to run", func() bool {
			return e.exec(fg, "test", "-e", "/run/vectl-booted").code == 0
		})
		if terminal {
			time.Sleep(1500 * time.Millisecond) // past the hand-over of one without a terminal
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", f.Process.Pid))
			if strings.TrimSpace(string(comm)) != "vectl" {
				t.Errorf("foreground monitor with a terminal runs %q, want vectl (the Go monitor)", comm)
			}
		} else {
			wantResting(t, f.Process.Pid)
		}
		if hg := advised(hugePageAdvice(t, f.Process.Pid)); len(hg) != 0 {
			t.Errorf("foreground monitor (terminal %v): mappings advised MADV_HUGEPAGE at %v, want none", terminal, hg)
		}
		f.Process.Signal(syscall.SIGTERM)
		if err := f.Wait(); err != nil {
			t.Errorf("foreground vectl (terminal %v) after SIGTERM: %v", terminal, err)
		}
	}
}
