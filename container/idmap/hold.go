package idmap

/*
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

// The holder shares the caller's memory (CLONE_VM): a fork's copy would cost a page-table
// copy and then a copy-on-write fault for every page the Go runtime writes while the holder
// lives. It runs on a stack of its own, touches nothing else, and calls the kernel directly
// (the C library's wrappers would write errno, which lives in the caller's thread).
#if defined(__x86_64__)
static long hold_sys(long n, long a, long b, long c)
{
	long r;
	__asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
	return r;
}
#elif defined(__aarch64__)
static long hold_sys(long n, long a, long b, long c)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
	return x0;
}
#else
#error "vectl's namespace holder knows the system call convention of x86_64 and aarch64 only"
#endif

enum { HOLD_STACK = 64 << 10 };

struct hold_args {
	int fd, peer;
};

// hold_loop is the holder: with every signal blocked, it reads its end of a socket pair
// until EOF, which comes when the parent closes its end or dies. Each byte 'n' makes it
// unshare a new network namespace (owned by the user namespace it holds) and answer one
// byte: 0, or the errno.
static int hold_loop(void *p)
{
	struct hold_args *a = p;
	int fd = a->fd;
	hold_sys(SYS_close, a->peer, 0, 0);
	if (fd > 3)
		hold_sys(SYS_close_range, 3, fd - 1, 0);
	hold_sys(SYS_close_range, fd + 1, ~0U, 0);
	char b;
	while (hold_sys(SYS_read, fd, (long)&b, 1) > 0) {
		if (b != 'n')
			continue;
		long e = hold_sys(SYS_unshare, CLONE_NEWNET, 0, 0);
		char r = e < 0 ? (char)-e : 0;
		hold_sys(SYS_write, fd, (long)&r, 1);
	}
	hold_sys(SYS_exit_group, 0, 0, 0);
	return 0;
}

// vectl_hold starts the holder of new namespaces (flags: CLONE_NEW*) for Pin and Hold, with
// fd its end of the socket pair and peer the parent's. It returns the holder's pid and, in
// *stack, the holder's stack, to be unmapped (vectl_hold_free) once the holder is reaped.
// No exec and no second Go runtime: the child never returns to Go.
static int vectl_hold(int flags, int fd, int peer, void **stack)
{
	char *st = mmap(NULL, HOLD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (st == MAP_FAILED)
		return -1;
	struct hold_args *a = (struct hold_args *)st;
	a->fd = fd;
	a->peer = peer;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int pid = clone(hold_loop, st + HOLD_STACK, CLONE_VM | flags | SIGCHLD, a);
	int e = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		munmap(st, HOLD_STACK);
		errno = e;
		return -1;
	}
	*stack = st;
	return pid;
}

static void vectl_hold_free(void *stack)
{
	munmap(stack, HOLD_STACK);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// holdNS starts the holder of new namespaces of flags (CLONE_NEW*) and returns its pid, the
// descriptor that asks it for a network namespace (netRequest) and whose closing ends it,
// and a function that reaps it (after that closing) and frees its stack.
func holdNS(flags int) (pid int, end int, reap func(), err error) {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, -1, nil, err
	}
	var stack unsafe.Pointer
	r, errno := C.vectl_hold(C.int(flags), C.int(p[0]), C.int(p[1]), &stack)
	unix.Close(p[0])
	if r < 0 {
		unix.Close(p[1])
		return 0, -1, nil, fmt.Errorf("clone: %w", errno)
	}
	reap = func() {
		unix.Wait4(int(r), nil, 0, nil)
		C.vectl_hold_free(stack)
	}
	return int(r), p[1], reap, nil
}

// netRequest has the holder on end unshare a new network namespace.
func netRequest(end int) error {
	if _, err := unix.Write(end, []byte{'n'}); err != nil {
		return err
	}
	var b [1]byte
	n, err := unix.Read(end, b[:])
	switch {
	case err != nil:
		return err
	case n == 0:
		return errors.New("the namespace holder exited")
	case b[0] != 0:
		return unix.Errno(b[0])
	}
	return nil
}
