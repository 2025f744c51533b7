// vectl_main_args: the program's arguments and environment, for vectl's ELF constructors.
//
// glibc passes argc, argv and envp to every constructor (an extension); musl, which the
// Makefile links (see "The C library" there), passes nothing. The kernel puts them on the
// initial stack in the System V ABI's layout, argc, then argv's pointers and a NULL, then
// envp's pointers and a NULL, and the C library's environ points at envp there until
// something changes the environment (no constructor of vectl does). So argv ends right below
// environ and argc sits right below argv. A layout that does not check out gives argc 0, and
// every constructor then leaves the process to the Go runtime.
#ifndef VECTL_MAINARGS_H
#define VECTL_MAINARGS_H

#include <stddef.h>
#include <stdint.h>

extern char **environ;

static inline void vectl_main_args(int *argc, char ***argv, char ***envp)
{
#ifdef __GLIBC__
	(void)argc, (void)argv, (void)envp;
#else
	char **env = environ;
	*argc = 0;
	*argv = NULL;
	*envp = env;
	if (env == NULL || env[-1] != NULL)
		return;
	// Walk down from argv's last pointer: argc is the first slot whose value is the number
	// of pointers passed. Arguments are pointers into the stack, far above any count the
	// kernel allows (ARG_MAX), so neither can pass for the other, and the walk never goes
	// below argc.
	char **p = env - 2;
	uintptr_t n = 0;
	while ((uintptr_t)*p != n) {
		if ((uintptr_t)*p < (uintptr_t)1 << 24 || n >= (uintptr_t)1 << 24)
			return;
		p--;
		n++;
	}
	*argc = (int)n;
	*argv = p + 1;
#endif
}

#endif
