// The console relay and log writer of idle.c, for the idle loop and (through cgo) the Go
// monitor.
#ifndef VECTL_IDLE_H
#define VECTL_IDLE_H

#include <stddef.h>

#include "proto.h"

// vectl_relay is one relay's state. Descriptors of -1 are absent.
struct vectl_relay {
	int pty;      // the console pty master; set to -1 when everyone closed the console
	int lfd;      // the console socket's listener: vectl console clients
	int clients[IDLE_MAX_CLIENTS];
	int nclients; // connected clients, updated as they come and go
	int term_in;  // the foreground terminal's input, -1 when none (or at its end)
	int term_out; // the foreground terminal's output, -1 when none
	int stopfd;   // relaying ends when this turns readable
	// The load average (idle.Load): the thread list sampled every 5 s and the file the
	// averages go to; NULL for none.
	const char *load_tasks, *load_out;
	// The VE's /proc and /sys views (views.h): "DIR\nMEMCG\nCPUCG\nCPUSETCG\nCPUACCTCG\nBLKIOCG\nLOADAVG",
	// NULL for none.
	const char *views;
	// The foreground idle loop's signalfd (idle.Handover.StopArgv), read whenever it turns
	// readable; -1 for none (a background loop, the Go monitor's relays).
	int sigfd;
};

// vectl_relay copies the console's output to the log, the clients and the terminal, and
// what the clients and the terminal type to the console, until stopfd turns readable; then
// it drains the console into the log and returns. The clients are left connected, in
// blocking mode, for whoever relays next.
void vectl_relay(struct vectl_relay *r);

// The console log: vectl_log_open makes fd (open for appending at path) the log, rotated
// once to path.1 when it would grow past max; vectl_log_write appends without carriage
// returns; vectl_log_fd is the current descriptor (it changes at rotation). Thread-safe.
void vectl_log_open(int fd, const char *path, long max);
void vectl_log_write(const char *buf, size_t n);
int vectl_log_fd(void);
void vectl_log_close(void);

// vectl_stop_in_progress returns the pid a stop marker (idle.Handover.StopMark: "PID
// STARTTIME") names if that process is alive, else 0.
int vectl_stop_in_progress(const char *path);

#endif
