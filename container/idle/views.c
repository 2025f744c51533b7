// Per-VE views of /proc/meminfo, /proc/cpuinfo and the CPU lists in /sys (see views.h).
// Like the rest of the relay, no stdio: formatting would pull libc's locale data into every
// idle monitor's memory.
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "views.h"

static const char *const view_names[NVIEWS] = {"meminfo", "cpuinfo", "cpus", "loadavg", "stat", "swaps", "diskstats"};

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

// line_len is the length of the line at line, its newline included.
static size_t line_len(const char *line)
{
	const char *nl = strchr(line, '\n');
	return nl ? (size_t)(nl - line + 1) : strlen(line);
}

// The VE's memory figures in bytes, from its memory cgroup (v1 or v2) and the host's
// /proc/meminfo text; ok is 0 when the cgroup cannot be read (not made yet, or gone).
struct memfig {
	int ok;
	unsigned long long total, freem, avail, file, anon, shmem, mapped, aanon, ianon, afile, ifile, unevict,
		srecl, sunrecl, swtotal, swfree;
};

static struct memfig mem_figures(const struct views *v, const char *host)
{
	struct memfig f = {0};
	unsigned long long host_total = key_value(host, "MemTotal") * 1024, host_swap = key_value(host, "SwapTotal") * 1024;
	int v2 = 0;
	unsigned long long limit, usage, swlimit, swusage;
	char *st = slurp(v->mem, "memory.max", NULL);
	if (st) {
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
		free(st);
		return f;
	}
	if (swusage == INF)
		swusage = 0;
#define STAT(v1key, v2key) key_value(st, v2 ? v2key : v1key)
	f.file = STAT("total_cache", "file");
	f.anon = STAT("total_rss", "anon");
	f.shmem = STAT("total_shmem", "shmem");
	f.mapped = STAT("total_mapped_file", "file_mapped");
	f.aanon = STAT("total_active_anon", "active_anon");
	f.ianon = STAT("total_inactive_anon", "inactive_anon");
	f.afile = STAT("total_active_file", "active_file");
	f.ifile = STAT("total_inactive_file", "inactive_file");
	f.unevict = STAT("total_unevictable", "unevictable");
	f.srecl = v2 ? key_value(st, "slab_reclaimable") : 0;
	f.sunrecl = v2 ? key_value(st, "slab_unreclaimable") : 0;
#undef STAT
	free(st);
	f.total = min_u(limit, host_total);
	f.freem = sub0(f.total, usage);
	f.avail = min_u(f.total, f.freem + f.afile + f.ifile + f.srecl);
	f.swtotal = swlimit == INF ? host_swap : swlimit;
	if (limit == INF)
		f.swtotal = host_swap; // no memory limit: the host's swap is the VE's to use
	f.swfree = sub0(f.swtotal, swusage);
	f.ok = 1;
	return f;
}

