// vectl's command line as its C constructors read it, before the Go runtime starts (they get
// argv from mainargs.h). Their guesses only have to be safe, not exact: each caller says which
// way an unclear line goes.
#ifndef VECTL_CMDLINE_H
#define VECTL_CMDLINE_H

#include <string.h>

// vectl_cmdline_base: argv[0]'s last element ("vectl", or "vzctl" for the vzctl personality).
static inline const char *vectl_cmdline_base(const char *argv0)
{
	const char *base = strrchr(argv0, '/');
	return base ? base + 1 : argv0;
}

// vectl_cmdline_command: the index of the command in argv (argc when there is none), after
// the global options. Each of vectl's takes a value (--root DIR, or --root=DIR); with valued
// 0 none does (vzctl's --quiet, --verbose).
static inline int vectl_cmdline_command(int argc, char **argv, int valued)
{
	int i = 1;
	while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0) {
		i += valued && !strchr(argv[i], '=') ? 2 : 1;
	}
	return i < argc ? i : argc;
}

// vectl_cmdline_any: whether the command's arguments from argv[from] on have an option that
// may be one of names (a NULL-terminated list of long names): one whose name, up to any "=",
// begins one of them (so --fore and -h count for foreground and help), or a cluster of short
// options holding one of the letters in shorts (-Fx for "F"; NULL for none). A "--" counts as a match:
// what follows it cannot be told apart from options.
static inline int vectl_cmdline_any(int argc, char **argv, int from, const char *const *names, const char *shorts)
{
	for (int i = from; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || a[1] == '\0') {
			continue;
		}
		if (strcmp(a, "--") == 0) {
			return 1;
		}
		const char *name = a + (a[1] == '-' ? 2 : 1);
		size_t n = strcspn(name, "=");
		if (n == 0) {
			continue;
		}
		for (const char *const *l = names; *l != NULL; l++) {
			if (strncmp(name, *l, n) == 0) {
				return 1;
			}
		}
		for (const char *s = shorts; a[1] != '-' && s != NULL && *s != '\0'; s++) {
			if (memchr(name, *s, n) != NULL) {
				return 1;
			}
		}
	}
	return 0;
}

#endif
