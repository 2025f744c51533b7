// Laying out vectl's programs in the page cache in 2 MiB folios (see layout.c).
#ifndef VECTL_LAYOUT_H
#define VECTL_LAYOUT_H

// vectl_layout_main is the layout helper, run as "vectl-layout __layout FILE..." (by
// idle.LayOut); it does not return.
__attribute__((noreturn)) void vectl_layout_main(int argc, char **argv);

// vectl_layout_file lays out one file (see layout.c). It returns 1 when some of it was read
// again, 0 when it already was in 2 MiB folios or is too small to hold one, -1 when a block
// could not be laid out or on an error.
int vectl_layout_file(const char *path);

#endif
