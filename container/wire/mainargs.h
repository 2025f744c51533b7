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
	char **p = env - 2; // argv[argc-1], or argc itself when there are no arguments
	long n = 0;
	while ((uintptr_t)*p > 0xffff && n < 1 << 20) {
		p--;
		n++;
	}
	if ((long)(uintptr_t)*p != n)
		return;
	*argc = (int)n;
	*argv = p + 1;
#endif
}

#endif
