// The console of a VE's monitor: the one console relay and console log writer of vectl (see
// idle.go), and the idle loop built on them. The idle loop must stay small and never allocate
// much: its resident memory is the cost of every running VE.
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "idle.h"
#include "layout.h"
#include "proto.h"
#include "views.h"
#include "wire.h"

#define MAXCLIENTS IDLE_MAX_CLIENTS
// One page each, page-aligned: an idle monitor's memory is mostly the pages it has
// touched, and hundreds of them rest on a node. A larger read buys nothing on a console.
#define BUFSIZE 4096
#define PAGE_ALIGNED __attribute__((aligned(4096)))

// The console log: one writer per process, shared by the relay and (through
// vectl_log_write) the Go monitor's own messages, so the two never disagree on its size,
// its rotation or carriage returns.
static pthread_mutex_t logmu = PTHREAD_MUTEX_INITIALIZER;
static int logfd = -1;
static long logsize, logmax;
static char *logpath; // malloc'd: the heap's pages are touched anyway

static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

void vectl_log_open(int fd, const char *path, long max)
{
	pthread_mutex_lock(&logmu);
	logfd = fd;
	// No stdio here: formatting pulls libc's locale data into every idle monitor's memory
	// (about 250 KiB of resident pages measured).
	free(logpath);
	logpath = strdup(path);
	logmax = max;
	struct stat st;
	logsize = fstat(fd, &st) == 0 ? st.st_size : 0;
	pthread_mutex_unlock(&logmu);
}

int vectl_log_fd(void)
{
	pthread_mutex_lock(&logmu);
	int fd = logfd;
	pthread_mutex_unlock(&logmu);
	return fd;
}

void vectl_log_close(void)
{
	pthread_mutex_lock(&logmu);
	if (logfd >= 0)
		close(logfd);
	logfd = -1;
	pthread_mutex_unlock(&logmu);
}

// vectl_log_write appends console output without carriage returns, rotating the log to
// LOGPATH.1 (once) when it would grow past its maximum.
void vectl_log_write(const char *buf, size_t n)
{
	static char clean[BUFSIZE] PAGE_ALIGNED;
	pthread_mutex_lock(&logmu);
	while (n > 0 && logfd >= 0) {
		size_t chunk = n < BUFSIZE ? n : BUFSIZE, m = 0;
		for (size_t i = 0; i < chunk; i++)
			if (buf[i] != '\r')
				clean[m++] = buf[i];
		buf += chunk;
		n -= chunk;
		if (m == 0)
			continue;
		if (logsize + (long)m > logmax) {
			char old[4096 + 2];
			snprintf(old, sizeof old, "%s.1", logpath ? logpath : "");
			close(logfd);
			rename(logpath, old);
			logfd = open(logpath, O_CREAT | O_WRONLY | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
			logsize = 0;
			if (logfd < 0)
				break;
		}
		write_all(logfd, clean, m);
		logsize += m;
	}
	pthread_mutex_unlock(&logmu);
}

static void log_msg(const char *msg)
{
	vectl_log_write(msg, strlen(msg));
}

// The load average of a VE, kept as the kernel keeps the host's (kernel/sched/loadavg.c):
// fixed point with 11 fractional bits, sampled every 5 s, decayed with exp(-5s/1min),
// exp(-5s/5min) and exp(-5s/15min).
#define FSHIFT 11
#define FIXED_1 (1UL << FSHIFT)
#define LOAD_FREQ_MS 5000
static const unsigned long load_exp[3] = {1884, 2014, 2037};
static unsigned long avenrun[3];
static int avenrun_read; // the averages were taken from the file (they survive the hand-overs)

static unsigned long calc_load(unsigned long load, unsigned long exp, unsigned long active)
{
	unsigned long newload = load * exp + active * (FIXED_1 - exp);
	if (active >= load)
		newload += FIXED_1 - 1;
	return newload / FIXED_1;
}

// put_ulong writes n in decimal at p and returns the end (no stdio: see vectl_log_open).
static char *put_ulong(char *p, unsigned long n)
{
	char tmp[24];
	int i = 0;
	do
		tmp[i++] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

// put_load writes a fixed-point load as "I.FF", as /proc/loadavg does.
static char *put_load(char *p, unsigned long x)
{
	x += FIXED_1 / 200; // round to two decimals
	p = put_ulong(p, x >> FSHIFT);
	*p++ = '.';
	unsigned long frac = ((x & (FIXED_1 - 1)) * 100) >> FSHIFT;
	*p++ = (char)('0' + frac / 10);
	*p++ = (char)('0' + frac % 10);
	return p;
}

// parse_load reads "I.FF" back into fixed point.
static const char *parse_load(const char *p, unsigned long *x)
{
	unsigned long i = 0, f = 0;
	while (*p >= '0' && *p <= '9')
		i = i * 10 + (unsigned long)(*p++ - '0');
	if (*p == '.') {
		p++;
		for (int d = 0; d < 2; d++) {
			f = f * 10;
			if (*p >= '0' && *p <= '9')
				f += (unsigned long)(*p++ - '0');
		}
		while (*p >= '0' && *p <= '9')
			p++;
	}
	*x = (i << FSHIFT) + (f << FSHIFT) / 100;
	while (*p == ' ')
		p++;
	return p;
}

// thread_active reports whether a thread is running, runnable or in uninterruptible sleep
// (what the kernel's load average counts), from /proc/TID/stat.
static int thread_active(const char *tid, size_t len)
{
	char path[48] = "/proc/";
	if (len > 20)
		return 0;
	memcpy(path + 6, tid, len);
	memcpy(path + 6 + len, "/stat", 6);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	char st[512];
	ssize_t n = read(fd, st, sizeof st - 1);
	close(fd);
	if (n <= 0)
		return 0;
	st[n] = 0;
	char *paren = strrchr(st, ')'); // the command name may hold anything but ends here
	if (!paren || paren[1] != ' ')
		return 0;
	return paren[2] == 'R' || paren[2] == 'D';
}

// count_threads adds the threads listed in FILE under dirfd to *threads and the active ones
// to *active.
static void count_threads(int dirfd, const char *file, unsigned long *threads, unsigned long *active)
{
	static char buf[BUFSIZE] PAGE_ALIGNED;
	int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char tid[24];
	size_t tl = 0;
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				if (tl > 0) {
					(*threads)++;
					*active += (unsigned long)thread_active(tid, tl);
				}
				tl = 0;
			} else if (tl < sizeof tid) {
				tid[tl++] = buf[i];
			}
		}
	}
	close(fd);
}

