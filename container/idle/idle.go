// Package idle is the console of a VE's monitor: the one console relay and console log
// writer of vectl, in C (idle.c), used by the Go monitor through Relay and the Log functions,
// and the resting state of a background monitor built on them: a loop that runs from an ELF
// constructor, before the Go runtime starts, when the binary is executed as
// "vectl __monitor-idle MESSAGE". The loop relays the VE's console pty to the console log and
// to vectl console clients, and when the VE's init (its child) exits it executes the Go
// monitor again with the init's wait status. An idle monitor therefore costs the few pages
// the loop touches instead of a Go runtime's several MiB. The package must be linked into
// vectl (main imports it). It must not import other vectl packages but container/wire and
// container/helperbin.
package idle

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
#include <stdlib.h>
#include "idle.h"
#include "mainargs.h"
#include "views.h"
extern void vectl_idle(int argc, char **argv, char **envp);
void __attribute__((constructor)) vectl_idle_init(int argc, char **argv, char **envp) {
	vectl_main_args(&argc, &argv, &envp);
	vectl_idle(argc, argv, envp);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// Arg is the argv[1] that turns the binary into the idle loop; argv[2] is the Handover
// message (proto.go), and what follows is for ps only. When the init has exited the loop
// executes Handover.ResumeArgv followed by ResumeFlag, the Resume message and the VE's id.
const Arg = "__monitor-idle"

// LogOpen makes fd, open for appending at path, this process's console log, rotated once to
// path.1 when it would grow past max bytes. The log owns fd from now on (see LogFD).
func LogOpen(fd int, path string, max int64) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	C.vectl_log_open(C.int(fd), cpath, C.long(max))
}

// LogWrite appends to the console log, without carriage returns, rotating it as needed. It
// is safe while a relay runs.
func LogWrite(p []byte) {
	if len(p) == 0 {
		return
	}
	C.vectl_log_write((*C.char)(unsafe.Pointer(&p[0])), C.size_t(len(p)))
}

// LogFD is the console log's current descriptor (a rotation replaces it), or -1.
func LogFD() int { return int(C.vectl_log_fd()) }

// RenderViews writes a VE's views once (see Relay.Views), before any relay watches them.
func RenderViews(spec string) error {
	cs := C.CString(spec)
	defer C.free(unsafe.Pointer(cs))
	var v C.struct_views
	if C.vectl_views_open(&v, cs, 0) < 0 {
		return fmt.Errorf("the VE's /proc views in %s: cannot write them", strings.SplitN(spec, "\n", 2)[0])
	}
	C.vectl_views_close(&v)
	return nil
}

// LogClose closes the console log.
func LogClose() { C.vectl_log_close() }

// Relay is what one console relay works with. Descriptors of -1 are absent.
type Relay struct {
	Pty     int   // the console pty master
	Listen  int   // the console socket's listener
	Clients []int // connected vectl console clients; Run updates it
	TermIn  int   // the foreground terminal, or -1
	TermOut int
	Stop    int // Run returns once this turns readable
	Load    Load
	// Views is the VE's /proc and /sys views,
	// "DIR\nMEMCG\nCPUCG\nCPUSETCG\nCPUACCTCG\nBLKIOCG\nLOADAVG" (views.h): the files meminfo,
	// cpuinfo, cpus, loadavg, stat, swaps and diskstats in DIR are rendered from the VE's
	// cgroups and load average file whenever something opens them. Empty: none.
	Views string
}

// Run relays the console (C's vectl_relay, on a thread of its own) until r.Stop turns
// readable, then drains the console into the log. r.Clients holds the clients still
// connected afterwards.
func (r *Relay) Run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var c C.struct_vectl_relay
	c.pty, c.lfd, c.term_in, c.term_out, c.stopfd = C.int(r.Pty), C.int(r.Listen), C.int(r.TermIn),
		C.int(r.TermOut), C.int(r.Stop)
	c.sigfd = -1
	for i, fd := range r.Clients {
		if i < MaxClients {
			c.clients[i] = C.int(fd)
			c.nclients++
		}
	}
	if r.Load.Tasks != "" && r.Load.Out != "" {
		c.load_tasks, c.load_out = C.CString(r.Load.Tasks), C.CString(r.Load.Out)
		defer C.free(unsafe.Pointer(c.load_tasks))
		defer C.free(unsafe.Pointer(c.load_out))
	}
	if r.Views != "" {
		c.views = C.CString(r.Views)
		defer C.free(unsafe.Pointer(c.views))
	}
	C.vectl_relay(&c)
	r.Clients = r.Clients[:0]
	for i := 0; i < int(c.nclients); i++ {
		r.Clients = append(r.Clients, int(c.clients[i]))
	}
}

// UseCloserProgram makes this process's views' closer (spawned when a Go monitor's relay
// closes the views) run path, the idle loop's program (HelperPath), instead of this
// process's own, larger program. Later calls change nothing.
func UseCloserProgram(path string) {
	closerOnce.Do(func() { C.vectl_views_closer_program(C.CString(path)) }) // kept for the process's life
}

var closerOnce sync.Once

// stopInProgress is the idle loop's check of a stop marker (Handover.StopMark), for tests:
// the pid it names when that process is alive, else 0.
func stopInProgress(path string) int {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return int(C.vectl_stop_in_progress(cpath))
}

// GracePeriodsExpedited tells whether this kernel expedites RCU and SRCU grace periods
// (/sys/kernel/rcu_expedited 1, rcu_normal 0): a wait for one then takes a fraction of a
// millisecond, and what vectl does to keep such waits off its critical paths (the views'
// closer, the cgroup attach warm-up) costs more than it saves. The idle loop asks the same
// (vectl_srcu_expedited) before it closes the views' fanotify group.
func GracePeriodsExpedited() bool { return srcuExpedited("/sys/kernel") }

// srcuExpedited is vectl_srcu_expedited with the directory of the two files (/sys/kernel;
// another for tests).
func srcuExpedited(dir string) bool {
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	return C.vectl_srcu_expedited(cdir) != 0
}
