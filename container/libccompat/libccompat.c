// What a C library other than glibc must add for vectl's static link (the Makefile links
// musl, see "The C library" in the Makefile): Debian's libseccomp.a is compiled by glibc's
// compiler with _FORTIFY_SOURCE, so its PFC export (seccomp_export_pfc, which vectl never
// calls) refers to glibc's checked fprintf. Under glibc this file is empty.
#include <stdio.h>

#ifndef __GLIBC__
#include <stdarg.h>

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...);

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...)
{
	(void)flag;
	va_list ap;
	va_start(ap, fmt);
	int n = vfprintf(f, fmt, ap);
	va_end(ap);
	return n;
}
#endif
