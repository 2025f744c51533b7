package helperbin

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/klauspost/compress/zstd"
)

// embedded returns an fsys holding prog as name (packed: as name.zst) with its sum file.
func embedded(t *testing.T, name string, prog []byte, packed bool) fstest.MapFS {
	t.Helper()
	sum := sha256.Sum256(prog)
	fsys := fstest.MapFS{name + ".sha256": {Data: []byte(fmt.Sprintf("%s %d\n", hex.EncodeToString(sum[:]), len(prog)))}}
	if !packed {
		fsys[name] = &fstest.MapFile{Data: prog}
		return fsys
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	fsys[name+zstSuffix] = &fstest.MapFile{Data: enc.EncodeAll(prog, nil)}
	return fsys
}

// TestExtract: a program embedded as it is or compressed is extracted once, whole,
// executable by root only, under the start of its sha256; a second call finds it without
// writing; a file of another size there is replaced; no temporary file stays.
func TestExtract(t *testing.T) {
	prog := []byte(strings.Repeat("\x7fELF program text ", 5000))
	sum := sha256.Sum256(prog)
	for _, packed := range []bool{false, true} {
		t.Run(fmt.Sprint("packed=", packed), func(t *testing.T) {
			dir := t.TempDir()
			fsys := embedded(t, "prog", prog, packed)
			path, err := Extract(fsys, "prog", dir)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(dir, hex.EncodeToString(sum[:])[:12], "prog"); path != want {
				t.Fatalf("Extract = %q, want %q", path, want)
			}
			check := func() os.FileInfo {
				t.Helper()
				got, err := os.ReadFile(path)
				if err != nil || string(got) != string(prog) {
					t.Fatalf("extracted program differs from the embedded one (%v)", err)
				}
				st, err := os.Stat(path)
				if err != nil || st.Mode().Perm() != 0o700 {
					t.Fatalf("extracted program: %v, mode %v, want 0700", err, st.Mode())
				}
				return st
			}
			first := check()
			time.Sleep(10 * time.Millisecond)
			if again, err := Extract(fsys, "prog", dir); err != nil || again != path {
				t.Fatalf("second Extract = %q, %v", again, err)
			}
			if st := check(); !st.ModTime().Equal(first.ModTime()) {
				t.Fatalf("the second call rewrote the program")
			}
			if err := os.WriteFile(path, []byte("short"), 0o700); err != nil {
				t.Fatal(err)
			}
			if again, err := Extract(fsys, "prog", dir); err != nil || again != path {
				t.Fatalf("Extract over a damaged copy = %q, %v", again, err)
			}
			check()
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				if e.Name() != "prog" {
					t.Errorf("%s left behind", e.Name())
				}
			}
		})
	}
}

// TestExtractRefusals: no program embedded gives "" and no error (a plain go build); a sum
// file that is not "SHA256 SIZE", or a program that does not match it, is an error naming
// the program, and nothing is written.
func TestExtractRefusals(t *testing.T) {
	prog := []byte("program")
	if path, err := Extract(fstest.MapFS{".keep": {}}, "prog", t.TempDir()); path != "" || err != nil {
		t.Fatalf("Extract of nothing embedded = %q, %v; want \"\", nil", path, err)
	}
	good := embedded(t, "prog", prog, false)
	for name, fsys := range map[string]fstest.MapFS{
		"no size":    {"prog": good["prog"], "prog.sha256": {Data: []byte(strings.Fields(string(good["prog.sha256"].Data))[0])}},
		"bad hex":    {"prog": good["prog"], "prog.sha256": {Data: []byte(strings.Repeat("z", 64) + " 7")}},
		"other data": {"prog": {Data: []byte("programme")}, "prog.sha256": good["prog.sha256"]},
		"no program": {"prog.sha256": good["prog.sha256"]},
		"bad zstd":   {"prog.zst": {Data: []byte("not zstd")}, "prog.sha256": good["prog.sha256"]},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path, err := Extract(fsys, "prog", dir)
			if err == nil || path != "" || !strings.HasPrefix(err.Error(), "prog: ") {
				t.Fatalf("Extract = %q, %v; want an error naming prog", path, err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("%d entries written", len(entries))
			}
		})
	}
}
