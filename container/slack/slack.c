// sysmon's timer slack (see slack.go).
//
// vectl, vectl-init and the CNI plugins are linked with -Wl,--wrap=pthread_create (the
// Makefile): the Go runtime's cgo part creates every thread of the process through
// pthread_create, and that call lands in __wrap_pthread_create below. The runtime's first
// thread is sysmon (runtime.main starts it before anything else that makes a thread, and no C
// code of these programs makes one), which starts with a timer slack of SYSMON_SLACK_NS.
// Every later thread starts with the slack the process's main thread had when the program
// began, whichever thread creates it: a new thread inherits its creator's slack, and sysmon
// creates threads too (when it hands a P over), which would otherwise pass its slack on to
// all they execute.

#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "slack.h"

// Weak, so that a link without --wrap=pthread_create (go test, go vet) needs no
// __real_pthread_create: there nothing calls __wrap_pthread_create either. The Makefile's
// -Wl,-u,pthread_create makes a static link take musl's pthread_create, which a weak
// reference alone would not.
extern int __real_pthread_create(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *)
	__attribute__((weak));

static int threads;          // threads started through the wrapper so far
static long main_slack = -1; // the main thread's slack when the program began

__attribute__((constructor)) static void vectl_slack_init(void) {
	main_slack = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
}

struct slack_start {
	void *(*fn)(void *);
	void *arg;
	unsigned long slack;
};

static void *slack_entry(void *p) {
	struct slack_start s = *(struct slack_start *)p;
	free(p);
	prctl(PR_SET_TIMERSLACK, s.slack, 0, 0, 0);
	return s.fn(s.arg);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
	long slack = __atomic_fetch_add(&threads, 1, __ATOMIC_RELAXED) == 0 ? SYSMON_SLACK_NS : main_slack;
	struct slack_start *s = slack > 0 ? malloc(sizeof *s) : NULL;
	if (s == NULL) {
		return __real_pthread_create(t, attr, fn, arg);
	}
	s->fn = fn;
	s->arg = arg;
	s->slack = (unsigned long)slack;
	int err = __real_pthread_create(t, attr, slack_entry, s);
	if (err != 0) {
		free(s);
	}
	return err;
}
