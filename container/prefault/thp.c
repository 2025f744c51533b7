// The Go heap in transparent huge pages (see thp.go).
//
// The Go runtime of a cgo program maps memory through the C library's mmap (runtime/cgo's
// x_cgo_mmap), and vectl, vectl-init and the CNI plugins are linked with -Wl,--wrap=mmap
// (the Makefile): that call lands in __wrap_mmap below, which maps as asked and, for the
// runtime's commits of heap (anonymous, read-write, MAP_FIXED over its reservation, 2 MiB or
// more; the runtime commits 4 MiB at a time), advises MADV_HUGEPAGE while advising is on.
// Only references to the symbol mmap are wrapped: musl calls its own __mmap inside.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cmdline.h"
#include "mainargs.h"
#include "thp.h"

// Weak, so that a link without --wrap=mmap (go test, go vet) needs no __real_mmap: there
// nothing calls __wrap_mmap either.
extern void *__real_mmap(void *, size_t, int, int, int, off_t) __attribute__((weak));

#define MAX_RANGES 32
#define MIN_COMMIT ((size_t)2 << 20)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int advising; // under lock
static struct {
	void *p;
	size_t len;
} ranges[MAX_RANGES]; // what was advised, for vectl_thp_settle; under lock
static int nranges;

int vectl_thp_free_blocks(const char *buddyinfo) {
	long blocks = 0;
	for (const char *line = buddyinfo; line && *line;) {
		const char *end = strchr(line, '\n');
		const char *zone = strstr(line, "zone");
		if (zone != NULL && (end == NULL || zone < end)) {
			// "Node 0, zone   Normal   c0 c1 ... c10": the counts of free blocks of order 0, 1, ...
			const char *s = zone + 4;
			while (*s == ' ' || *s == '\t') {
				s++;
			}
			while (*s != '\0' && *s != ' ' && *s != '\t' && *s != '\n') {
				s++; // the zone's name
			}
			for (int order = 0;; order++) {
				char *next;
				long n = strtol(s, &next, 10);
				if (next == s || (end != NULL && next > end)) {
					break;
				}
				if (order >= THP_ORDER && n > 0) {
					int shift = order - THP_ORDER;
					blocks += shift < 20 ? n << shift : 1L << 40;
				}
				s = next;
			}
		}
		line = end ? end + 1 : NULL;
	}
	return blocks > (1L << 30) ? (1 << 30) : (int)blocks;
}

int vectl_thp_note(void *p, size_t len, int prot, int flags) {
	if ((flags & (MAP_FIXED | MAP_ANONYMOUS)) != (MAP_FIXED | MAP_ANONYMOUS) || prot != (PROT_READ | PROT_WRITE) ||
	    len < MIN_COMMIT) {
		return 0;
	}
	int advised = 0;
	pthread_mutex_lock(&lock);
	if (advising && nranges < MAX_RANGES && madvise(p, len, MADV_HUGEPAGE) == 0) {
		ranges[nranges].p = p;
		ranges[nranges].len = len;
		nranges++;
		advised = 1;
	}
	pthread_mutex_unlock(&lock);
	return advised;
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
	void *p = __real_mmap(addr, len, prot, flags, fd, off);
	if (p != MAP_FAILED) {
		int saved = errno;
		vectl_thp_note(p, len, prot, flags);
		errno = saved;
	}
	return p;
}

void vectl_thp_start(int on) {
	pthread_mutex_lock(&lock);
	advising = on;
	pthread_mutex_unlock(&lock);
}

int vectl_thp_settle(void) {
	pthread_mutex_lock(&lock);
	advising = 0;
	int n = nranges;
	for (int i = 0; i < nranges; i++) {
		madvise(ranges[i].p, ranges[i].len, MADV_NOHUGEPAGE);
	}
	nranges = 0;
	pthread_mutex_unlock(&lock);
	return n;
}

int vectl_thp_stays(int argc, char **argv, int tty) {
	if (argc < 2) {
		return 0;
	}
	int i = vectl_cmdline_command(argc, argv, strcmp(vectl_cmdline_base(argv[0]), "vzctl") != 0);
	if (i >= argc) {
		return 0;
	}
	const char *cmd = argv[i];
	if (strcmp(cmd, "enter") == 0 || strcmp(cmd, "console") == 0) {
		return 1;
	}
	if (strcmp(cmd, "start") != 0 && strcmp(cmd, "restore") != 0 && strcmp(cmd, "resume") != 0) {
		return 0;
	}
	static const char *const foreground[] = {"foreground", NULL};
	if (!vectl_cmdline_any(argc, argv, i + 1, foreground, "F")) {
		return 0;
	}
	// A foreground start without a terminal (a systemd unit's, a run to exit) executes the
	// idle loop a second after its VE's boot, which drops the Go heap, or ends with the VE;
	// with a terminal it relays it in Go for the VE's life. Resumed by the idle loop
	// (--resume), it mostly tears down, or boots again in-VE and stays a second.
	static const char *const resume[] = {"resume", NULL};
	return strcmp(cmd, "start") != 0 || tty || vectl_cmdline_any(argc, argv, i + 1, resume, NULL);
}

// Decides before the Go runtime starts (its first heap commit comes before main): huge pages
// only where the kernel has whole 2 MiB blocks free, so that no fault of the heap waits for
// compaction (the usual defrag setting, madvise, compacts synchronously for advised memory).
__attribute__((constructor)) static void vectl_thp_init(int argc, char **argv, char **envp) {
	if (__real_mmap == NULL) {
		return;
	}
	vectl_main_args(&argc, &argv, &envp);
	if (vectl_thp_stays(argc, argv, isatty(0))) {
		return;
	}
	char buf[4096];
	int fd = open("/proc/buddyinfo", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return;
	}
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0) {
		return;
	}
	buf[n] = '\0';
	if (vectl_thp_free_blocks(buf) >= THP_MIN_FREE_BLOCKS) {
		advising = 1;
	}
}
