package prefault

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestFreeBlocks: the free 2 MiB blocks counted from /proc/buddyinfo's text (one column per
// order from 0; a block of order 10 is two of order 9).
func TestFreeBlocks(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       int
	}{
		{"this machine's shape", `Node 0, zone      DMA      0      0      0      0      0      0      0      0      1      1      3 
Node 0, zone    DMA32      0      4      2      2      1      2      0      3      3      1    753 
Node 0, zone   Normal   4176   4592   4839   3857   3036   2110   1546    687    300    196    569 
`, 1 + 3*2 + 1 + 753*2 + 196 + 569*2},
		{"fragmented", "Node 0, zone   Normal   9000   4000   2000   100   50   20   10   5   2   0   0\n", 0},
		{"two nodes, no final newline", "Node 0, zone Normal 1 1 1 1 1 1 1 1 1 4 0\nNode 1, zone Normal 0 0 0 0 0 0 0 0 0 0 5", 4 + 10},
		{"a kernel with fewer orders", "Node 0, zone Normal 5 5 5 5 5 5 5 5 5 7\n", 7},
		{"empty", "", 0},
		{"not buddyinfo", "hello\nworld 1 2 3\n", 0},
	} {
		if got := freeBlocks(tc.text); got != tc.want {
			t.Errorf("%s: %d free 2 MiB blocks, want %d", tc.name, got, tc.want)
		}
	}
}

// TestStays: no huge pages for the processes that live on as Go programs (a foreground
// restore or resume, a foreground start with a terminal or resumed from the idle loop,
// enter, console), whatever the options around the command; a foreground start without a
// terminal (a unit's) rests in the idle loop once its VE runs, and is advised.
func TestStays(t *testing.T) {
	for _, tc := range []struct {
		line string
		tty  bool
		want bool
	}{
		{"vectl start 101", false, false},
		{"vectl start 101", true, false},
		{"vectl start --foreground 101", false, false},
		{"vectl start --foreground 101", true, true},
		{"vectl start 101 -F", true, true},
		{"vectl --root /x --run-dir=/r start --foreground=true 101", true, true},
		{"vectl start -xF 101", true, true},
		{"vectl start 101 --fore", true, true},
		{"vectl start --foreground --wait --timeout 120 101", false, false},
		{"vectl start --foreground --resume 0800 101", false, true},
		{"vectl start -F --timeout 9 --res=0800 101", false, true},
		{"vectl start --foreground 101 -- -F", false, true},
		{"vectl start 101 --wait", true, false},
		{"vectl start 101 -- -F", true, true},
		{"vectl restore 101 --foreground", false, true},
		{"vectl resume 101 -F", false, true},
		{"vectl enter 101", false, true},
		{"vectl --root /x console 101", false, true},
		{"vzctl --verbose enter 101", false, true},
		{"vzctl --quiet exec 101 ls", true, false},
		{"vectl exec 101 -- sleep -F", true, false},
		{"vectl --root start stop 101", false, false},
		{"vectl stop 101", true, false},
		{"vectl list -a", false, false},
		{"vectl init", false, false},
		{"vectl-init init", false, false},
		{"vectl", false, false},
		{"vectl --version", false, false},
	} {
		if got := stays(strings.Fields(tc.line), tc.tty); got != tc.want {
			t.Errorf("%q (terminal %v): stays %v, want %v", tc.line, tc.tty, got, tc.want)
		}
	}
}

// TestNote: with advising on, a commit of heap (anonymous, read-write, MAP_FIXED, 2 MiB or
// more) is advised MADV_HUGEPAGE ("hg" in its VmFlags) and nothing else is; settle withdraws
// the advice ("nh") and stops advising.
func TestNote(t *testing.T) {
	const mib = 1 << 20
	// reserve maps n bytes PROT_NONE, as the runtime reserves its arenas, and returns its
	// first 2 MiB boundary; fixed maps size bytes at p over the reservation.
	reserve := func(n int) unsafe.Pointer {
		b, err := syscall.Mmap(-1, 0, n+2*mib, syscall.PROT_NONE, syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Munmap(b) })
		p := unsafe.Pointer(unsafe.SliceData(b))
		return unsafe.Add(p, (2*mib-uintptr(p)%(2*mib))%(2*mib))
	}
	fixed := func(p unsafe.Pointer, size uintptr, prot, flags int) {
		r, _, errno := syscall.Syscall6(syscall.SYS_MMAP, uintptr(p), size, uintptr(prot), uintptr(flags), ^uintptr(0), 0)
		if errno != 0 || r != uintptr(p) {
			t.Fatalf("mmap at %p: %v", p, errno)
		}
	}
	const rw, anonFixed = syscall.PROT_READ | syscall.PROT_WRITE, syscall.MAP_PRIVATE | syscall.MAP_ANON | syscall.MAP_FIXED
	heap, small, readOnly := reserve(8*mib), reserve(2*mib), reserve(4*mib)
	fixed(heap, 4*mib, rw, anonFixed)
	fixed(small, mib, rw, anonFixed)
	fixed(readOnly, 4*mib, syscall.PROT_READ, anonFixed)
	defer settle()

	setAdvising(false)
	if note(heap, 4*mib, rw, anonFixed) {
		t.Fatal("advised with advising off")
	}
	setAdvising(true)
	for _, tc := range []struct {
		name  string
		p     unsafe.Pointer
		n     uintptr
		prot  int
		flags int
	}{
		{"1 MiB", small, mib, rw, anonFixed},
		{"read-only", readOnly, 4 * mib, syscall.PROT_READ, anonFixed},
		{"not MAP_FIXED", heap, 4 * mib, rw, syscall.MAP_PRIVATE | syscall.MAP_ANON},
		{"4 MiB of heap", heap, 4 * mib, rw, anonFixed},
	} {
		want := tc.name == "4 MiB of heap"
		if got := note(tc.p, tc.n, tc.prot, tc.flags); got != want {
			t.Errorf("%s: advised %v, want %v", tc.name, got, want)
		}
		if flags := vmFlags(t, tc.p); strings.Contains(flags, " hg") != want {
			t.Errorf("%s: VmFlags%s, want hg %v", tc.name, flags, want)
		}
	}
	// Touched, the advised range has a huge page where the kernel has one to give.
	*(*byte)(heap) = 1
	t.Logf("AnonHugePages of the advised range after one write: %s", smapsField(t, heap, "AnonHugePages"))

	if n := settle(); n != 1 {
		t.Fatalf("settle withdrew %d ranges, want 1", n)
	}
	if flags := vmFlags(t, heap); strings.Contains(flags, " hg") || !strings.Contains(flags, " nh") {
		t.Errorf("after settle: VmFlags%s, want nh and no hg", flags)
	}
	if note(heap, 4*mib, rw, anonFixed) {
		t.Error("advised after settle")
	}
}

// vmFlags returns the VmFlags of the mapping at p in /proc/self/smaps.
func vmFlags(t *testing.T, p unsafe.Pointer) string {
	return smapsField(t, p, "VmFlags")
}

// smapsField returns field's value for the mapping that starts at p.
func smapsField(t *testing.T, p unsafe.Pointer, field string) string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(p))
	in := false
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if k, _, ok := strings.Cut(line, " "); ok && strings.Contains(k, "-") && !strings.HasSuffix(k, ":") {
			in = strings.HasPrefix(line, start)
			continue
		}
		if v, ok := strings.CutPrefix(line, field+":"); ok && in {
			return v
		}
	}
	t.Fatalf("no mapping at %p in /proc/self/smaps", p)
	return ""
}