// count_cgroup counts the threads of the cgroup at dirfd and of its descendants (a VE's
// systemd makes a cgroup per service): cgroup.threads on cgroup v2, tasks on v1. It closes
// dirfd.
static void count_cgroup(int dirfd, int depth, unsigned long *threads, unsigned long *active)
{
	count_threads(dirfd, faccessat(dirfd, "cgroup.threads", F_OK, 0) == 0 ? "cgroup.threads" : "tasks", threads, active);
	if (depth < 8) {
		char d[1024] __attribute__((aligned(8))); // on the stack: its pages are touched anyway
		long n;
		int dup = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
		while (dup >= 0 && (n = syscall(SYS_getdents64, dup, d, sizeof d)) > 0) {
			for (long off = 0; off < n;) {
				struct {
					unsigned long long ino;
					long long off;
					unsigned short reclen;
					unsigned char type;
					char name[];
				} *e = (void *)(d + off);
				off += e->reclen;
				if (e->type != DT_DIR || e->name[0] == '.')
					continue;
				int sub = openat(dirfd, e->name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				if (sub >= 0)
					count_cgroup(sub, depth + 1, threads, active);
			}
		}
		if (dup >= 0)
			close(dup);
	}
	close(dirfd);
}

// sample_load counts the cgroup's active threads and updates the averages and the file.
static void sample_load(const char *cgroup, const char *out)
{
	if (!avenrun_read) {
		avenrun_read = 1;
		char prev[64];
		int fd = open(out, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t n = read(fd, prev, sizeof prev - 1);
			close(fd);
			if (n > 0) {
				prev[n] = 0;
				const char *p = prev;
				for (int i = 0; i < 3; i++)
					p = parse_load(p, &avenrun[i]);
			}
		}
	}
	int dirfd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	unsigned long active = 0, threads = 0;
	count_cgroup(dirfd, 0, &threads, &active);
	for (int i = 0; i < 3; i++)
		avenrun[i] = calc_load(avenrun[i], load_exp[i], active * FIXED_1);
	char line[128], *p = line;
	for (int i = 0; i < 3; i++) {
		p = put_load(p, avenrun[i]);
		*p++ = ' ';
	}
	p = put_ulong(p, active);
	*p++ = '/';
	p = put_ulong(p, threads);
	*p++ = '\n';
	char tmp[4096 + 8];
	size_t ol = strlen(out);
	if (ol > 4096)
		return;
	memcpy(tmp, out, ol);
	memcpy(tmp + ol, ".tmp", 5);
	int wfd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (wfd < 0)
		return;
	write_all(wfd, line, (size_t)(p - line));
	close(wfd);
	rename(tmp, out);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

static void fg_signals(int sigfd);

void vectl_relay(struct vectl_relay *r)
{
	static char buf[BUFSIZE] PAGE_ALIGNED;
	for (int i = 0; i < r->nclients; i++)
		set_nonblock(r->clients[i], 1);
	int sampling = r->load_tasks && r->load_out;
	struct views views;
	int watching = r->views && vectl_views_open(&views, r->views, 1) == 0;
	long next = now_ms();
	for (;;) {
		int timeout = -1;
		if (sampling) {
			long t = now_ms();
			if (t >= next) {
				sample_load(r->load_tasks, r->load_out);
				next += LOAD_FREQ_MS;
				if (next <= t) // a long stall: sample on the grid again from now
					next = t + LOAD_FREQ_MS;
			}
			timeout = (int)(next - t);
		}
		struct pollfd fds[6 + MAXCLIENTS];
		int n = 0;
		fds[n++] = (struct pollfd){.fd = r->stopfd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = r->lfd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = r->pty, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = r->term_in, .events = POLLIN};
		for (int i = 0; i < r->nclients; i++)
			fds[n++] = (struct pollfd){.fd = r->clients[i], .events = POLLIN};
		int nc = n; // the clients end here
		if (watching)
			fds[n++] = (struct pollfd){.fd = views.fan, .events = POLLIN};
		int ns = n; // the signalfd, when there is one
		if (r->sigfd >= 0)
			fds[n++] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
		if (poll(fds, n, timeout) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (r->pty >= 0 && fds[2].revents) {
			ssize_t got = read(r->pty, buf, sizeof buf);
			if (got > 0) {
				vectl_log_write(buf, got);
				for (int i = 0; i < r->nclients; i++)
					if (write(r->clients[i], buf, got) < 0 && errno != EAGAIN)
						shutdown(r->clients[i], SHUT_RDWR);
				if (r->term_out >= 0)
					write_all(r->term_out, buf, got);
			} else if (got == 0 || errno != EINTR) {
				r->pty = -1; // everyone closed the console: keep watching for the stop only
			}
		}
		if (fds[1].revents & POLLIN) {
			int c = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (c >= 0 && r->nclients < MAXCLIENTS)
				r->clients[r->nclients++] = c;
			else if (c >= 0)
				close(c);
		}
		if (r->term_in >= 0 && fds[3].revents) {
			ssize_t got = read(r->term_in, buf, sizeof buf);
			if (got > 0 && r->pty >= 0)
				write_all(r->pty, buf, got);
			else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
				r->term_in = -1;
		}
		if (watching && fds[nc].revents)
			vectl_views_event(&views);
		if (r->sigfd >= 0 && fds[ns].revents)
			fg_signals(r->sigfd);
		for (int i = 4; i < nc; i++) {
			if (!fds[i].revents)
				continue;
			int c = fds[i].fd;
			ssize_t got = read(c, buf, sizeof buf);
			if (got > 0 && r->pty >= 0) {
				write_all(r->pty, buf, got);
			} else if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
				close(c);
				for (int j = 0; j < r->nclients; j++)
					if (r->clients[j] == c)
						r->clients[j] = r->clients[--r->nclients];
			}
		}
		if (fds[0].revents)
			break;
	}
	if (r->views)
		vectl_views_close(&views);
	// The last console output, then the clients go back to blocking mode for whoever
	// takes them over.
	if (r->pty >= 0) {
		set_nonblock(r->pty, 1);
		ssize_t got;
		while ((got = read(r->pty, buf, sizeof buf)) > 0) {
			vectl_log_write(buf, got);
			if (r->term_out >= 0)
				write_all(r->term_out, buf, got);
		}
	}
	for (int i = 0; i < r->nclients; i++)
		set_nonblock(r->clients[i], 0);
}

// The decoded hand-over message (proto.go); its strings point into the message, decoded
// on the stack (no page of its own).
struct handover {
	const char *veid, *runid, *logpath, *load_tasks, *load_out, *views, *stopmark;
	pid_t init;
	int pty, lfd, logfd, exefd;
	long logmax;
	const char *resume[256];
	int nresume;
};

// A foreground vectl's loop (idle.Handover.StopArgv): its stop command, the signals that run
// it and those forwarded to the init.
#define FG_MAXSIGS 16
static struct {
	const char *stop[256];
	int nstop;
	int stopsig[FG_MAXSIGS], nstopsig;
	int fwdsig[FG_MAXSIGS], nfwdsig;
	pid_t init, stopper; // the init; the stop command, once run
	int exefd;
	char **envp;
} fg = {.stopper = -1, .exefd = -1};

static int in_list(const int *list, int n, int sig)
{
	for (int i = 0; i < n; i++)
		if (list[i] == sig)
			return 1;
	return 0;
}

// fg_notify sends state to systemd's notification socket, as sd_notify does (the unit is
// Type=notify and the loop is its main process).
static void fg_notify(const char *state)
{
	const char *sock = NULL;
	for (char **e = fg.envp; e && *e; e++)
		if (strncmp(*e, "NOTIFY_SOCKET=", 14) == 0)
			sock = *e + 14;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = sock ? strlen(sock) : 0;
	if (n == 0 || n >= sizeof sa.sun_path || (sock[0] != '/' && sock[0] != '@'))
		return;
	memcpy(sa.sun_path, sock, n);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = 0; // an abstract socket
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
	       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
	close(fd);
}

// fg_stop runs the stop command once, with vectl's binary (through the descriptor the
// resume uses), the process's standard descriptors only and no signal blocked.
static void fg_stop(int sig)
{
	if (fg.stopper >= 0)
		return;
	// As the Go monitor words it (Go's names of the three; no strsignal: locale data).
	const char *name = sig == SIGTERM ? "terminated" : sig == SIGINT ? "interrupt" : sig == SIGHUP ? "hangup" : "signal";
	char line[96];
	snprintf(line, sizeof line, "vectl: %s: stopping the VE\n", name);
	log_msg(line);
	fg_notify("STOPPING=1");
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		syscall(SYS_close_range, 3U, ~0U, 4U /* CLOSE_RANGE_CLOEXEC */);
		if (fg.exefd >= 0)
			syscall(SYS_execveat, fg.exefd, "", (char **)fg.stop, fg.envp, AT_EMPTY_PATH);
		else
			execve("/proc/self/exe", (char **)fg.stop, fg.envp);
		_exit(127);
	}
	if (pid < 0) {
		log_msg("vectl: cannot run the stop: fork failed\n");
		return;
	}
	fg.stopper = pid;
}

// fg_signals handles what the foreground loop's signalfd holds: a stop signal runs the stop
// (once), the others go to the init.
static void fg_signals(int sigfd)
{
	struct signalfd_siginfo si;
	while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		int sig = (int)si.ssi_signo;
		if (in_list(fg.stopsig, fg.nstopsig, sig))
			fg_stop(sig);
		else if (in_list(fg.fwdsig, fg.nfwdsig, sig))
			kill(fg.init, sig);
	}
}

