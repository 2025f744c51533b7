package idmap

/*
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

// vectl_hold forks the holder of new namespaces (flags: CLONE_NEW*) for Pin: a copy of the
// calling thread that runs nothing but the loop below, with every signal blocked, until the
// pipe it reads (rfd; wfd is the parent's end) reaches EOF, which it does when the parent
// closes its end or dies. No exec and no second Go runtime: the child never returns to Go,
// and makes only raw system calls.
static int vectl_hold(int flags, int rfd, int wfd)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	long pid = syscall(SYS_clone, (long)flags | SIGCHLD, 0L, 0L, 0L, 0L);
	if (pid == 0) {
		syscall(SYS_close, wfd);
		if (rfd > 3)
			syscall(SYS_close_range, 3, rfd - 1, 0);
		syscall(SYS_close_range, rfd + 1, ~0U, 0);
		char b;
		while (syscall(SYS_read, rfd, &b, 1) > 0)
			;
		syscall(SYS_exit_group, 0);
	}
	int e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = e;
	return (int)pid;
}
*/
import "C"

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// hold starts the holder of new namespaces of flags (CLONE_NEW*) and returns its pid and the
// descriptor whose closing ends it.
func hold(flags int) (pid int, end int, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return 0, -1, err
	}
	r, errno := C.vectl_hold(C.int(flags), C.int(p[0]), C.int(p[1]))
	unix.Close(p[0])
	if r < 0 {
		unix.Close(p[1])
		return 0, -1, fmt.Errorf("clone: %w", errno)
	}
	return int(r), p[1], nil
}
