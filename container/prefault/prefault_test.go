package prefault

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"unsafe"
)

// childEnv makes the test binary populate in a fresh process (TestMain), whose heap, like a
// vectl command's, has only grown: a test process's heap has holes left by earlier tests.
const childEnv = "PREFAULT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := child(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child prints how many of the pages above the heap's top (as far as the runtime mapped
// them, at most 2 MiB) were present before Heap, and how many of those above the top Heap
// populated from are after it, and both counts of pages.
func child() error {
	const n = 2 << 20
	b := make([]byte, 64<<10) // the heap's top, as populate will find it
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b))) &^ (4096 - 1)
	b = nil
	before, pagesBefore, err := presentAbove(p, n)
	if err != nil {
		return err
	}
	at, errno := populate(n)
	// The range ran into heap the runtime has only reserved (PROT_NONE: EINVAL), or past
	// its reservation (ENOMEM).
	if errno != 0 && errno != syscall.EINVAL && errno != syscall.ENOMEM {
		return fmt.Errorf("madvise: %v", errno)
	}
	if at < p {
		return fmt.Errorf("populate started at %#x, below the top %#x", at, p)
	}
	after, pagesAfter, err := presentAbove(at, n)
	if err != nil {
		return err
	}
	fmt.Println(before, pagesBefore, after, pagesAfter)
	return nil
}

// presentAbove counts the present pages of the n bytes from p, as far as p's mapping goes,
// and returns that number of pages too.
func presentAbove(p, n uintptr) (present, pages int, err error) {
	end, err := mappingEnd(p)
	if err != nil {
		return 0, 0, err
	}
	pages = int(min(n, end-p) / 4096)
	present, err = countPresent(p, pages)
	return present, pages, err
}

// mappingEnd is the end of the mapping of /proc/self/maps that holds address p.
func mappingEnd(p uintptr) (uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var lo, hi uintptr
		if _, err := fmt.Sscanf(s.Text(), "%x-%x", &lo, &hi); err == nil && lo <= p && p < hi {
			return hi, nil
		}
	}
	return 0, fmt.Errorf("no mapping holds %#x", p)
}

// countPresent counts the resident pages of the n pages from p (mincore).
func countPresent(p uintptr, n int) (int, error) {
	vec := make([]byte, n)
	if _, _, errno := syscall.Syscall(syscall.SYS_MINCORE, p, uintptr(n)*4096, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, fmt.Errorf("mincore: %v", errno)
	}
	k := 0
	for _, v := range vec {
		k += int(v & 1)
	}
	return k, nil
}

// TestHeap shows, in a fresh process, that Heap makes the pages above the heap's top present
// (as far as the runtime has mapped the heap), which were not before.
func TestHeap(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	var before, pagesBefore, after, pagesAfter int
	if _, err := fmt.Sscan(string(out), &before, &pagesBefore, &after, &pagesAfter); err != nil {
		t.Fatalf("child said %q: %v", out, err)
	}
	t.Logf("above the heap's top: %d of %d mapped pages present before Heap; from where it populated, %d of %d after",
		before, pagesBefore, after, pagesAfter)
	if pagesAfter < 16 {
		t.Fatalf("only %d pages mapped above the heap's top: nothing shown", pagesAfter)
	}
	if before == pagesBefore {
		t.Fatalf("all %d pages above a fresh heap's top were present before Heap: nothing shown", pagesBefore)
	}
	if after != pagesAfter {
		t.Fatalf("after Heap, %d of the %d mapped pages above the top are present", after, pagesAfter)
	}
}
