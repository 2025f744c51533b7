package main

import (
	"bytes"
	"os"
)

// sysmonSlack is the timer slack given to the Go runtime's sysmon thread: 1 ms.
const sysmonSlack = "1000000"

// slowSysmon gives the Go runtime's monitor thread (sysmon) a timer slack of 1 ms. sysmon
// sleeps 20 us at a time while the process is busy, which the kernel rounds up by the
// thread's slack (50 us by default): about 160 wake-ups of ~10 us of CPU each during one
// init on the machine of 2026-12-05, 1.5 ms of the init's ~25. With 1 ms of slack it wakes
// about once a millisecond. Nothing the init needs waits for sysmon: libcontainer's init is
// one goroutine on a locked thread.
//
// Only sysmon's thread gets the slack, never the main thread, which executes the VE's init:
// slack is inherited through fork and kept across execve. Threads sysmon starts inherit it;
// none of them executes anything. sysmon is the thread sleeping in nanosleep(2) (the
// runtime's usleep); one that is not found (it was awake at each look) keeps its slack.
// Writing another thread's timerslack_ns needs CAP_SYS_NICE in its user namespace, which
// the init has until libcontainer drops its capabilities; without it nothing changes.
func slowSysmon() {
	tids, err := threadIDs()
	if err != nil {
		return
	}
	for try := 0; try < 3; try++ {
		for _, tid := range tids {
			// A task's wchan names the kernel function it sleeps in (hrtimer_nanosleep).
			// Its syscall file would give the call's number, but the init is not dumpable,
			// which makes that file host root's.
			if b, err := os.ReadFile("/proc/self/task/" + tid + "/wchan"); err == nil && bytes.Contains(b, []byte("nanosleep")) {
				// /proc/TID (the procfs's own pid namespace, as the listing's), because
				// timerslack_ns is not among a task's files under task/.
				_ = os.WriteFile("/proc/"+tid+"/timerslack_ns", []byte(sysmonSlack), 0)
				return
			}
		}
	}
}

// threadIDs lists this process's threads (their ids in /proc's pid namespace).
func threadIDs() ([]string, error) {
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}
