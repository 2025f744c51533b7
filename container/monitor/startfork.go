package monitor

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
#include <stdlib.h>
#include "mainargs.h"
#include "startfork.h"
void __attribute__((constructor)) vectl_start_fork_init(int argc, char **argv, char **envp) {
	vectl_main_args(&argc, &argv, &envp);
	vectl_start_fork(argc, argv, envp);
}
*/
import "C"

import (
	"fmt"
	"os/signal"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Forked reports whether this process is "vectl start" or "vectl restore" running under the
// C parent that a constructor forked off before the Go runtime started (startfork.c): it may
// then become the VE's monitor itself instead of spawning one, and Detach lets the caller go
// on.
func Forked() bool { return C.vectl_start_report_fd >= 0 }

// Detach ends this process's part as the command the caller ran, once the VE's init runs:
// the monitor's signal dispositions (SIGHUP, SIGINT, SIGTERM and SIGPIPE ignored; they
// survive the exec into the idle loop), standard input from /dev/null, output to the console
// log at logPath (where a spawned monitor's goes; /dev/null if it cannot be opened), the root
// directory as working directory, a session of its own, and the report to the waiting
// parent, which then exits with status (0 unless the command failed after the VE came up).
// The report is made even when something before it failed.
func Detach(logPath string, status int) error {
	if !Forked() {
		return fmt.Errorf("detach: not a forked start")
	}
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
	logFD := -1
	log, err := AppendLog(logPath)
	if err == nil {
		defer log.Close()
		logFD = int(log.Fd())
	}
	if _, derr := C.vectl_start_detach(C.int(logFD), C.uchar(status)); derr != nil && err == nil {
		err = fmt.Errorf("detach: %w", derr)
	}
	return err
}

// wantsFork is the constructor's guess, for tests: whether args (and env) would fork.
func wantsFork(args, env []string) bool {
	cargs := cStrings(args)
	defer freeStrings(cargs)
	cenv := cStrings(env)
	defer freeStrings(cenv)
	return C.vectl_start_wants_fork(C.int(len(args)), &cargs[0], &cenv[0]) != 0
}

func cStrings(s []string) []*C.char {
	out := make([]*C.char, len(s)+1)
	for i, v := range s {
		out[i] = C.CString(v)
	}
	return out
}

func freeStrings(s []*C.char) {
	for _, p := range s {
		if p != nil {
			C.free(unsafe.Pointer(p))
		}
	}
}
