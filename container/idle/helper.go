package idle

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// helperFS holds the idle loop as a program of its own, vectl-idle (helper/main.c, built by
// make into bin/ with a file of its sha256): a resting monitor executes it instead of
// vectl, so that it maps the pages of a 0.7 MB binary rather than those of the 20 MB one
// (the kernel maps a page-cache folio of up to 2 MiB whole). A plain go build leaves only
// bin/.keep here, and the loop then runs in vectl's own binary, as it always can.
//
//go:embed all:bin
var helperFS embed.FS

const helperName = "vectl-idle"

// HelperPath returns the path of the idle-loop program in dir (a directory only root can
// write, on a file system that allows executing: not /run, which Debian mounts noexec),
// extracting it there first if it is not there yet: dir/SUM/vectl-idle, SUM the start of
// its sha256, written under a temporary name and renamed, so that the path never names a
// partial file. It returns "" and no error when this binary was built without the program.
func HelperPath(dir string) (string, error) {
	text, err := fs.ReadFile(helperFS, "bin/"+helperName+".sha256")
	if err != nil {
		return "", nil
	}
	sum := strings.TrimSpace(string(text))
	if len(sum) != sha256.Size*2 {
		return "", fmt.Errorf("idle helper: bad sha256 %q", sum)
	}
	fi, err := fs.Stat(helperFS, "bin/"+helperName)
	if err != nil {
		return "", fmt.Errorf("idle helper: %w", err)
	}
	path := filepath.Join(dir, sum[:12], helperName)
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == fi.Size() {
		return path, nil
	}
	data, err := fs.ReadFile(helperFS, "bin/"+helperName)
	if err != nil {
		return "", fmt.Errorf("idle helper: %w", err)
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum {
		return "", errors.New("idle helper: the embedded program does not match its sha256 (rebuild vectl with make)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("idle helper: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+helperName+"-*")
	if err != nil {
		return "", fmt.Errorf("idle helper: %w", err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o700)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("idle helper: %w", err)
	}
	return path, nil
}
