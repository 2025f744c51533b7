package idmap

/*
#include <string.h>
#include <unistd.h>

// The holder of a new user namespace (Pin) does nothing but wait for its stdin to close,
// so it runs from an ELF constructor, before the Go runtime starts: a start pays for an
// exec, not for a second Go runtime.
static const char vectl_hold_arg[] = "__userns-hold";

void __attribute__((constructor)) vectl_userns_hold(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc != 2 || strcmp(argv[1], vectl_hold_arg) != 0)
		return;
	char b;
	while (read(0, &b, 1) > 0)
		;
	_exit(0);
}

static const char *hold_arg(void) { return vectl_hold_arg; }
*/
import "C"

// HoldArg is the argv[1] of the short-lived process whose namespaces Pin keeps; the C
// constructor above handles it.
const HoldArg = "__userns-hold"

// cHoldArg is the C side's spelling of HoldArg, for the test that they agree.
func cHoldArg() string { return C.GoString(C.hold_arg()) }
