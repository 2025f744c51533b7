package idle

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHelperPath: the embedded idle-loop program is extracted once, whole, executable by
// root only, under the start of its sha256; a second call finds it; a file of another size
// there is replaced. A build without the program (go test before make) gets "".
func TestHelperPath(t *testing.T) {
	dir := t.TempDir()
	path, err := HelperPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, rerr := fs.ReadFile(helperFS, "bin/"+helperName)
	if rerr != nil {
		if path != "" {
			t.Fatalf("HelperPath without an embedded program = %q, want \"\"", path)
		}
		t.Log("no embedded program in this build (make builds it): checked that HelperPath says so")
		return
	}
	sum := sha256.Sum256(want)
	if wantPath := filepath.Join(dir, hex.EncodeToString(sum[:])[:12], helperName); path != wantPath {
		t.Fatalf("HelperPath = %q, want %q", path, wantPath)
	}
	check := func() os.FileInfo {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
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
	if again, err := HelperPath(dir); err != nil || again != path {
		t.Fatalf("second HelperPath = %q, %v", again, err)
	}
	if st := check(); !st.ModTime().Equal(first.ModTime()) {
		t.Fatalf("the second call rewrote the program")
	}
	if err := os.WriteFile(path, []byte("short"), 0o700); err != nil {
		t.Fatal(err)
	}
	if again, err := HelperPath(dir); err != nil || again != path {
		t.Fatalf("HelperPath over a damaged copy = %q, %v", again, err)
	}
	check()
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}
