package monitor

/*
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pid_t vectl_hold_tid;
static struct sigaction vectl_hold_old[65];

// A held signal that reaches another thread is sent on to the holding thread, where it is
// blocked: it stays pending there, and an exec keeps it.
static void vectl_hold_redirect(int sig)
{
	int e = errno;
	syscall(SYS_tgkill, getpid(), vectl_hold_tid, sig);
	errno = e;
}

static void vectl_hold_set(sigset_t *set, const int *sigs, int n)
{
	sigemptyset(set);
	for (int i = 0; i < n; i++)
		sigaddset(set, sigs[i]);
}

static int vectl_hold(const int *sigs, int n)
{
	sigset_t set;
	vectl_hold_set(&set, sigs, n);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
		return -1;
	vectl_hold_tid = (pid_t)syscall(SYS_gettid);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = vectl_hold_redirect;
	sa.sa_flags = SA_ONSTACK | SA_RESTART; // on the Go thread's signal stack
	sigfillset(&sa.sa_mask);
	for (int i = 0; i < n; i++)
		if (sigs[i] > 0 && sigs[i] < 65)
			sigaction(sigs[i], &sa, &vectl_hold_old[sigs[i]]);
	return 0;
}

static void vectl_release(const int *sigs, int n)
{
	for (int i = 0; i < n; i++)
		if (sigs[i] > 0 && sigs[i] < 65)
			sigaction(sigs[i], &vectl_hold_old[sigs[i]], NULL);
	sigset_t set;
	vectl_hold_set(&set, sigs, n);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
*/
import "C"

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The signals a foreground vectl (start --foreground) takes: StopSignals stop the VE
// gracefully, ForwardedSignals go to its init. The command subscribes to ForegroundSignals.
var (
	StopSignals      = []syscall.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP}
	ForwardedSignals = []syscall.Signal{unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT}
)

// ForegroundSignals is StopSignals and ForwardedSignals, for signal.Notify.
func ForegroundSignals() []os.Signal {
	var out []os.Signal
	for _, s := range foregroundSignals() {
		out = append(out, s)
	}
	return out
}

func foregroundSignals() []syscall.Signal {
	return append(append([]syscall.Signal(nil), StopSignals...), ForwardedSignals...)
}

func signalInts(sigs []syscall.Signal) []int {
	out := make([]int, len(sigs))
	for i, s := range sigs {
		out[i] = int(s)
	}
	return out
}

// holdSignals readies a foreground vectl's exec into the idle loop, which takes its signals
// from a signalfd (idle.Handover.StopArgv), without losing one on the way: it locks the
// goroutine to its thread, blocks ForegroundSignals there and has any other thread that
// receives one send it on to this one (where it stays pending, and the exec keeps it),
// waits until Go's signal handling has delivered what it caught before (a signal of its own
// sent after, delivered in order after these), and sends on what sigs holds likewise. The
// release it returns undoes that (when the exec failed): the pending signals then reach sigs.
func holdSignals(sigs <-chan os.Signal) (release func(), err error) {
	held := make([]C.int, 0, len(StopSignals)+len(ForwardedSignals))
	for _, s := range signalInts(foregroundSignals()) {
		held = append(held, C.int(s))
	}
	runtime.LockOSThread()
	if C.vectl_hold(&held[0], C.int(len(held))) != 0 {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("block the signals")
	}
	// SIGWINCH (numbered above all the held ones, which Go's signal loop hands out in
	// ascending order of a batch) comes out of that loop after any held signal it caught
	// before the handlers changed.
	flushed := make(chan os.Signal, 1)
	signal.Notify(flushed, unix.SIGWINCH)
	unix.Kill(os.Getpid(), unix.SIGWINCH)
	select {
	case <-flushed:
	case <-time.After(time.Second):
	}
	signal.Stop(flushed)
	tid := unix.Gettid()
	for drained := false; !drained; {
		select {
		case s := <-sigs:
			if sig, ok := s.(syscall.Signal); ok {
				unix.Tgkill(os.Getpid(), tid, sig)
			}
		default:
			drained = true
		}
	}
	return func() {
		C.vectl_release(&held[0], C.int(len(held)))
		runtime.UnlockOSThread()
	}, nil
}
