// Package helperbin puts a program that make builds and embeds in vectl (the idle loop's,
// libcontainer's init) on the host's file system, once per build of that program, so that
// vectl can execute it.
package helperbin

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	pathpkg "path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// zstSuffix names a program embedded compressed with zstd.
const zstSuffix = ".zst"

// Extract returns the path of the program embedded in fsys at name (a slash-separated path,
// such as "bin/vectl-idle"), in dir (a directory only root can write, on a file system that
// allows executing: not /run, which Debian mounts noexec), writing it there first if it is
// not there yet. fsys holds the program as name or, compressed with zstd, as name.zst, and
// name.sha256: "SHA256 SIZE" of the program itself. The path is dir/SUM/BASE, SUM the start
// of the sha256 and BASE the last element of name, written under a temporary name and
// renamed, so that it never names a partial file; a file of the program's size found there
// is taken as it is. Extract returns "" and no error when fsys holds no such program (a
// plain go build leaves it out).
func Extract(fsys fs.FS, name, dir string) (string, error) {
	text, err := fs.ReadFile(fsys, name+".sha256")
	if err != nil {
		return "", nil
	}
	base := pathpkg.Base(name)
	sum, size, err := parseSum(string(text))
	if err != nil {
		return "", fmt.Errorf("%s: %w", base, err)
	}
	path := filepath.Join(dir, sum[:12], base)
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Size() == size {
		return path, nil
	}
	data, err := read(fsys, name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", base, err)
	}
	if got := sha256.Sum256(data); hex.EncodeToString(got[:]) != sum || int64(len(data)) != size {
		return "", fmt.Errorf("%s: the embedded program does not match its sha256 (rebuild vectl with make)", base)
	}
	if err := write(path, data); err != nil {
		return "", fmt.Errorf("%s: %w", base, err)
	}
	return path, nil
}

// parseSum reads "SHA256 SIZE" (a line of hex digits and a decimal size).
func parseSum(text string) (string, int64, error) {
	f := strings.Fields(text)
	if len(f) != 2 || len(f[0]) != sha256.Size*2 {
		return "", 0, fmt.Errorf("bad sha256 file %q", text)
	}
	if _, err := hex.DecodeString(f[0]); err != nil {
		return "", 0, fmt.Errorf("bad sha256 file %q", text)
	}
	size, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || size <= 0 {
		return "", 0, fmt.Errorf("bad sha256 file %q", text)
	}
	return f[0], size, nil
}

// read returns the embedded program, decompressed when it is embedded as name.zst.
func read(fsys fs.FS, name string) ([]byte, error) {
	data, err := fs.ReadFile(fsys, name)
	if !errors.Is(err, fs.ErrNotExist) {
		return data, err
	}
	packed, err := fs.ReadFile(fsys, name+zstSuffix)
	if err != nil {
		return nil, err
	}
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.DecodeAll(packed, nil)
}

// write puts data at path, executable by root only, through a temporary file and a rename.
func write(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
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
	}
	return err
}
