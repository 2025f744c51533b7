// Per-VE views of /proc/meminfo, cpuinfo, loadavg, stat, swaps and diskstats and of
// /sys/devices/system/cpu/{online,possible,present}: files in the VE's run directory, bind-mounted over those paths inside the VE,
// and rendered from the VE's cgroups by the relay whenever something opens one (a fanotify
// open-permission event holds the open until the file is rewritten). Without a relay (its
// monitor killed) the files keep their last content: reads never fail.
#ifndef VECTL_VIEWS_H
#define VECTL_VIEWS_H

#include <sys/types.h>

enum { VIEW_MEMINFO, VIEW_CPUINFO, VIEW_CPUS, VIEW_LOADAVG, VIEW_STAT, VIEW_SWAPS, VIEW_DISKSTATS, NVIEWS };

struct views {
	char dir[1024];    // where the files are
	char mem[1024];    // the VE's memory cgroup directory
	char cpu[1024];    // its cpu controller's (cpu.max or cpu.cfs_quota_us)
	char cpuset[1024]; // its cpuset's
	char cpuacct[1024]; // its CPU accounting's (cpu.stat or cpuacct.stat)
	char blkio[1024];  // its block I/O accounting's (io.stat or blkio.throttle.*)
	char load[1024];   // the load average file its relay keeps (idle.Load.Out)
	int fd[NVIEWS];
	dev_t dev[NVIEWS];
	ino_t ino[NVIEWS];
	int fan; // the fanotify group, -1 when not watching
};

// vectl_views_open takes the spec "DIR\nMEMCG\nCPUCG\nCPUSETCG\nCPUACCTCG\nBLKIOCG\nLOADAVG"
// and makes the files; when watch is set it watches their opens (v->fan), and each open
// renders its file. Unwatched files are rendered at once. It returns -1 when the views
// cannot be kept live (v->fan stays -1; the files are rendered and kept).
int vectl_views_open(struct views *v, const char *spec, int watch);
// vectl_views_event renders the files being opened and lets the opens go on.
void vectl_views_event(struct views *v);
// vectl_views_close stops watching and closes the files. The fanotify group is closed in
// place when the kernel's SRCU grace periods are expedited (vectl_srcu_expedited), else by
// the closer.
void vectl_views_close(struct views *v);
int vectl_srcu_expedited(const char *dir);

// vectl_views_small tells the views that this process is the idle loop's program, whose
// arguments are argv: a closer is then a copy of it (close_fan_elsewhere in views.c).
void vectl_views_small(int argc, char **argv);
// vectl_views_spawned undoes vectl_views_small's choice of closer for a foreground vectl's
// loop (idle.Handover.StopArgv): its parent is whatever started it, which need not reap
// children it does not know (systemd does; a Go program does not), so its closer is spawned
// and forks, an orphan, as the Go monitor's is.
void vectl_views_spawned(void);
// vectl_views_closer_program makes a Go monitor's spawned closer run path (the idle loop's
// program, which has vectl_views_closer too) instead of the process's own program; path must
// stay valid. When it cannot be started the closer runs the process's own program.
void vectl_views_closer_program(const char *path);
// vectl_views_closer is the views' closer (close_fan_elsewhere in views.c), run as
// "vectl-views-closer __views-closer SYNCFD FANFD [VIEWFD...]"; it does not return.
__attribute__((noreturn)) void vectl_views_closer(int argc, char **argv);

#endif
