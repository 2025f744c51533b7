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

#define MAXCLIENTS 16
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

void vectl_idle(int argc, char **argv, char **envp)
{
	if (argc < 11 || strcmp(argv[1], "__monitor-idle") != 0 || strcmp(argv[9], "--") != 0)
		return;
	pid_t init = atoi(argv[2]);
	int pty = atoi(argv[3]), lfd = atoi(argv[4]);
	logfd = atoi(argv[5]);
	logpath = argv[6];
	logmax = atol(argv[7]);
	int clients[MAXCLIENTS], nclients = 0;
	if (strcmp(argv[8], "-") != 0)
		for (char *s = argv[8]; *s && nclients < MAXCLIENTS;) {
			clients[nclients++] = (int)strtol(s, &s, 10);
			if (*s == ',')
				s++;
		}
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

	char statusarg[16], fdlist[16 * MAXCLIENTS] = "-";
	snprintf(statusarg, sizeof statusarg, "%d", status);
	for (int i = 0, off = 0; i < nclients; i++) {
		fcntl(clients[i], F_SETFL, fcntl(clients[i], F_GETFL) & ~O_NONBLOCK);
		off += snprintf(fdlist + off, sizeof fdlist - off, i ? ",%d" : "%d", clients[i]);
	}
	int rn = argc - 10;
	char **resume = calloc(rn + 5, sizeof *resume);
	if (!resume)
		_exit(1);
	memcpy(resume, argv + 10, rn * sizeof *resume);
	resume[rn] = "--init-status";
	resume[rn + 1] = statusarg;
	resume[rn + 2] = "--client-fds";
	resume[rn + 3] = fdlist;
	execve("/proc/self/exe", resume, envp);
	_exit(127);
}