// vectl_stop_in_progress (idle.h): the start time in /proc/PID/stat, field 22, must match
// the marker's, so that a recycled pid is not taken for the stop.
int vectl_stop_in_progress(const char *path)
{
	char buf[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *end;
	long pid = strtol(buf, &end, 10);
	if (pid <= 0 || *end != ' ')
		return 0;
	unsigned long long start = strtoull(end + 1, NULL, 10);
	char statpath[64];
	snprintf(statpath, sizeof statpath, "/proc/%ld/stat", pid);
	fd = open(statpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	// After the command: state (field 3) ... starttime (field 22), 20 fields on.
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return 0;
	return strtoull(p + 1, NULL, 10) == start ? (int)pid : 0;
}

static void vectl_idle_fail(const char *why)
{
	char line[256];
	snprintf(line, sizeof line, "vectl: idle monitor: %s\n", why);
	log_msg(line);
	_exit(1);
}

void vectl_idle(int argc, char **argv, char **envp)
{
	if (argc >= 2 && strcmp(argv[1], IDLE_CLOSER_ARG) == 0)
		vectl_views_closer(argc, argv);
	if (argc >= 2 && strcmp(argv[1], IDLE_LAYOUT_ARG) == 0)
		vectl_layout_main(argc, argv);
	// argv[3] on only show ps what the loop will run again ("-- RESUME... ID").
	if (argc < 3 || strcmp(argv[1], IDLE_ARG) != 0)
		return;
	vectl_views_small(argc, argv);
	struct vectl_relay r = {.pty = -1, .lfd = -1, .term_in = -1, .term_out = -1, .stopfd = -1, .sigfd = -1};
	struct handover h = {0};
	// On the stack, whose pages are touched anyway; argv stays as ps shows it.
	size_t hexlen = strlen(argv[2]);
	if (hexlen > 2 * 65536)
		_exit(1);
	char msg[hexlen / 2 + 1];
	long n = wire_unhex(argv[2], msg, sizeof msg);
	if (n < 0)
		_exit(1);
	struct wire_attr a;
	size_t off = 0;
	int more;
	uint32_t version = 0;
	h.pty = h.lfd = h.logfd = h.exefd = -1;
	while ((more = wire_next(msg, (size_t)n, &off, &a)) > 0) {
		const char *str = wire_str(&a);
		uint32_t u = a.len == 4 ? wire_u32(a.p) : 0;
		switch (a.type) {
		case IDLE_ATTR_VERSION:
			version = u;
			break;
		case IDLE_ATTR_VEID:
			h.veid = str;
			break;
		case IDLE_ATTR_RUNID:
			h.runid = str;
			break;
		case IDLE_ATTR_INITPID:
			h.init = (pid_t)u;
			break;
		case IDLE_ATTR_PTYFD:
			h.pty = (int)u;
			break;
		case IDLE_ATTR_LISTENFD:
			h.lfd = (int)u;
			break;
		case IDLE_ATTR_LOGFD:
			h.logfd = (int)u;
			break;
		case IDLE_ATTR_LOGPATH:
			h.logpath = str;
			break;
		case IDLE_ATTR_LOGMAX:
			if (a.len == 8)
				h.logmax = (long)wire_u64(a.p);
			break;
		case IDLE_ATTR_CLIENTFD:
			if (a.len == 4 && r.nclients < MAXCLIENTS)
				r.clients[r.nclients++] = (int)u;
			break;
		case IDLE_ATTR_RESUMEARG:
			if (str && h.nresume < 250)
				h.resume[h.nresume++] = str;
			break;
		case IDLE_ATTR_LOADTASKS:
			h.load_tasks = str;
			break;
		case IDLE_ATTR_LOADOUT:
			h.load_out = str;
			break;
		case IDLE_ATTR_VIEWS:
			h.views = str;
			break;
		case IDLE_ATTR_STOPMARK:
			h.stopmark = str;
			break;
		case IDLE_ATTR_EXEFD:
			h.exefd = (int)u;
			break;
		case IDLE_ATTR_STOPARG:
			if (str && fg.nstop < 250)
				fg.stop[fg.nstop++] = str;
			break;
		case IDLE_ATTR_STOPSIGNAL:
			if (a.len == 4 && fg.nstopsig < FG_MAXSIGS)
				fg.stopsig[fg.nstopsig++] = (int)u;
			break;
		case IDLE_ATTR_FORWARDSIG:
			if (a.len == 4 && fg.nfwdsig < FG_MAXSIGS)
				fg.fwdsig[fg.nfwdsig++] = (int)u;
			break;
		default:
			vectl_idle_fail("unknown attribute in the hand-over");
		}
	}
	if (h.logfd >= 0 && h.logpath)
		vectl_log_open(h.logfd, h.logpath, h.logmax);
	if (more < 0 || version != IDLE_PROTO_VERSION || !h.veid || !h.runid || !h.logpath || h.init <= 0 ||
	    h.pty < 0 || h.lfd < 0 || h.logfd < 0 || h.nresume == 0 || h.logmax <= 0)
		vectl_idle_fail("malformed hand-over");
	fcntl(h.logfd, F_SETFD, FD_CLOEXEC);
	fcntl(h.pty, F_SETFD, FD_CLOEXEC);
	// execveat opens an ELF binary before it closes the close-on-exec descriptors.
	if (h.exefd >= 0)
		fcntl(h.exefd, F_SETFD, FD_CLOEXEC);
	// Hold the console's slave side open: a guest may close /dev/console between writes
	// (systemd does), and a master whose slaves are all closed reads EIO; we would stop
	// draining it and the guest would block on a full console.
	int peer = ioctl(h.pty, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	int pidfd = (int)syscall(SYS_pidfd_open, h.init, 0);
	if (pidfd < 0)
		vectl_idle_fail("cannot watch the init");
	// A foreground vectl's loop takes its signals, blocked since before the exec (any that
	// arrived meanwhile are pending), from a signalfd.
	int sigfd = -1;
	if (fg.nstop > 0) {
		fg.stop[fg.nstop] = NULL;
		fg.init = h.init;
		fg.exefd = h.exefd;
		fg.envp = envp;
		vectl_views_spawned();
		sigset_t set;
		sigemptyset(&set);
		for (int i = 0; i < fg.nstopsig; i++)
			sigaddset(&set, fg.stopsig[i]);
		for (int i = 0; i < fg.nfwdsig; i++)
			sigaddset(&set, fg.fwdsig[i]);
		sigprocmask(SIG_BLOCK, &set, NULL);
		signal(SIGPIPE, SIG_IGN); // a console client gone: EPIPE, not the unit's end
		sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
		if (sigfd < 0)
			vectl_idle_fail("cannot take the foreground vectl's signals");
	}
	// Relay until the init has exited (its pidfd turns readable), then reap it.
	r.pty = h.pty;
	r.lfd = h.lfd;
	r.stopfd = pidfd;
	r.load_tasks = h.load_tasks;
	r.load_out = h.load_out;
	r.views = h.views;
	r.sigfd = sigfd;
	int status = 0;
	vectl_relay(&r);
	while (waitpid(h.init, &status, 0) < 0 && errno == EINTR)
		;
	if (sigfd >= 0) {
		// A stop asked for meanwhile still runs (the Go monitor then finds the run ended);
		// the Go monitor takes the signals from here on, with the default dispositions.
		fg_signals(sigfd);
		close(sigfd);
		if (fg.stopper > 0)
			waitpid(fg.stopper, NULL, WNOHANG);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
	}
	int stopper = h.stopmark ? vectl_stop_in_progress(h.stopmark) : 0;
	if (stopper > 0) {
		char line[160];
		snprintf(line, sizeof line, "vectl: init ended (wait status %#x) during a stop (pid %d), which tears the VE down\n",
			 (unsigned)status, stopper);
		log_msg(line);
	}
	close(h.pty);
	if (peer >= 0)
		close(peer);
	close(pidfd);
	vectl_log_close();
	// The stop kills this monitor and tears down; running the Go monitor again would only
	// put a Go start (10 to 15 ms) on the stop's critical path before that kill.
	if (stopper > 0)
		_exit(0);

	// The resume message: who we are, the init's status, the listener and the clients.
	static char out[4096], hex[2 * sizeof out + 1];
	size_t on = 0;
	int bad = wire_put_u32(out, sizeof out, &on, IDLE_ATTR_VERSION, IDLE_PROTO_VERSION) ||
		  wire_put_str(out, sizeof out, &on, IDLE_ATTR_VEID, h.veid) ||
		  wire_put_str(out, sizeof out, &on, IDLE_ATTR_RUNID, h.runid) ||
		  wire_put_u32(out, sizeof out, &on, IDLE_ATTR_LISTENFD, (uint32_t)h.lfd) ||
		  wire_put_u32(out, sizeof out, &on, IDLE_ATTR_INITSTATUS, (uint32_t)status);
	for (int i = 0; i < r.nclients && !bad; i++)
		bad = wire_put_u32(out, sizeof out, &on, IDLE_ATTR_CLIENTFD, (uint32_t)r.clients[i]);
	if (bad)
		_exit(1);
	// The clients survive the exec into the Go monitor (accept4 made them close-on-exec).
	for (int i = 0; i < r.nclients; i++)
		fcntl(r.clients[i], F_SETFD, 0);
	wire_hex(out, on, hex);
	h.resume[h.nresume] = IDLE_RESUME_FLAG;
	h.resume[h.nresume + 1] = hex;
	h.resume[h.nresume + 2] = h.veid;
	h.resume[h.nresume + 3] = NULL;
	if (h.exefd >= 0)
		syscall(SYS_execveat, h.exefd, "", (char **)h.resume, envp, AT_EMPTY_PATH);
	else
		execve("/proc/self/exe", (char **)h.resume, envp);
	_exit(127);
}