// render_meminfo writes the host's /proc/meminfo with the memory and swap lines replaced by
// the VE's.
static void render_meminfo(const struct views *v, struct out *o)
{
	char *host = slurp(NULL, "/proc/meminfo", NULL);
	if (!host)
		return;
	struct memfig f = mem_figures(v, host);
	if (!f.ok) {
		out_str(o, host); // no memory cgroup to read: the host's own figures
		free(host);
		return;
	}
	struct {
		const char *key;
		unsigned long long val;
	} set[] = {
		{"MemTotal", f.total}, {"MemFree", f.freem}, {"MemAvailable", f.avail}, {"Buffers", 0}, {"Cached", f.file},
		{"SwapCached", 0}, {"Active", f.aanon + f.afile}, {"Inactive", f.ianon + f.ifile}, {"Active(anon)", f.aanon},
		{"Inactive(anon)", f.ianon}, {"Active(file)", f.afile}, {"Inactive(file)", f.ifile}, {"Unevictable", f.unevict},
		{"SwapTotal", f.swtotal}, {"SwapFree", f.swfree}, {"AnonPages", f.anon}, {"Mapped", f.mapped}, {"Shmem", f.shmem},
		{"Slab", f.srecl + f.sunrecl}, {"SReclaimable", f.srecl}, {"SUnreclaim", f.sunrecl},
	};
	for (const char *line = host; *line;) {
		size_t ll = line_len(line);
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

// render_swaps writes /proc/swaps with one line for the VE's swap (--swap), as lxcfs does:
// its devices are the host's business.
static void render_swaps(const struct views *v, struct out *o)
{
	out_str(o, "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
	char *host = slurp(NULL, "/proc/meminfo", NULL);
	if (!host)
		return;
	struct memfig f = mem_figures(v, host);
	free(host);
	if (!f.ok || f.swtotal == 0)
		return;
	out_str(o, "none                                    virtual\t\t");
	out_u(o, f.swtotal / 1024, 0);
	out_str(o, "\t\t");
	out_u(o, (f.swtotal - f.swfree) / 1024, 0);
	out_str(o, "\t\t0\n");
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
		size_t ll = line_len(line);
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

// parse_s reads a signed decimal.
static long long parse_s(const char *p, const char **end)
{
	while (*p == ' ' || *p == '\t')
		p++;
	int neg = *p == '-';
	if (neg)
		p++;
	unsigned long long n = parse_u(p, end);
	return neg ? -(long long)n : (long long)n;
}

// first_pid is a process of the cgroup at dir or below it (a VE's systemd moves its
// processes into child cgroups), or 0.
static int first_pid(const char *dir, int depth)
{
	char *b = slurp(dir, "cgroup.procs", NULL);
	int pid = b ? (int)parse_u(b, NULL) : 0;
	free(b);
	if (pid > 0 || depth >= 4)
		return pid;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while (pid == 0 && (e = readdir(d)) != NULL) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		char sub[2048];
		size_t dl = strlen(dir), nl = strlen(e->d_name);
		if (dl + nl + 2 > sizeof sub)
			continue;
		memcpy(sub, dir, dl);
		sub[dl] = '/';
		memcpy(sub + dl + 1, e->d_name, nl + 1);
		pid = first_pid(sub, depth + 1);
	}
	closedir(d);
	return pid;
}

// boot_offset is the boot-time clock offset of the VE's time namespace in whole seconds
// (negative: the VE booted after the host), read from one of its processes; 0 without.
static long long boot_offset(const struct views *v)
{
	int pid = first_pid(v->mem, 0);
	if (pid <= 0)
		return 0;
	struct out path = {0};
	out_str(&path, "/proc/");
	out_u(&path, (unsigned long long)pid, 0);
	out_mem(&path, "/timens_offsets", 16); // with its NUL
	char *b = path.bad ? NULL : slurp(NULL, path.p, NULL);
	free(path.p);
	long long off = 0;
	for (const char *l = b; l && *l;) {
		if (strncmp(l, "boottime ", 9) == 0 || strncmp(l, "7 ", 2) == 0) {
			const char *e = l + (l[0] == '7' ? 1 : 8);
			off = parse_s(e, &e);
			long long ns = parse_s(e, NULL);
			if (ns > 0)
				off++; // -5.25 s is written as -6 and 750000000 ns: btime rounds up
			break;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	free(b);
	return off;
}

// render_stat writes /proc/stat for the VE: its CPUs (numbered from 0) with the user and
// system time of its cgroup shared among them and the rest of each host CPU's time idle,
// its boot time, and the host's counters otherwise.
static void render_stat(const struct views *v, struct out *o)
{
	char *host = slurp(NULL, "/proc/stat", NULL);
	if (!host)
		return;
	unsigned char mask[MAXCPUS / 8];
	int n = ve_cpus(v, mask);
	// The cgroup's user and system time in clock ticks (USER_HZ, 100).
	unsigned long long user = 0, sys = 0;
	char *st = slurp(v->cpuacct, "cpu.stat", NULL);
	if (st && strstr(st, "user_usec")) {
		user = key_value(st, "user_usec") / 10000;
		sys = key_value(st, "system_usec") / 10000;
	} else {
		free(st);
		st = slurp(v->cpuacct, "cpuacct.stat", NULL);
		if (st) {
			user = key_value(st, "user");
			sys = key_value(st, "system");
		}
	}
	free(st);
	// Each VE CPU's share, and the host CPU it stands for (the VE's first n).
	unsigned long long cu = user / (unsigned long long)n, cs = sys / (unsigned long long)n;
	unsigned long long idle_sum = 0;
	struct out cpus = {0};
	int k = 0;
	for (const char *line = host; *line && k < n;) {
		size_t ll = line_len(line);
		if (ll > 3 && memcmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9') {
			const char *e;
			unsigned long long cpu = parse_u(line + 3, &e), total = 0;
			for (int f = 0; f < 8; f++) // user..steal: guest time is in user already
				total += parse_u(e, &e);
			if (cpu < MAXCPUS && (mask[cpu / 8] & (1 << (cpu % 8)))) {
				unsigned long long idle = sub0(total, cu + cs);
				idle_sum += idle;
				out_str(&cpus, "cpu");
				out_u(&cpus, (unsigned long long)k++, 0);
				out_str(&cpus, " ");
				out_u(&cpus, cu, 0);
				out_str(&cpus, " 0 ");
				out_u(&cpus, cs, 0);
				out_str(&cpus, " ");
				out_u(&cpus, idle, 0);
				out_str(&cpus, " 0 0 0 0 0 0\n");
			}
		}
		line += ll;
	}
	out_str(o, "cpu  ");
	out_u(o, cu * (unsigned long long)k, 0);
	out_str(o, " 0 ");
	out_u(o, cs * (unsigned long long)k, 0);
	out_str(o, " ");
	out_u(o, idle_sum, 0);
	out_str(o, " 0 0 0 0 0 0\n");
	if (cpus.p)
		out_mem(o, cpus.p, cpus.len);
	free(cpus.p);
	// The VE's running threads, as its load average file counts them ("L1 L5 L15 R/T").
	unsigned long long running = 0;
	char *la = slurp(NULL, v->load, NULL);
	if (la) {
		const char *p = la;
		for (int f = 0; f < 3 && p; f++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (p)
			running = parse_u(p, NULL);
		free(la);
	}
	for (const char *line = host; *line;) {
		size_t ll = line_len(line);
		if (ll > 3 && memcmp(line, "cpu", 3) == 0) {
			// done above
		} else if (ll > 6 && memcmp(line, "btime ", 6) == 0) {
			out_str(o, "btime ");
			out_u(o, (unsigned long long)((long long)parse_u(line + 6, NULL) - boot_offset(v)), 0);
			out_str(o, "\n");
		} else if (ll > 14 && memcmp(line, "procs_running ", 14) == 0) {
			out_str(o, "procs_running ");
			out_u(o, running ? running : 1, 0);
			out_str(o, "\n");
		} else if (ll > 14 && memcmp(line, "procs_blocked ", 14) == 0) {
			out_str(o, "procs_blocked 0\n");
		} else {
			out_mem(o, line, ll);
		}
		line += ll;
	}
	free(host);
}

// io_of finds a device's VE counters: cgroup v2's io.stat ("MAJ:MIN rbytes=.. wbytes=..
// rios=.. wios=..") or v1's blkio.throttle files ("MAJ:MIN Read N"). It returns 0 when the
// VE has none for the device.
static int io_of(const char *iostat, const char *bytes, const char *ios, const char *dev, unsigned long long *c)
{
	size_t dl = strlen(dev);
	int found = 0;
	memset(c, 0, 4 * sizeof *c); // rbytes, wbytes, rios, wios
	if (iostat) {
		for (const char *l = iostat; l && *l;) {
			if (strncmp(l, dev, dl) == 0 && l[dl] == ' ') {
				const char *keys[4] = {"rbytes=", "wbytes=", "rios=", "wios="};
				const char *nl = strchr(l, '\n');
				for (int i = 0; i < 4; i++) {
					const char *k = strstr(l, keys[i]);
					if (k && (!nl || k < nl))
						c[i] = parse_u(k + strlen(keys[i]), NULL);
				}
				found = 1;
			}
			l = strchr(l, '\n');
			if (l)
				l++;
		}
		return found;
	}
	const char *files[2] = {bytes, ios};
	for (int f = 0; f < 2; f++)
		for (const char *l = files[f]; l && *l;) {
			if (strncmp(l, dev, dl) == 0 && l[dl] == ' ') {
				if (strncmp(l + dl + 1, "Read ", 5) == 0)
					c[f * 2] = parse_u(l + dl + 6, NULL), found = 1;
				else if (strncmp(l + dl + 1, "Write ", 6) == 0)
					c[f * 2 + 1] = parse_u(l + dl + 7, NULL), found = 1;
			}
			l = strchr(l, '\n');
			if (l)
				l++;
		}
	return found;
}

// render_diskstats writes the host's /proc/diskstats lines of the devices the VE did I/O
// on, with its own reads, writes and sectors (the rest 0), as lxcfs does.
static void render_diskstats(const struct views *v, struct out *o)
{
	char *host = slurp(NULL, "/proc/diskstats", NULL);
	if (!host)
		return;
	char *iostat = slurp(v->blkio, "io.stat", NULL);
	char *bytes = iostat ? NULL : slurp(v->blkio, "blkio.throttle.io_service_bytes_recursive", NULL);
	char *ios = iostat ? NULL : slurp(v->blkio, "blkio.throttle.io_serviced_recursive", NULL);
	for (const char *line = host; *line;) {
		size_t ll = line_len(line);
		const char *e;
		unsigned long long maj = parse_u(line, &e), min = parse_u(e, &e);
		while (*e == ' ')
			e++;
		const char *name = e;
		while (*e && *e != ' ' && *e != '\n')
			e++;
		char dev[48];
		char *d = dev;
		struct out tmp = {0};
		out_u(&tmp, maj, 0);
		out_str(&tmp, ":");
		out_u(&tmp, min, 0);
		if (!tmp.bad && tmp.len < sizeof dev) {
			memcpy(d, tmp.p, tmp.len);
			d[tmp.len] = 0;
			unsigned long long c[4];
			if (io_of(iostat, bytes, ios, dev, c) && (c[0] | c[1] | c[2] | c[3])) {
				out_u(o, maj, 4);
				out_str(o, " ");
				out_u(o, min, 7);
				out_str(o, " ");
				out_mem(o, name, (size_t)(e - name));
				out_str(o, " ");
				out_u(o, c[2], 0);
				out_str(o, " 0 ");
				out_u(o, c[0] / 512, 0);
				out_str(o, " 0 ");
				out_u(o, c[3], 0);
				out_str(o, " 0 ");
				out_u(o, c[1] / 512, 0);
				out_str(o, " 0 0 0 0 0 0 0 0 0 0\n");
			}
		}
		free(tmp.p);
		line += ll;
	}
	free(host);
	free(iostat);
	free(bytes);
	free(ios);
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

// The renderer of each view, in the order of the VIEW_ constants.
static void (*const renderers[NVIEWS])(const struct views *, struct out *) = {
	render_meminfo, render_cpuinfo, render_cpus, render_loadavg, render_stat, render_swaps, render_diskstats,
};

static void render(const struct views *v, int i)
{
	struct out o = {0};
	renderers[i](v, &o);
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

// watch_opens has every open of the files wait for vectl_views_event (v->fan).
static int watch_opens(struct views *v)
{
	v->fan = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC | O_LARGEFILE);
	if (v->fan < 0)
		return -1;
	for (int i = 0; i < NVIEWS; i++)
		if (fanotify_mark(v->fan, FAN_MARK_ADD, FAN_OPEN_PERM, v->fd[i], NULL) < 0) {
			close(v->fan);
			v->fan = -1;
			return -1;
		}
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
	    split_spec(&spec, v->cpuacct, sizeof v->cpuacct) < 0 || split_spec(&spec, v->blkio, sizeof v->blkio) < 0 ||
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
	}
	if (watch && watch_opens(v) == 0)
		return 0; // every open renders its file from now on
	// Not watched: rendered once, they stay as they are.
	for (int i = 0; i < NVIEWS; i++)
		render(v, i);
	return watch ? -1 : 0;
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

// The idle loop's arguments, which a closer copied from it writes its command line over
// (vectl_views_small); NULL in a Go process.
static char *small_args;
static size_t small_len;

void vectl_views_small(int argc, char **argv)
{
	if (argc < 1)
		return;
	char *end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
	for (int i = 1; i < argc; i++) // the kernel lays them out one after the other
		if (argv[i] != argv[i - 1] + strlen(argv[i - 1]) + 1)
			return;
	small_args = argv[0];
	small_len = (size_t)(end - argv[0]);
}

void vectl_views_spawned(void)
{
	small_args = NULL;
}

// The program a spawned closer runs: the idle loop's own (vectl_views_closer_program), else
// this process's.
static const char *closer_program;

void vectl_views_closer_program(const char *path)
{
	closer_program = path;
}

// closer_run is the closer's work on the n descriptors of keep (the pipe, the group, the
// view files); it never returns. fork_first: this process is one the monitor waits for,
// so a child of it does the work. args: the arguments to write the closer's command line
// over (a copy of the idle loop), or NULL.
__attribute__((noreturn)) static void closer_run(int *keep, int n, int fork_first, char *args, size_t len)
{
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL); // no signal: it only closes and exits
	int sync = keep[0], fan = keep[1];
	prctl(PR_SET_NAME, "vectl-views-clo");
	if (args) {
		// As ps and the monitor's finders see the spawned closer: "vectl-views-closer
		// __views-closer SYNC FAN VIEW...", the rest zeroed (the last byte stays 0).
		memset(args, 0, len);
		size_t at = 0;
		char num[12];
		for (int i = -2; i < n; i++) {
			const char *w = i == -2 ? "vectl-views-closer" : i == -1 ? IDLE_CLOSER_ARG : num;
			if (i >= 0)
				snprintf(num, sizeof num, "%d", keep[i]);
			size_t l = strlen(w) + 1;
			if (at + l >= len)
				break;
			memcpy(args + at, w, l);
			at += l;
		}
	}
	// Nothing else the monitor had open (its standard output, which a caller may read to
	// EOF; the console) stays open here.
	for (int i = 1; i < n; i++) // a few descriptors: insertion sort
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	unsigned int from = 0;
	for (int i = 0; i < n; i++) {
		if ((unsigned int)keep[i] > from)
			syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
		from = (unsigned int)keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0);
	// The monitor waits for a spawned closer: its child carries on, an orphan for init to
	// reap. When the fork fails this process does the child's work (the monitor has closed
	// its copies before it waits, so the wait ends).
	if (fork_first && fork() > 0)
		_exit(0);
	char b;
	while (read(sync, &b, 1) < 0 && errno == EINTR)
		;
	close(fan);
	_exit(0);
}

// close_fan_elsewhere closes the fanotify group v->fan, handing the last references to it
// and to the watched files to a throwaway process, the closer, which closes them and exits.
// Closing a fanotify group waits for an SRCU grace period (fsnotify_destroy_group: 15 to
// 20 ms on the machine of 2026-12-05, where grace periods were not expedited; see
// vectl_srcu_expedited), and so does unmounting the views' tmpfs while its files are
// watched: both sat on the critical path of every VE's end (a foreground run's exit, the
// monitor's exit that vectl stop waits for). Holding the view files, the closer also keeps
// the views' tmpfs alive past the teardown's lazy unmount, which then only detaches the
// mount.
//
// The closer is this process's own program executed again (posix_spawn: a vfork, no copy of
// the address space) as "vectl-views-closer __views-closer SYNC FAN VIEW...", with only those
// descriptors kept (vectl_views_closer); in the Go monitor, the idle loop's small program
// when it has one (vectl_views_closer_program; executing vectl's 20 MB binary for it cost
// about 0.15 ms more at the end of each foreground run, 2026-12-08). A fork of the Go
// monitor copied the page tables of its whole heap, and the monitor then paid a
// copy-on-write fault for every page it wrote while the copy lived: 0.6 ms of CPU at the
// end of each foreground run. The exec also gives
// the closer a command line of its own, so nothing takes it for the VE's monitor. It waits
// for this process to have closed its copy of the group (EOF on the pipe SYNC), so that its
// own close is the last and pays the wait, and it takes no signal.
//
// The idle loop's own program (a resting monitor, vectl_views_small) maps a few pages, so
// there the closer is a copy of it instead (clone with CLONE_PARENT: a fork whose parent
// is the monitor's own, which reaps it as it would have reaped the orphan; no exec, no second
// fork), which writes the same command line over its copy of the arguments (2026-12-07).
// spawn_closer starts the closer with the n descriptors of keep (the pipe's read end, the
// group, the view files) and returns its pid, or -1.
static pid_t spawn_closer(const int *keep, int n)
{
	char num[NVIEWS + 2][12];
	char *argv[NVIEWS + 5] = {"vectl-views-closer", IDLE_CLOSER_ARG};
	int argc = 2;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	if (posix_spawn_file_actions_init(&fa) != 0)
		return -1;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return -1;
	}
	int err = 0;
	for (int i = 0; i < n && err == 0; i++) {
		snprintf(num[i], sizeof num[i], "%d", keep[i]);
		argv[argc++] = num[i];
		err = posix_spawn_file_actions_adddup2(&fa, keep[i], keep[i]); // clears close-on-exec
	}
	argv[argc] = NULL;
	sigset_t all;
	sigfillset(&all);
	if (err == 0)
		err = posix_spawnattr_setsigmask(&at, &all);
	if (err == 0)
		err = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
	pid_t pid = -1;
	char *envp[] = {NULL};
	if (err == 0) {
		err = -1;
		if (closer_program != NULL)
			err = posix_spawn(&pid, closer_program, &fa, &at, argv, envp);
		if (err != 0)
			err = posix_spawn(&pid, "/proc/self/exe", &fa, &at, argv, envp);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return err == 0 ? pid : -1;
}

static void close_fan_elsewhere(struct views *v)
{
	int sync[2];
	if (pipe2(sync, O_CLOEXEC) < 0) {
		close(v->fan);
		return;
	}
	int keep[NVIEWS + 2], n = 0;
	keep[n++] = sync[0];
	keep[n++] = v->fan;
	for (int i = 0; i < NVIEWS; i++)
		if (v->fd[i] >= 0)
			keep[n++] = v->fd[i];
	pid_t pid = -1;
	if (small_args) {
		sigset_t all, old;
		sigfillset(&all);
		sigprocmask(SIG_SETMASK, &all, &old); // the copy starts with every signal blocked
		pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
		if (pid == 0)
			closer_run(keep, n, 0, small_args, small_len);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (pid > 0) { // not our child: nothing to wait for
			close(sync[0]);
			close(v->fan);
			close(sync[1]);
			return;
		}
	}
	pid = spawn_closer(keep, n);
	close(sync[0]);
	close(v->fan); // the closer's copy is the last (when it did not start: this one)
	close(sync[1]);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
}

void vectl_views_closer(int argc, char **argv)
{
	int keep[NVIEWS + 2], n = 0;
	for (int i = 2; i < argc && n < NVIEWS + 2; i++) {
		char *end;
		long fd = strtol(argv[i], &end, 10);
		if (*end != '\0' || fd < 0 || fd > 1 << 20)
			_exit(2);
		keep[n++] = (int)fd;
	}
	if (n < 2)
		_exit(2);
	closer_run(keep, n, 1, NULL, 0);
}

// vectl_srcu_expedited tells whether the kernel ends SRCU grace periods the expedited way:
// rcu_expedited 1 and rcu_normal 0 in dir (/sys/kernel). synchronize_srcu then takes a
// fraction of a millisecond (closing the views' group took 0.06 to 0.25 ms on the PVM
// machine of 2026-12-06, which boots with rcu_expedited=1), less than starting the closer
// costs (its exec and fork: about 1.3 ms of CPU and 0.5 ms of the VE's end), so the group is
// closed in place. A file that cannot be read counts as the kernel's default (normal grace
// periods, the closer).
int vectl_srcu_expedited(const char *dir)
{
	return read_u(dir, "rcu_expedited") == 1 && read_u(dir, "rcu_normal") == 0;
}

void vectl_views_close(struct views *v)
{
	if (v->fan >= 0) {
		if (vectl_srcu_expedited("/sys/kernel"))
			close(v->fan);
		else
			close_fan_elsewhere(v);
	}
	v->fan = -1;
	for (int i = 0; i < NVIEWS; i++) {
		if (v->fd[i] >= 0)
			close(v->fd[i]);
		v->fd[i] = -1;
	}
}
