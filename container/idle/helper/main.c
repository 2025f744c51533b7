// vectl-idle: the idle loop of package idle as a program of its own, and vectl's C routines
// that run where a VE's processes could otherwise reach vectl's own binary: the init wrapper
// and the exec joiner of package nsjoin. `make` builds it (static, from idle.c, views.c,
// layout.c and nsjoin.c) into container/idle/bin, vectl embeds it and extracts it once per
// build. A resting monitor executes it instead of vectl: the loop then maps the pages of this
// small binary rather than those of vectl's 20 MB one (the kernel maps a page cache folio of
// up to 2 MiB whole, so a loop in vectl's binary kept about 4.8 MiB of it resident); it
// resumes the Go monitor through the descriptor of vectl's binary named in the hand-over. A
// VE's init wrapper and exec's joiner run as a sealed copy of it (package join) instead of a
// sealed copy of vectl, which is a 20 MB binary to map and initialise for a few system calls.
// Run by anything else it does nothing.
#include <stdio.h>

void vectl_idle(int argc, char **argv, char **envp);
void vectl_initwrap(int argc, char **argv, char **envp);
void vectl_nsjoin(int argc, char **argv, char **envp);

int main(int argc, char **argv, char **envp)
{
	vectl_initwrap(argc, argv, envp);
	vectl_nsjoin(argc, argv, envp);
	vectl_idle(argc, argv, envp);
	fputs("vectl-idle: vectl's monitor runs this, nothing else\n", stderr);
	return 2;
}
