package idle

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugeSize = 2 << 20

// touched keeps the reads of laidOut from being optimised away.
var touched byte

// filePmdMapped is FilePmdMapped of this process, in bytes.
func filePmdMapped(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		t.Skipf("no /proc/self/smaps_rollup: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "FilePmdMapped:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(rest, "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("this kernel reports no FilePmdMapped")
	return 0
}

// mapAligned maps path read-only at a multiple of 2 MiB, optionally advised with
// MADV_HUGEPAGE, and returns the mapping and its unmap.
func mapAligned(t *testing.T, path string, advise bool) ([]byte, func()) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	size := int((st.Size() + 4095) &^ 4095)
	res, err := unix.Mmap(-1, 0, size+hugeSize, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	start := uintptr(unsafe.Pointer(&res[0]))
	base := unsafe.Add(unsafe.Pointer(&res[0]), ((start+hugeSize-1)&^(hugeSize-1))-start)
	p, err := unix.MmapPtr(int(f.Fd()), 0, base, uintptr(size), unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_FIXED)
	if err != nil {
		unix.Munmap(res)
		t.Fatal(err)
	}
	m := unsafe.Slice((*byte)(p), size)
	if advise {
		if err := unix.Madvise(m, unix.MADV_HUGEPAGE); err != nil {
			unix.Munmap(res)
			t.Skipf("no transparent huge pages: %v", err)
		}
	}
	return m, func() { unix.Munmap(res) }
}

// laidOut reports how many bytes of path's whole 2 MiB blocks one touch each maps through
// a 2 MiB entry: all of them when the file sits in the page cache in 2 MiB folios.
func laidOut(t *testing.T, path string, advise bool) (int64, int64) {
	t.Helper()
	m, unmap := mapAligned(t, path, advise)
	defer unmap()
	whole := int64(len(m)) &^ (hugeSize - 1)
	before := filePmdMapped(t)
	for off := int64(0); off < whole; off += hugeSize {
		touched += m[off]
	}
	return filePmdMapped(t) - before, whole
}

// writeSmall writes data to path 4 KiB at a time and writes it back: the page cache then
// holds it in small folios, as after cp or an execution faulting it in.
func writeSmall(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 4096 {
		if _, err := f.Write(data[off:min(off+4096, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestLayOut: the layout helper of the idle-loop program puts a file written in small
// folios into 2 MiB ones (each whole 2 MiB of it is then mapped through one entry), in the
// background, and leaves its content as it was. Needs the embedded program (make builds
// it), transparent huge pages, and a TMPDIR whose file system keeps large folios (checked
// first with the same advice the helper uses).
func TestLayOut(t *testing.T) {
	helper, err := HelperPath(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if helper == "" {
		if _, err := fs.Stat(helperFS, "bin/"+helperName); err == nil {
			t.Fatal("the program is embedded but HelperPath returned none")
		}
		t.Skip("no embedded idle-loop program in this build (make builds it)")
	}
	dir := t.TempDir()
	data := make([]byte, 3*hugeSize+12345)
	for i := range data {
		data[i] = byte(i * 7 / 4096)
	}

	// The environment: a file read through an advised mapping comes in 2 MiB folios.
	probe := filepath.Join(dir, "probe")
	writeSmall(t, probe, data)
	f, err := os.Open(probe)
	if err != nil {
		t.Fatal(err)
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	f.Close()
	if got, whole := laidOut(t, probe, true); got < whole {
		t.Skipf("the file system of %s keeps no 2 MiB folios (%d of %d bytes through 2 MiB entries)", dir, got, whole)
	}

	path := filepath.Join(dir, "program")
	writeSmall(t, path, data)
	if got, _ := laidOut(t, path, false); got != 0 {
		t.Fatalf("a file written 4 KiB at a time maps %d bytes through 2 MiB entries before the layout", got)
	}
	start := time.Now()
	if err := LayOut(helper, []string{path, filepath.Join(dir, "missing")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 150*time.Millisecond {
		t.Errorf("LayOut returned after %v: the helper must detach before its work", d)
	}
	var got, whole int64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got, whole = laidOut(t, path, false); got == whole {
			break
		}
	}
	if got != whole {
		t.Fatalf("after the layout %d of %d bytes map through 2 MiB entries, want all", got, whole)
	}
	if back, err := os.ReadFile(path); err != nil || !bytes.Equal(back, data) {
		t.Fatalf("the file's content changed (%v)", err)
	}
}
