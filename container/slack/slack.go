// Package slack gives the Go runtime's monitor thread (sysmon) a timer slack of 1 ms in
// vectl's programs, which links slack.c's pthread_create wrapper into them (the Makefile
// links them with -Wl,--wrap=pthread_create; a plain go build, or go test, leaves threads as
// they are).
//
// sysmon sleeps 20 us at a time while any goroutine runs or sits in a system call, and the
// kernel wakes it within the thread's slack of that (50 us by default): some 200 wake-ups
// of a few to 30 us of CPU each (a timer, a context switch, often a CPU out of its idle
// state; VM exits on a virtual machine) in a run to exit of 35 ms, and at each it may hand a
// P held by a system call over to another thread, which wakes that thread too. With 1 ms of
// slack it wakes about once a millisecond (run to exit: 54 to 90 nanosleep calls instead of
// about 200, 2026-12-07). Nothing of vectl's waits for sysmon: a goroutine that a system
// call keeps from its P is handed over a millisecond later at most, and an idle process's
// sysmon sleeps up to 10 ms anyway.
//
// Only sysmon's thread gets the slack: a thread inherits its creator's slack, and that is
// kept across execve, so a program that vectl executes (the VE's init, exec's command, a CNI
// plugin, criu) starts with the slack vectl started with.
package slack

// #cgo CFLAGS: -Wall -O2
// #include "slack.h"
import "C"

// SysmonSlackNS is the timer slack sysmon starts with, in nanoseconds.
const SysmonSlackNS = C.SYSMON_SLACK_NS
