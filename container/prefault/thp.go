package prefault

// #cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
// #include <stdlib.h>
// #include "thp.h"
import "C"

import (
	"runtime/debug"
	"time"
	"unsafe"
)

// The Go heap in transparent huge pages.
//
// A vectl process takes most of its page faults in its heap: about 190 for vectl --version
// and 500 for a start, before and after main, at 10 to 12 us each on the PVM machine of
// 2026-12-06. A fault in a 2 MiB range advised MADV_HUGEPAGE maps one huge page instead, in
// about 150 us (zeroing included), and the heap of a short process fits in two or three of
// them. thp.c advises the runtime's heap commits from the process's first one (a C
// constructor decides, before the Go runtime starts), where the kernel has at least 64
// whole 2 MiB blocks free, so that no fault waits for compaction. Where THP is "never" the
// advice does nothing; where it is "always" the heap has huge pages anyway.
//
// Huge pages cost memory where a heap range is only partly used: a short process (a
// command, libcontainer's init, a CNI plugin, a background start's monitor before it executes
// the idle loop) gives it back at its end, but the runtime cannot return what it never
// touched inside a huge page. So a process that lives on as a Go program by design (a
// foreground restore or resume, which stays as the VE's monitor, and a foreground start
// with a terminal, or resumed from the idle loop; enter; console) is never advised
// (vectl_thp_stays; a foreground start without a terminal rests in the idle loop once its
// VE runs, as a background monitor does), and any other still running after SettleAfter's delay
// (vectl exec of a long command, stats --interval) calls Settle: no more advice, the advised
// ranges MADV_NOHUGEPAGE (khugepaged does not collapse them again), and the heap's free pages
// returned; an exec session keeps about 3 MB more than unadvised (2026-12-06).

// Settle stops advising huge pages for this process, withdraws the advice given, and, when
// there was some, returns the heap's free memory to the kernel (debug.FreeOSMemory).
func Settle() {
	if settle() > 0 {
		debug.FreeOSMemory()
	}
}

// SettleAfter arranges Settle for when the process has run for d.
func SettleAfter(d time.Duration) { time.AfterFunc(d, Settle) }

// freeBlocks, stays, note, setAdvising and settle call thp.c's functions, for the tests.

func freeBlocks(buddyinfo string) int {
	cs := C.CString(buddyinfo)
	defer C.free(unsafe.Pointer(cs))
	return int(C.vectl_thp_free_blocks(cs))
}

func stays(args []string, tty bool) bool {
	cargs := make([]*C.char, len(args)+1)
	for i, a := range args {
		cargs[i] = C.CString(a)
		defer C.free(unsafe.Pointer(cargs[i]))
	}
	t := 0
	if tty {
		t = 1
	}
	return C.vectl_thp_stays(C.int(len(args)), &cargs[0], C.int(t)) != 0
}

func note(p unsafe.Pointer, n uintptr, prot, flags int) bool {
	return C.vectl_thp_note(p, C.size_t(n), C.int(prot), C.int(flags)) != 0
}

func setAdvising(on bool) {
	v := 0
	if on {
		v = 1
	}
	C.vectl_thp_start(C.int(v))
}

func settle() int { return int(C.vectl_thp_settle()) }
