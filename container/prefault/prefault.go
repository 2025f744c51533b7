// Package prefault makes a short-lived process's Go heap cheaper to grow: Heap maps the part
// it is about to use in one system call, instead of one page fault per fresh page, and
// thp.go puts the heap in transparent huge pages from the runtime's first commit (through
// the runtime's mmap, see thp.c), one fault per 2 MiB.
//
// A page fault is a trap into the kernel and, on a virtual machine with shadow page tables
// (the PVM machine of 2026-12-05), out to the hypervisor: a VE's start took about 1,350 of
// them, some 500 in the vectl process's heap. madvise(MADV_POPULATE_WRITE) (Linux 5.14)
// makes the same pages present in one call, at less than a tenth of a fault's cost per page
// (a C probe here: 11 to 12 us per touched page, 0.7 to 0.9 us per populated one).
//
// The Go heap grows upward from its start (the runtime's page allocator hands out the lowest
// free pages first), so the pages just above a new large allocation are the ones the next
// allocations take. What Heap populates and the process never uses stays resident until the
// runtime's scavenger returns it or the process ends: callers are processes that end (or
// execute another program) soon, and they ask for about what they use.
package prefault

import (
	"runtime"
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14); syscall has no name for it, and
// golang.org/x/sys/unix would be this leaf package's only dependency.
const madvPopulateWrite = 23

// Heap makes the n bytes of heap above its current top present. It is best effort: the
// runtime maps its heap in 4 MiB steps, and madvise stops where the range runs into heap
// only reserved so far (PROT_NONE, EINVAL) or past the reservation (ENOMEM): allocations
// there fault as before. A kernel before 5.14 (EINVAL) or a cgroup's memory limit stop it
// too.
func Heap(n uintptr) { populate(n) }

// populate is Heap; it returns the first address it populated and madvise's error.
func populate(n uintptr) (uintptr, syscall.Errno) {
	// A large object (more than 32 KiB) takes whole pages from the page allocator: its
	// address is the heap's top, or a hole below it that it fits.
	b := make([]byte, 64<<10)
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b))) &^ (4096 - 1)
	_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, p, n, madvPopulateWrite)
	runtime.KeepAlive(b)
	return p, errno
}
