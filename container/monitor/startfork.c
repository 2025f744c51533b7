// The fork that lets "vectl start" and "vectl restore" become their VE's monitor (see
// startfork.go).
//
// A VE's monitor must be the parent of the VE's init, which libcontainer starts as a child
// of the process that creates the container, and the caller of "vectl start" waits for the
// process it ran to exit. So the process it ran must not be the one that goes on: before the
// Go runtime starts, the constructor forks. The parent waits, doing nothing else, for the
// child's outcome and exits with it; the child runs vectl, and once the VE runs it reports
// the command's exit status through a pipe (vectl_start_detach) and stays as the monitor.
// Without the report (any other outcome: an error, another kind of start, or a start that
// does not become the monitor) the parent exits as the child did, so that the fork is
// invisible to the caller. This saves the separate monitor process, a second Go runtime on
// every start and restore.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmdline.h"
#include "startfork.h"

// The write end of the pipe to the waiting parent, in the child; -1 in any other process.
int vectl_start_report_fd = -1;

static pid_t start_child;

// start_wants_fork says whether argv is a background start or a restore of vectl's own
// command line: "start", "restore" or "resume" as the command after the global options (each
// of which takes a value) and no --foreground among the options. Under systemd (NOTIFY_SOCKET) no start forks: a
// foreground monitor's notifications must come from the unit's main process. The guess
// only has to be safe, not exact: the child decides whether it becomes the monitor, and
// when it does not the fork is invisible.
int vectl_start_wants_fork(int argc, char **argv, char **envp) {
	if (argc < 3) {
		return 0;
	}
	const char *base = vectl_cmdline_base(argv[0]);
	if (strcmp(base, "vzctl") == 0 || strcmp(base, "vzlist") == 0) {
		return 0;
	}
	for (char **e = envp; e && *e; e++) {
		if (strncmp(*e, "NOTIFY_SOCKET=", 14) == 0) {
			return 0;
		}
	}
	int i = vectl_cmdline_command(argc, argv, 1);
	if (i >= argc || (strcmp(argv[i], "start") != 0 && strcmp(argv[i], "restore") != 0 &&
	                  strcmp(argv[i], "resume") != 0)) {
		return 0;
	}
	// Not with --foreground (or -F in a cluster of short options), --wait, --no-monitor or
	// --help (or -h).
	static const char *const stay[] = {"foreground", "wait", "no-monitor", "help", NULL};
	return !vectl_cmdline_any(argc, argv, i + 1, stay, "F");
}

static void start_forward(int sig) {
	if (start_child > 0) {
		kill(start_child, sig);
	}
}

void vectl_start_fork(int argc, char **argv, char **envp) {
	if (!vectl_start_wants_fork(argc, argv, envp)) {
		return;
	}
	// Standard input, output and error must be open (/dev/null where the caller closed
	// them), so that neither the pipe nor anything the monitor keeps gets one of their
	// numbers, which Detach replaces.
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int nul = open("/dev/null", O_RDWR);
			if (nul >= 0 && nul != fd) {
				dup2(nul, fd);
				close(nul);
			}
		}
	}
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		return; // no fork: vectl spawns a monitor as without one
	}
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		// The child may live on as the monitor for as long as the VE runs: it must not keep
		// what the caller left open (a script's lock, the other end of a pipe), which a
		// spawned monitor never inherited. The start itself uses none of it.
		close(p[0]);
		if (p[1] > 3) {
			syscall(SYS_close_range, 3, p[1] - 1, 0);
		}
		syscall(SYS_close_range, p[1] + 1, ~0U, 0);
		vectl_start_report_fd = p[1];
		return;
	}
	close(p[1]);
	start_child = pid;
	// Signals sent to the command the caller ran (timeout(1), kill) reach the start.
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = start_forward;
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
	for (size_t k = 0; k < sizeof(sigs) / sizeof(sigs[0]); k++) {
		sigaction(sigs[k], &sa, NULL);
	}
	unsigned char code;
	ssize_t n;
	do {
		n = read(p[0], &code, 1);
	} while (n < 0 && errno == EINTR);
	if (n == 1) {
		_exit(code);
	}
	int ws;
	while (waitpid(pid, &ws, 0) < 0) {
		if (errno != EINTR) {
			_exit(1);
		}
	}
	if (WIFSIGNALED(ws)) {
		// Die the same way, so that the caller sees what happened to the start.
		int sig = WTERMSIG(ws);
		signal(sig, SIG_DFL);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	_exit(WEXITSTATUS(ws));
}

int vectl_start_detach(int logfd, unsigned char status) {
	if (vectl_start_report_fd < 0) {
		errno = EBADF;
		return -1;
	}
	// Whatever fails here, the parent gets its report: the VE runs and this is its monitor.
	// status is the exit status the parent exits with (0 unless the command failed after
	// the VE came up, as a restore whose dump could not be removed).
	int err = 0;
	int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (logfd < 0) {
		logfd = nul;
	}
	if (nul < 0 || dup2(nul, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0 || chdir("/") < 0) {
		err = errno;
	}
	if (nul >= 0) {
		close(nul);
	}
	setsid(); // fails only for a group leader, which the child of a fork is not
	ssize_t n;
	do {
		n = write(vectl_start_report_fd, &status, 1);
	} while (n < 0 && errno == EINTR);
	// A parent killed meanwhile (EPIPE) changes nothing either.
	close(vectl_start_report_fd);
	vectl_start_report_fd = -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}
