#ifndef VECTL_PREFAULT_THP_H
#define VECTL_PREFAULT_THP_H

#include <stddef.h>

// 2 MiB is a block of order 9 (4 KiB pages).
#define THP_ORDER 9
// The free 2 MiB blocks (counting larger blocks as several) below which nothing is advised.
#define THP_MIN_FREE_BLOCKS 64

// vectl_thp_free_blocks counts the free 2 MiB blocks in the text of /proc/buddyinfo.
int vectl_thp_free_blocks(const char *buddyinfo);
// vectl_thp_stays says whether argv is a command whose process lives on as a Go program: a
// foreground restore or resume (the VE's monitor), a foreground start with a terminal on its
// input (tty) or resumed from the idle loop, enter and console (a session).
int vectl_thp_stays(int argc, char **argv, int tty);
// vectl_thp_note advises MADV_HUGEPAGE for a mapping the runtime just made when it is a commit
// of heap and advising is on; it returns whether it did.
int vectl_thp_note(void *p, size_t len, int prot, int flags);
// vectl_thp_start turns advising on or off (tests; the constructor decides for a program).
void vectl_thp_start(int on);
// vectl_thp_settle turns advising off and advises MADV_NOHUGEPAGE for every range advised so
// far; it returns their number.
int vectl_thp_settle(void);

#endif
