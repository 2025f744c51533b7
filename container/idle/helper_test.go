package idle

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestHelperPath: the embedded idle-loop program is extracted whole under the start of its
// sha256 (helperbin.Extract, whose tests cover the rest). A build without the program (go
// test before make) gets "".
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
	if got, err := os.ReadFile(path); err != nil || string(got) != string(want) {
		t.Fatalf("extracted program differs from the embedded one (%v)", err)
	}
}
