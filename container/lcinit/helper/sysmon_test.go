package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestSlowSysmon shows that slowSysmon gives the thread sleeping in nanosleep (the runtime's
// sysmon, kept in its sleep loop by a busy goroutine) 1 ms of timer slack and leaves every
// other thread's, the caller's and the main thread's among them, as it was.
func TestSlowSysmon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting another thread's timer slack needs CAP_SYS_NICE (run as root: make check)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var stop atomic.Bool
	defer stop.Store(true)
	go func() { // keeps a P busy, so that sysmon keeps waking every few microseconds
		for !stop.Load() {
		}
	}()
	// Every thread back to its default (an earlier run of this test changed sysmon's).
	reset := func() {
		for tid := range slacks(t) {
			os.WriteFile("/proc/"+tid+"/timerslack_ns", []byte("0"), 0)
		}
	}
	reset()
	defer reset()
	before := slacks(t)
	// slowSysmon looks three times; sysmon, woken from a long sleep by the busy goroutine's
	// start, may be awake at each look: try again (what the init does once).
	after := before
	for i := 0; i < 100 && sameSlacks(before, after); i++ {
		slowSysmon()
		after = slacks(t)
	}
	self := strconv.Itoa(syscall.Gettid())
	changed := ""
	for tid, s := range after {
		if was, ok := before[tid]; !ok || s == was {
			continue // unchanged, or a thread the runtime started meanwhile
		}
		if changed != "" {
			t.Fatalf("threads %s and %s both changed: %v -> %v", changed, tid, before, after)
		}
		changed = tid
	}
	if changed == "" {
		t.Fatalf("no thread's slack changed: %v", after)
	}
	if after[changed] != sysmonSlack || changed == self || changed == strconv.Itoa(os.Getpid()) {
		t.Fatalf("thread %s (caller %s) got slack %s", changed, self, after[changed])
	}
	t.Logf("sysmon thread %s: slack %s -> %s ns", changed, before[changed], after[changed])
}

// slacks is every thread's timer slack in ns (as text), by thread id.
func slacks(t *testing.T) map[string]string {
	t.Helper()
	tids, err := threadIDs()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tid := range tids {
		b, err := os.ReadFile("/proc/" + tid + "/timerslack_ns")
		if err != nil {
			continue // a thread that ended meanwhile
		}
		m[tid] = strings.TrimSpace(string(b))
	}
	return m
}

// sameSlacks reports whether every thread of before has the same slack in after.
func sameSlacks(before, after map[string]string) bool {
	for tid, s := range before {
		if a, ok := after[tid]; ok && a != s {
			return false
		}
	}
	return true
}
