// criu's wrapper for the restore of a user-namespace VE (see criuwrap.go).
//
// libcontainer runs "criu swrk 3" through PATH. For a VE with its own user namespace the
// restoring monitor puts a directory first in PATH whose "criu" is a link to vectl's binary,
// and names a parameter file in VECTL_CRIU_WRAP. This constructor runs before the Go runtime
// starts: it takes criu's place, enters the VE's user and network namespaces as the VE's
// root, makes the mount, UTS, cgroup (and time) namespaces criu run unprivileged expects of
// its caller, and executes the real criu. What failed goes to the wrapper's log.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "criuwrap.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static void wrap_fail(const char *what) {
	int err = errno;
	fprintf(stderr, "vectl: criu wrapper: %s: %s\n", what, strerror(err));
	_exit(1);
}

// wrap_params reads the parameter file: VECTL_CRIU_WRAP_FIELDS strings, each ended by a NUL.
static int wrap_params(const char *path, char *buf, size_t size, char **f) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return -1;
	}
	size_t n = 0;
	while (n < size - 1) {
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r <= 0) {
			break;
		}
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	int k = 0;
	for (size_t i = 0; i < n && k < VECTL_CRIU_WRAP_FIELDS; k++) {
		f[k] = buf + i;
		i += strlen(buf + i) + 1;
	}
	if (k != VECTL_CRIU_WRAP_FIELDS) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

void vectl_criu_wrap(int argc, char **argv) {
	if (argc < 1) {
		return;
	}
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	const char *path = getenv(VECTL_CRIU_WRAP_ENV);
	if (strcmp(base, "criu") != 0 || path == NULL) {
		return;
	}
	static char buf[16384];
	char *f[VECTL_CRIU_WRAP_FIELDS];
	if (wrap_params(path, buf, sizeof(buf), f) < 0) {
		wrap_fail("read its parameters");
	}
	const char *criu = f[0], *log = f[1], *userns = f[2], *netns = f[3], *host = f[4];
	const char *mono = f[5], *boot = f[6];
	// Neither criu nor what it runs (tar, iptables) is a wrapper.
	unsetenv(VECTL_CRIU_WRAP_ENV);
	// libcontainer first asks criu for its version (go-criu, whose socket is not fd 3): no
	// namespaces needed for that.
	if (argc < 3 || strcmp(argv[1], "swrk") != 0 || strcmp(argv[2], "3") != 0) {
		execv(criu, argv);
		wrap_fail(criu);
	}
	// What fails from here (and criu's own stderr) is kept next to its log. dup2, not close
	// and open: libcontainer reads the started criu's /proc/PID/fd/0-2 at once.
	int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (lfd >= 0) {
		dup2(lfd, 2);
		close(lfd);
	}
	// The cgroup namespace made below must be rooted at the VE's cgroups, where libcontainer
	// puts this process (creating them) right after starting it, in every hierarchy, or a
	// restored task is left with a namespace rooted at the monitor's cgroup there, which the
	// next dump refuses. libcontainer sends its request only after that: wait for it to be
	// there on the socket, without reading it.
	struct pollfd p = {.fd = 3, .events = POLLIN};
	int r;
	do {
		r = poll(&p, 1, 30000);
	} while (r < 0 && errno == EINTR);
	if (r == 0) {
		fprintf(stderr, "vectl: no request from libcontainer\n");
		_exit(1);
	}
	if (r < 0) {
		wrap_fail("wait for libcontainer's request");
	}
	int nfd = open(netns, O_RDONLY | O_CLOEXEC);
	if (nfd < 0) {
		wrap_fail(netns);
	}
	int ufd = open(userns, O_RDONLY | O_CLOEXEC);
	if (ufd < 0) {
		wrap_fail(userns);
	}
	// The network namespace first, while this is host root; then the user namespace, as
	// its root (a setgroups the namespace denies is not needed).
	if (setns(nfd, CLONE_NEWNET) < 0) {
		wrap_fail("enter the network namespace");
	}
	if (setns(ufd, CLONE_NEWUSER) < 0) {
		wrap_fail("enter the user namespace");
	}
	close(nfd);
	close(ufd);
	if (setgroups(0, NULL) < 0 && errno != EPERM) {
		wrap_fail("setgroups");
	}
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
		wrap_fail("become the VE's root");
	}
	// The change of user made this process undumpable, and its /proc/self host root's:
	// timens_offsets below could not be opened. An exec would undo it (nothing of the VE
	// runs yet to reach this process).
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0) {
		wrap_fail("prctl");
	}
	int flags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWCGROUP;
	if (*mono != '\0') {
		// criu run unprivileged leaves the time namespace to its caller: one whose clocks
		// go on from the dumped VE's. This process enters it at the exec below.
		flags |= CLONE_NEWTIME;
	}
	if (unshare(flags) < 0) {
		wrap_fail("unshare");
	}
	if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		wrap_fail("make the mount namespace private");
	}
	if (*mono != '\0') {
		char off[128];
		int n = snprintf(off, sizeof(off), "%d %s 0\n%d %s 0\n", 1 /* CLOCK_MONOTONIC */, mono,
		                 7 /* CLOCK_BOOTTIME */, boot);
		int tfd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (tfd < 0 || n <= 0 || n >= (int)sizeof(off) || write(tfd, off, (size_t)n) != n) {
			wrap_fail("set the time namespace's offsets");
		}
		close(tfd);
	}
	if (sethostname(host, strlen(host)) < 0) {
		wrap_fail("sethostname");
	}
	execv(criu, argv);
	wrap_fail(criu);
}
