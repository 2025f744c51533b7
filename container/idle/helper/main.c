// vectl-idle: the idle loop of package idle as a program of its own. `make` builds it
// (static, from idle.c and views.c) into container/idle/bin, vectl embeds it, extracts it
// once per boot and executes it instead of itself when a monitor rests: the loop then maps
// the pages of this small binary rather than those of vectl's 20 MB one (the kernel maps a
// page cache folio of up to 2 MiB whole, so a loop in vectl's binary kept about 4.8 MiB of
// it resident). It resumes the Go monitor through the descriptor of vectl's binary named in
// the hand-over. Run by anything else it does nothing.
#include <stdio.h>

void vectl_idle(int argc, char **argv, char **envp);

int main(int argc, char **argv, char **envp)
{
	vectl_idle(argc, argv, envp);
	fputs("vectl-idle: vectl's monitor runs this, nothing else\n", stderr);
	return 2;
}
