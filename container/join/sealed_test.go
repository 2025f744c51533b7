package join

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSealed: the joiner's and init wrapper's program is copied whole into a memfd of mode
// 0511 with every base seal (no write, grow, shrink or further seal); without the program
// (none, or an error finding it) the copy is of this binary.
func TestSealed(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "vectl-idle")
	want := bytes.Repeat([]byte("not really a program\n"), 5000)
	if err := os.WriteFile(prog, want, 0o700); err != nil {
		t.Fatal(err)
	}
	j := &Joiner{SealDir: func(string) string { return dir }, Program: func() (string, error) { return prog, nil }}
	f, err := j.sealed("101")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<30))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("sealed copy: %d bytes (%v), want the program's %d", len(got), err, len(want))
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	const base = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if err != nil || seals&base != base {
		t.Fatalf("seals %#x (%v), want %#x", seals, err, base)
	}
	if st, err := f.Stat(); err != nil || st.Mode().Perm() != 0o511 {
		t.Fatalf("sealed copy's mode: %v %v, want 0511", st.Mode(), err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Fatal("the sealed copy took a write")
	}

	self, err := os.Stat("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]func() (string, error){
		"no program":  func() (string, error) { return "", nil },
		"an error":    func() (string, error) { return "", errors.New("cannot extract") },
		"none at all": nil,
	} {
		j.Program = p
		f, err := j.sealed("101")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, err := f.Stat()
		f.Close()
		if err != nil || st.Size() != self.Size() {
			t.Fatalf("%s: the copy has %d bytes (%v), want this binary's %d", name, st.Size(), err, self.Size())
		}
	}
}
