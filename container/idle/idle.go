// Package idle is the resting state of a VE's monitor: a loop in C that runs from an ELF
// constructor, before the Go runtime starts, when the binary is executed as
// "vectl __monitor-idle ...". It relays the VE's console pty to the console log and to
// vectl console clients, and when the VE's init (its child) exits it executes the Go monitor
// again with the init's wait status. An idle monitor therefore costs the few pages the loop
// touches instead of a Go runtime's several MiB. The package must be linked into vectl (main
// imports it); it has no Go API besides the argument layout.
package idle

/*
#cgo CFLAGS: -Wall -O2
extern void vectl_idle(int argc, char **argv, char **envp);
void __attribute__((constructor)) vectl_idle_init(int argc, char **argv, char **envp) {
	vectl_idle(argc, argv, envp);
}
*/
import "C"

// Arg is the argv[1] that turns the binary into the idle loop. Its arguments are:
//
//	__monitor-idle INITPID PTYFD LISTENFD LOGFD LOGPATH LOGMAX CLIENTFDS -- RESUME...
//
// CLIENTFDS is a comma-separated list or "-". When the init has exited the loop executes
// /proc/self/exe with RESUME... --init-status STATUS --client-fds FDS.
const Arg = "__monitor-idle"
