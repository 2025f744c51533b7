// Per-VE views of /proc/meminfo, /proc/cpuinfo and the CPU lists in /sys (see views.h).
// Like the rest of the relay, no stdio: formatting would pull libc's locale data into every
// idle monitor's memory.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "views.h"

static const char *const view_names[NVIEWS] = {"meminfo", "cpuinfo", "cpus", "loadavg"};

#define INF (~0ULL)
#define MAXCPUS 4096

// A growing output buffer; on allocation failure it stops growing and is marked bad.
struct out {
	char *p;
	size_t len, cap;
	int bad;
};

static void out_mem(struct out *o, const char *s, size_t n)
{
	if (o->bad)
		return;
	if (o->len + n > o->cap) {
		size_t c = o->cap ? o->cap : 4096;
		while (c < o->len + n)
			c *= 2;
		char *p = realloc(o->p, c);
		if (!p) {
			o->bad = 1;
			return;
		}
		o->p = p;
		o->cap = c;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s) { out_mem(o, s, strlen(s)); }

// out_u writes n in decimal, right-aligned in width (0: as long as it is).
static void out_u(struct out *o, unsigned long long n, int width)
{
	char b[24];
	int i = sizeof b;
	do {
		b[--i] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	for (int w = (int)sizeof b - i; w < width; w++)
		out_mem(o, " ", 1);
	out_mem(o, b + i, sizeof b - i);
}

// slurp reads a whole file into a malloc'd, NUL-terminated buffer (NULL on failure).
static char *slurp(const char *dir, const char *name, size_t *len)
{
	char path[4096];
	size_t dl = dir ? strlen(dir) : 0, nl = strlen(name);
	if (dl + nl + 2 > sizeof path)
		return NULL;
	if (dir) {
		memcpy(path, dir, dl);
		path[dl++] = '/';
	}
	memcpy(path + dl, name, nl + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	for (;;) {
		if (!b)
			break;
		if (n + 1 >= cap) {
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				b = NULL;
				break;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, b + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	if (b) {
		b[n] = 0;
		if (len)
			*len = n;
	}
	return b;
}

static unsigned long long parse_u(const char *p, const char **end)
{
	unsigned long long n = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p >= '0' && *p <= '9')
		n = n * 10 + (unsigned long long)(*p++ - '0');
	if (end)
		*end = p;
	return n;
}

// read_u is the number a cgroup file starts with: INF for "max", a missing file or a
// limit past 2^62 (cgroup v1's "unlimited"), and -1 as INF too.
static unsigned long long read_u(const char *dir, const char *name)
{
	char *b = slurp(dir, name, NULL);
	if (!b)
		return INF;
	unsigned long long n = INF;
	const char *p = b;
	while (*p == ' ')
		p++;
	if (*p >= '0' && *p <= '9') {
		n = parse_u(p, NULL);
		if (n >= 1ULL << 62)
			n = INF;
	}
	free(b);
	return n;
}

// key_value finds "KEY VALUE" (memory.stat) or "KEY: VALUE" (/proc/meminfo) at a line's start.
static unsigned long long key_value(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = text; p && *p;) {
		if (strncmp(p, key, kl) == 0 && (p[kl] == ' ' || p[kl] == ':' || p[kl] == '\t'))
			return parse_u(p + kl + (p[kl] == ':'), NULL);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static unsigned long long min_u(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
static unsigned long long sub0(unsigned long long a, unsigned long long b) { return a > b ? a - b : 0; }

// render_meminfo writes the host's /proc/meminfo with the memory and swap lines replaced by
// the VE's, from its memory cgroup (v1 or v2).
static void render_meminfo(const struct views *v, struct out *o)
{
	char *host = slurp(NULL, "/proc/meminfo", NULL);
	if (!host)
		return;
	unsigned long long host_total = key_value(host, "MemTotal") * 1024, host_swap = key_value(host, "SwapTotal") * 1024;
	int v2 = 0;
	unsigned long long limit, usage, swlimit, swusage;
	char *st;
	if (access(v->mem, F_OK) == 0 && (st = slurp(v->mem, "memory.max", NULL)) != NULL) {
		free(st);
		v2 = 1;
		limit = read_u(v->mem, "memory.max");
		usage = read_u(v->mem, "memory.current");
		swlimit = read_u(v->mem, "memory.swap.max");
		swusage = read_u(v->mem, "memory.swap.current");
	} else {
		limit = read_u(v->mem, "memory.limit_in_bytes");
		usage = read_u(v->mem, "memory.usage_in_bytes");
		unsigned long long msl = read_u(v->mem, "memory.memsw.limit_in_bytes");
		unsigned long long msu = read_u(v->mem, "memory.memsw.usage_in_bytes");
		swlimit = (msl == INF || limit == INF) ? INF : sub0(msl, limit);
		swusage = (msu == INF || usage == INF) ? 0 : sub0(msu, usage);
	}
	st = slurp(v->mem, "memory.stat", NULL);
	if (usage == INF || !st) {
		// No memory cgroup to read (not made yet, or gone): the host's own figures.
		out_str(o, host);
		free(host);
		free(st);
		return;
	}
	if (swusage == INF)
		swusage = 0;
#define STAT(v1key, v2key) key_value(st, v2 ? v2key : v1key)
	unsigned long long file = STAT("total_cache", "file"), anon = STAT("total_rss", "anon"),
			   shmem = STAT("total_shmem", "shmem"), mapped = STAT("total_mapped_file", "file_mapped"),
			   aanon = STAT("total_active_anon", "active_anon"), ianon = STAT("total_inactive_anon", "inactive_anon"),
			   afile = STAT("total_active_file", "active_file"), ifile = STAT("total_inactive_file", "inactive_file"),
			   unevict = STAT("total_unevictable", "unevictable"), srecl = v2 ? key_value(st, "slab_reclaimable") : 0,
			   sunrecl = v2 ? key_value(st, "slab_unreclaimable") : 0;
#undef STAT
	free(st);
	unsigned long long total = min_u(limit, host_total);
	unsigned long long freem = sub0(total, usage);
	unsigned long long avail = min_u(total, freem + afile + ifile + srecl);
	unsigned long long swtotal = swlimit == INF ? host_swap : swlimit;
	if (limit == INF)
		swtotal = host_swap; // no memory limit: the host's swap is the VE's to use
	unsigned long long swfree = sub0(swtotal, swusage);
	struct {
		const char *key;
		unsigned long long val;
	} set[] = {
		{"MemTotal", total}, {"MemFree", freem}, {"MemAvailable", avail}, {"Buffers", 0}, {"Cached", file},
		{"SwapCached", 0}, {"Active", aanon + afile}, {"Inactive", ianon + ifile}, {"Active(anon)", aanon},
		{"Inactive(anon)", ianon}, {"Active(file)", afile}, {"Inactive(file)", ifile}, {"Unevictable", unevict},
		{"SwapTotal", swtotal}, {"SwapFree", swfree}, {"AnonPages", anon}, {"Mapped", mapped}, {"Shmem", shmem},
		{"Slab", srecl + sunrecl}, {"SReclaimable", srecl}, {"SUnreclaim", sunrecl},
	};
	for (const char *line = host; *line;) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl ? (size_t)(nl - line + 1) : strlen(line);
		const char *colon = memchr(line, ':', ll);
		int done = 0;
		for (size_t i = 0; colon && i < sizeof set / sizeof set[0]; i++) {
			size_t kl = strlen(set[i].key);
			if ((size_t)(colon - line) == kl && memcmp(line, set[i].key, kl) == 0) {
				// The kernel's layout: the label padded to 16 columns, 8 for the number.
				out_mem(o, line, kl + 1);
				for (size_t c = kl + 1; c < 15; c++)
					out_mem(o, " ", 1);
				out_u(o, set[i].val / 1024, 9);
				out_str(o, " kB\n");
				done = 1;
				break;
			}
		}
		if (!done)
			out_mem(o, line, ll);
		line += ll;
	}
	free(host);
}

// parse_cpulist sets the bits of a CPU list ("0-3,8") in mask and returns how many.
static int parse_cpulist(const char *p, unsigned char *mask)
{
	int n = 0;
	while (p && *p >= '0' && *p <= '9') {
		const char *e;
		unsigned long long a = parse_u(p, &e), b = a;
		if (*e == '-')
			b = parse_u(e + 1, &e);
		for (unsigned long long c = a; c <= b && c < MAXCPUS; c++)
			if (!(mask[c / 8] & (1 << (c % 8)))) {
				mask[c / 8] |= (unsigned char)(1 << (c % 8));
				n++;
			}
		p = *e == ',' ? e + 1 : NULL;
	}
	return n;
}

// ve_cpus fills mask with the VE's CPUs (its cpuset, or the host's online ones) and
// returns how many the VE has: that many, or fewer when its CPU quota (--cpus, --cpulimit)
// allows less, rounded up.
static int ve_cpus(const struct views *v, unsigned char *mask)
{
	memset(mask, 0, MAXCPUS / 8);
	int n = 0;
	char *b = slurp(v->cpuset, "cpuset.cpus.effective", NULL);
	if (!b)
		b = slurp(v->cpuset, "cpuset.effective_cpus", NULL);
	if (!b)
		b = slurp(v->cpuset, "cpuset.cpus", NULL);
	if (b) {
		n = parse_cpulist(b, mask);
		free(b);
	}
	if (n == 0 && (b = slurp(NULL, "/sys/devices/system/cpu/online", NULL)) != NULL) {
		n = parse_cpulist(b, mask);
		free(b);
	}
	unsigned long long quota = INF, period = 0;
	if ((b = slurp(v->cpu, "cpu.max", NULL)) != NULL) {
		const char *e;
		if (b[0] >= '0' && b[0] <= '9') {
			quota = parse_u(b, &e);
			period = parse_u(e, NULL);
		}
		free(b);
	} else {
		quota = read_u(v->cpu, "cpu.cfs_quota_us");
		period = read_u(v->cpu, "cpu.cfs_period_us");
	}
	if (quota != INF && period != INF && period > 0) {
		int q = (int)((quota + period - 1) / period);
		if (q < 1)
			q = 1;
		if (q < n)
			n = q;
	}
	return n < 1 ? 1 : n;
}

// render_cpuinfo writes the host's /proc/cpuinfo blocks of the VE's first n CPUs,
// numbered from 0, with their sibling and core counts set to n.
static void render_cpuinfo(const struct views *v, struct out *o)
{
	unsigned char mask[MAXCPUS / 8];
	int n = ve_cpus(v, mask), kept = 0;
	char *host = slurp(NULL, "/proc/cpuinfo", NULL);
	if (!host)
		return;
	int keep = 1;
	for (const char *line = host; *line;) {
		const char *nl = strchr(line, '\n');
		size_t ll = nl ? (size_t)(nl - line + 1) : strlen(line);
		const char *colon = memchr(line, ':', ll);
		size_t kl = 0;
		if (colon) {
			kl = (size_t)(colon - line);
			while (kl > 0 && (line[kl - 1] == ' ' || line[kl - 1] == '\t'))
				kl--;
		}
		if (colon && kl == 9 && memcmp(line, "processor", 9) == 0) {
			unsigned long long cpu = parse_u(colon + 1, NULL);
			keep = cpu < MAXCPUS && (mask[cpu / 8] & (1 << (cpu % 8))) && kept < n;
			if (keep) {
				out_mem(o, line, (size_t)(colon - line) + 1);
				out_str(o, " ");
				out_u(o, (unsigned long long)kept++, 0);
				out_str(o, "\n");
			}
		} else if (keep && colon &&
			   ((kl == 8 && memcmp(line, "siblings", 8) == 0) || (kl == 9 && memcmp(line, "cpu cores", 9) == 0))) {
			out_mem(o, line, (size_t)(colon - line) + 1);
			out_str(o, " ");
			out_u(o, (unsigned long long)n, 0);
			out_str(o, "\n");
		} else if (keep && colon && kl == 7 && memcmp(line, "core id", 7) == 0) {
			out_mem(o, line, (size_t)(colon - line) + 1);
			out_str(o, " ");
			out_u(o, (unsigned long long)(kept - 1), 0);
			out_str(o, "\n");
		} else if (keep) {
			out_mem(o, line, ll);
		}
		line += ll;
	}
	free(host);
}

static void render_cpus(const struct views *v, struct out *o)
{
	unsigned char mask[MAXCPUS / 8];
	int n = ve_cpus(v, mask);
	out_str(o, "0");
	if (n > 1) {
		out_str(o, "-");
		out_u(o, (unsigned long long)(n - 1), 0);
	}
	out_str(o, "\n");
}

// render_loadavg writes the load average the relay keeps from the VE's own threads
// ("L1 L5 L15 RUNNING/THREADS") and, for the last pid field, 0: the VE's last pid is its
// pid namespace's, which the host does not see.
static void render_loadavg(const struct views *v, struct out *o)
{
	char *b = slurp(NULL, v->load, NULL);
	if (!b || !strchr(b, '/')) {
		out_str(o, "0.00 0.00 0.00 0/0 0\n");
	} else {
		char *nl = strchr(b, '\n');
		out_mem(o, b, nl ? (size_t)(nl - b) : strlen(b));
		out_str(o, " 0\n");
	}
	free(b);
}

static void render(const struct views *v, int i)
{
	struct out o = {0};
	switch (i) {
	case VIEW_MEMINFO:
		render_meminfo(v, &o);
		break;
	case VIEW_CPUINFO:
		render_cpuinfo(v, &o);
		break;
	case VIEW_CPUS:
		render_cpus(v, &o);
		break;
	case VIEW_LOADAVG:
		render_loadavg(v, &o);
		break;
	}
	if (!o.bad && o.len > 0 && v->fd[i] >= 0) {
		// Rewritten in place: the VE's bind mount holds this inode.
		size_t done = 0;
		while (done < o.len) {
			ssize_t w = pwrite(v->fd[i], o.p + done, o.len - done, (off_t)done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;
			done += (size_t)w;
		}
		if (done == o.len)
			ftruncate(v->fd[i], (off_t)o.len);
	}
	free(o.p);
}

// split_spec copies the next line of *spec into dst.
static int split_spec(const char **spec, char *dst, size_t size)
{
	const char *nl = strchr(*spec, '\n');
	size_t n = nl ? (size_t)(nl - *spec) : strlen(*spec);
	if (n + 1 > size)
		return -1;
	memcpy(dst, *spec, n);
	dst[n] = 0;
	*spec += n + (nl ? 1 : 0);
	return 0;
}

int vectl_views_open(struct views *v, const char *spec, int watch)
{
	memset(v, 0, sizeof *v);
	v->fan = -1;
	for (int i = 0; i < NVIEWS; i++)
		v->fd[i] = -1;
	if (!spec || !*spec)
		return -1;
	if (split_spec(&spec, v->dir, sizeof v->dir) < 0 || split_spec(&spec, v->mem, sizeof v->mem) < 0 ||
	    split_spec(&spec, v->cpu, sizeof v->cpu) < 0 || split_spec(&spec, v->cpuset, sizeof v->cpuset) < 0 ||
	    split_spec(&spec, v->load, sizeof v->load) < 0)
		return -1;
	// The files are opened before they are watched: this process's own opens would
	// otherwise wait for itself.
	for (int i = 0; i < NVIEWS; i++) {
		char path[sizeof v->dir + 16];
		size_t dl = strlen(v->dir);
		memcpy(path, v->dir, dl);
		path[dl] = '/';
		strcpy(path + dl + 1, view_names[i]);
		v->fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0444);
		if (v->fd[i] < 0) {
			vectl_views_close(v);
			return -1;
		}
		struct stat sb;
		fstat(v->fd[i], &sb);
		v->dev[i] = sb.st_dev;
		v->ino[i] = sb.st_ino;
		render(v, i);
	}
	if (!watch)
		return 0;
	v->fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC | O_LARGEFILE);
	if (v->fan < 0)
		return -1; // the files stay as rendered now
	for (int i = 0; i < NVIEWS; i++)
		if (fanotify_mark(v->fan, FAN_MARK_ADD, FAN_OPEN_PERM, v->fd[i], NULL) < 0) {
			close(v->fan);
			v->fan = -1;
			return -1;
		}
	return 0;
}

void vectl_views_event(struct views *v)
{
	char buf[4096] __attribute__((aligned(8)));
	for (;;) {
		ssize_t n = read(v->fan, buf, sizeof buf);
		if (n <= 0)
			return;
		for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
			if (m->vers != FANOTIFY_METADATA_VERSION || m->fd < 0)
				continue;
			struct stat sb;
			if (fstat(m->fd, &sb) == 0)
				for (int i = 0; i < NVIEWS; i++)
					if (sb.st_dev == v->dev[i] && sb.st_ino == v->ino[i])
						render(v, i);
			struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};
			while (write(v->fan, &r, sizeof r) < 0 && errno == EINTR)
				;
			close(m->fd);
		}
	}
}

void vectl_views_close(struct views *v)
{
	if (v->fan >= 0)
		close(v->fan); // opens waiting for an answer go ahead
	v->fan = -1;
	for (int i = 0; i < NVIEWS; i++) {
		if (v->fd[i] >= 0)
			close(v->fd[i]);
		v->fd[i] = -1;
	}
}
