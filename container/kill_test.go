package container

import (
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/join"
)

// TestWaitPidfds: the stop's wait on killed processes returns as soon as the last of them
// has exited, not after a fixed pause, and a process that lives on is waited for only up to
// the timeout. waitExited returns at once for a pid whose start time is not the one named.
func TestWaitPidfds(t *testing.T) {
	spawn := func() (*exec.Cmd, int) {
		t.Helper()
		c := exec.Command("sleep", "30")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.PidfdOpen(c.Process.Pid, 0)
		if err != nil {
			c.Process.Kill()
			t.Fatal(err)
		}
		return c, fd
	}
	a, afd := spawn()
	b, bfd := spawn()
	defer unix.Close(afd)
	defer unix.Close(bfd)
	defer a.Process.Kill()
	defer b.Process.Kill()

	t0 := time.Now()
	waitPidfds([]int{afd, bfd}, 150*time.Millisecond)
	if d := time.Since(t0); d < 140*time.Millisecond {
		t.Fatalf("waitPidfds returned after %v while both processes live, want the 150 ms timeout", d)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		unix.PidfdSendSignal(afd, unix.SIGKILL, nil, 0)
		time.Sleep(20 * time.Millisecond)
		unix.PidfdSendSignal(bfd, unix.SIGKILL, nil, 0)
	}()
	t0 = time.Now()
	waitPidfds([]int{afd, bfd}, 10*time.Second)
	if d := time.Since(t0); d < 35*time.Millisecond || d > 5*time.Second {
		t.Fatalf("waitPidfds returned after %v, want it right after the second kill (40 ms)", d)
	}
	a.Wait()
	b.Wait()

	c, cfd := spawn()
	defer unix.Close(cfd)
	defer c.Process.Kill()
	start, err := join.StartTime(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	waitExited(c.Process.Pid, start+1, 10*time.Second)
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("waitExited waited %v for a process that is not the one named", d)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		unix.PidfdSendSignal(cfd, unix.SIGKILL, nil, 0)
	}()
	t0 = time.Now()
	waitExited(c.Process.Pid, start, 10*time.Second)
	if d := time.Since(t0); d < 15*time.Millisecond || d > 5*time.Second {
		t.Fatalf("waitExited returned after %v, want it right after the kill (20 ms)", d)
	}
	c.Wait()
}
