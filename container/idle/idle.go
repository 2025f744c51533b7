// Package idle is the resting state of a VE's monitor: a loop in C that runs from an ELF
// constructor, before the Go runtime starts, when the binary is executed as
// "vectl __monitor-idle MESSAGE". It relays the VE's console pty to the console log and to
// vectl console clients, and when the VE's init (its child) exits it executes the Go monitor
// again with the init's wait status. An idle monitor therefore costs the few pages the loop
// touches instead of a Go runtime's several MiB. The package must be linked into vectl (main
// imports it); its Go API is the two messages of proto.go.
package idle

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
extern void vectl_idle(int argc, char **argv, char **envp);
void __attribute__((constructor)) vectl_idle_init(int argc, char **argv, char **envp) {
	vectl_idle(argc, argv, envp);
}
*/
import "C"

// Arg is the argv[1] that turns the binary into the idle loop; argv[2] is the Handover
// message (proto.go), and what follows is for ps only. When the init has exited the loop
// executes Handover.ResumeArgv followed by ResumeFlag, the Resume message and the VE's id.
const Arg = "__monitor-idle"
