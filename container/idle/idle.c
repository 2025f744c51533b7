// The idle loop of a VE's monitor; see idle.go. It must stay small and never allocate much:
// its resident memory is the cost of every running VE.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "proto.h"
#include "wire.h"

#define MAXCLIENTS IDLE_MAX_CLIENTS
#define BUFSIZE 16384

static int logfd = -1;
static long logsize, logmax;
static const char *logpath;

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

// log_write appends console output without carriage returns, rotating the log to
// LOGPATH.1 when it would grow past LOGMAX.
static void log_write(const char *buf, size_t n)
{
	static char clean[BUFSIZE];
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != '\r')
			clean[m++] = buf[i];
	if (logfd < 0 || m == 0)
		return;
	if (logsize + (long)m > logmax) {
		char old[4096];
		snprintf(old, sizeof old, "%s.1", logpath);
		close(logfd);
		rename(logpath, old);
		logfd = open(logpath, O_CREAT | O_WRONLY | O_APPEND | O_TRUNC | O_CLOEXEC, 0640);
		logsize = 0;
		if (logfd < 0)
			return;
	}
	write_all(logfd, clean, m);
	logsize += m;
}

static void log_msg(const char *msg)
{
	log_write(msg, strlen(msg));
}

// handover is the decoded hand-over message (proto.go); its strings point into msg.
static char msg[1 << 16];
static struct {
	const char *veid, *runid;
	pid_t init;
	int pty, lfd;
	const char *resume[256];
	int nresume;
} h;

static void vectl_idle_fail(const char *why)
{
	char line[256];
	snprintf(line, sizeof line, "vectl: idle monitor: %s\n", why);
	log_msg(line);
	_exit(1);
}

void vectl_idle(int argc, char **argv, char **envp)
{
	// argv[3] on only show ps what the loop will run again ("-- RESUME... ID").
	if (argc < 3 || strcmp(argv[1], IDLE_ARG) != 0)
		return;
	int clients[MAXCLIENTS], nclients = 0;
	long n = wire_unhex(argv[2], msg, sizeof msg);
	if (n < 0)
		_exit(1);
	struct wire_attr a;
	size_t off = 0;
	int more;
	uint32_t version = 0;
	h.pty = h.lfd = -1;
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
			logfd = (int)u;
			break;
		case IDLE_ATTR_LOGPATH:
			logpath = str;
			break;
		case IDLE_ATTR_LOGMAX:
			if (a.len == 8)
				logmax = (long)wire_u64(a.p);
			break;
		case IDLE_ATTR_CLIENTFD:
			if (a.len == 4 && nclients < MAXCLIENTS)
				clients[nclients++] = (int)u;
			break;
		case IDLE_ATTR_RESUMEARG:
			if (str && h.nresume < 250)
				h.resume[h.nresume++] = str;
			break;
		default:
			vectl_idle_fail("unknown attribute in the hand-over");
		}
	}
	if (more < 0 || version != IDLE_PROTO_VERSION || !h.veid || !h.runid || !logpath || h.init <= 0 ||
	    h.pty < 0 || h.lfd < 0 || h.nresume == 0 || logmax <= 0)
		vectl_idle_fail("malformed hand-over");
	pid_t init = h.init;
	int pty = h.pty, lfd = h.lfd;
	struct stat st;
	if (fstat(logfd, &st) == 0)
		logsize = st.st_size;
	fcntl(logfd, F_SETFD, FD_CLOEXEC);
	fcntl(pty, F_SETFD, FD_CLOEXEC);
	// Hold the console's slave side open: a guest may close /dev/console between writes
	// (systemd does), and a master whose slaves are all closed reads EIO; we would stop
	// draining it and the guest would block on a full console.
	int peer = ioctl(pty, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	for (int i = 0; i < nclients; i++)
		fcntl(clients[i], F_SETFL, fcntl(clients[i], F_GETFL) | O_NONBLOCK);

	int pidfd = (int)syscall(SYS_pidfd_open, init, 0);
	if (pidfd < 0) {
		log_msg("vectl: idle monitor: cannot watch the init\n");
		_exit(1);
	}
	static char buf[BUFSIZE];
	int status = 0;
	for (;;) {
		struct pollfd fds[3 + MAXCLIENTS];
		int n = 0;
		fds[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		fds[n++] = (struct pollfd){.fd = pty, .events = POLLIN};
		for (int i = 0; i < nclients; i++)
			fds[n++] = (struct pollfd){.fd = clients[i], .events = POLLIN};
		if (poll(fds, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (fds[2].revents) {
			ssize_t r = read(pty, buf, sizeof buf);
			if (r > 0) {
				log_write(buf, r);
				for (int i = 0; i < nclients; i++)
					if (write(clients[i], buf, r) < 0 && errno != EAGAIN)
						shutdown(clients[i], SHUT_RDWR);
			} else if (r == 0 || errno != EINTR) {
				close(pty); // everyone closed the console: keep watching the init only
				pty = -1;
			}
		}
		if (fds[1].revents & POLLIN) {
			int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK); // kept open across the resume
			if (c >= 0 && nclients < MAXCLIENTS)
				clients[nclients++] = c;
			else if (c >= 0)
				close(c);
		}
		for (int i = 3; i < n; i++) {
			if (!fds[i].revents)
				continue;
			int c = fds[i].fd;
			ssize_t r = read(c, buf, sizeof buf);
			if (r > 0 && pty >= 0) {
				write_all(pty, buf, r);
			} else if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				close(c);
				for (int j = 0; j < nclients; j++)
					if (clients[j] == c)
						clients[j] = clients[--nclients];
			}
		}
		if (fds[0].revents & POLLIN) {
			if (waitpid(init, &status, 0) == init || errno == ECHILD)
				break;
		}
	}
	// Last console output, then hand over to the Go monitor.
	if (pty >= 0) {
		fcntl(pty, F_SETFL, fcntl(pty, F_GETFL) | O_NONBLOCK);
		ssize_t r;
		while ((r = read(pty, buf, sizeof buf)) > 0)
			log_write(buf, r);
		close(pty);
	}
	if (peer >= 0)
		close(peer);
	close(pidfd);
	if (logfd >= 0)
		close(logfd);

	// The resume message: who we are, the init's status, the listener and the clients.
	static char out[4096], hex[2 * sizeof out + 1];
	size_t on = 0;
	int bad = wire_put_u32(out, sizeof out, &on, IDLE_ATTR_VERSION, IDLE_PROTO_VERSION) ||
		  wire_put_str(out, sizeof out, &on, IDLE_ATTR_VEID, h.veid) ||
		  wire_put_str(out, sizeof out, &on, IDLE_ATTR_RUNID, h.runid) ||
		  wire_put_u32(out, sizeof out, &on, IDLE_ATTR_LISTENFD, (uint32_t)lfd) ||
		  wire_put_u32(out, sizeof out, &on, IDLE_ATTR_INITSTATUS, (uint32_t)status);
	for (int i = 0; i < nclients && !bad; i++) {
		fcntl(clients[i], F_SETFL, fcntl(clients[i], F_GETFL) & ~O_NONBLOCK);
		bad = wire_put_u32(out, sizeof out, &on, IDLE_ATTR_CLIENTFD, (uint32_t)clients[i]);
	}
	if (bad)
		_exit(1);
	wire_hex(out, on, hex);
	h.resume[h.nresume] = IDLE_RESUME_FLAG;
	h.resume[h.nresume + 1] = hex;
	h.resume[h.nresume + 2] = h.veid;
	h.resume[h.nresume + 3] = NULL;
	execve("/proc/self/exe", (char **)h.resume, envp);
	_exit(127);
}
