// Package libccompat adds what a C library other than glibc lacks for vectl's static links
// (libccompat.c; the Makefile links musl, see "The C library" there). Every program that
// links libseccomp imports it: vectl (through nsjoin) and libcontainer's init program
// (container/lcinit/helper). It has no Go API.
package libccompat

import "C"
