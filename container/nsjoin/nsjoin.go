// Package nsjoin starts a command inside a running VE, for vectl exec and enter. It is a C
// routine that runs from an ELF constructor, before the Go runtime starts, when the binary is
// executed as "vectl __nsjoin ...": it joins the VE's namespaces through a pidfd of the VE's
// init, forks (CLONE_PARENT, so that the command is vectl's own child and in the VE's pid
// namespace), joins a session keyring "_ses.<id>", optionally makes a pty from the VE's devpts,
// sets the resource limits, uid/gid 0, loads a precompiled seccomp program, drops to the VE's
// capabilities, closes every other descriptor and executes the command. That is what
// libcontainer's exec helper does, without starting a second Go runtime and without compiling
// the seccomp profile with libseccomp on every exec (the program is compiled once by
// libcontainer itself, see container/join/seccompcache.go). The package must be linked into vectl
// (main imports it); it has no Go API besides the argument layout.
package nsjoin

/*
#cgo CFLAGS: -Wall -O2 -I${SRCDIR}/../wire
#include "mainargs.h"
extern void vectl_nsjoin(int argc, char **argv, char **envp);
extern void vectl_initwrap(int argc, char **argv, char **envp);
void __attribute__((constructor)) vectl_nsjoin_init(int argc, char **argv, char **envp) {
	vectl_main_args(&argc, &argv, &envp);
	vectl_nsjoin(argc, argv, envp);
	vectl_initwrap(argc, argv, envp);
}
*/
import "C"

// Arg is the argv[1] that turns the binary into the joiner; it takes no other argument.
// Its one descriptor is SyncFD, a SOCK_SEQPACKET socket, and everything else comes as one
// typed message on it (proto.go, and proto.h for the C side):
//
//  1. vectl sends the join request (Request.Marshal) with the pidfd of the VE's init and,
//     when the request says so, the seccomp program (an array of struct sock_filter)
//     attached as SCM_RIGHTS. The environment is the command's environment.
//  2. vectl moves the process into the VE's cgroups, then writes one byte.
//  3. The joiner answers with packets "P<pid>" (the command's host pid), "T" carrying the
//     pty master (with a pty), or "E<message>" on a failure; the socket reaches EOF when the
//     command has been executed (or a failure was reported).
const Arg = "__nsjoin"

// InitWrapArg is the argv[1] of the init wrapper: libcontainer executes it (a sealed copy of
// this binary, passed as a descriptor) as the VE's PID 1 in place of the VE's init, with
// CAP_SYS_ADMIN left to it, so that the VE's seccomp program is loaded from vectl's cache
// instead of being compiled with libseccomp at every boot. Its command line is
//
//	__initwrap MSG -- INIT ARGS...
//
// where MSG is an InitWrap message (proto.go). It loads the program, drops to the capability
// sets of the message, closes its two descriptors and executes INIT.
const InitWrapArg = "__initwrap"
