// Package cniplugins carries the upstream CNI reference plugins inside the vectl binary, so that
// a copied binary works on its own. `make plugins` builds them at the version pinned by
// network/cnitools/go.mod and stores them in bin/ as zstd blobs, with VERSION and a MANIFEST
// ("name sha256 size" of each decompressed plugin, one per line). Dir extracts them once per
// plugin set into a versioned, hash-named directory that libcni can use as its plugin path.
package cniplugins

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// The placeholder bin/.keep is what lets this compile when the plugins have not been built,
// and why the pattern needs all:.
//
//go:embed all:bin
var embedded embed.FS

// ErrNotEmbedded means this binary was built without `make plugins`.
var ErrNotEmbedded = errors.New("this vectl was built without the CNI plugins: build it with make, or pass --cni-path")

const (
	manifestName = "MANIFEST"
	versionName  = "VERSION"
	blobSuffix   = ".zst"
	// tempPrefix marks directories being extracted. Extraction holds lockName, so any such
	// directory found while holding it was left by a process that died.
	tempPrefix = ".tmp-"
	lockName   = ".lock"
)

// Version is the pinned plugins version ("" when this binary was built without them).
func Version() string {
	s, err := load(embeddedFS())
	if err != nil {
		return ""
	}
	return s.version
}

// Names lists the embedded plugins in MANIFEST order (ptp, bridge, static), empty when this
// binary was built without them.
func Names() []string {
	s, err := load(embeddedFS())
	if err != nil {
		return nil
	}
	names := make([]string, len(s.plugins))
	for i, p := range s.plugins {
		names[i] = p.name
	}
	return names
}

// Dir returns a directory holding the embedded plugins, extracting them below base on first
// use (vectl passes /var/lib/vectl/cni-bin). The directory is base/<version>-<hash>, where hash
// is the first 12 hex digits of the sha256 of the embedded MANIFEST, which itself holds the
// sha256 of every plugin: a different plugin set never shares a directory.
//
// An existing directory is trusted when its MANIFEST is the embedded one and every plugin in
// it is a regular 0755 file of the right size; that costs one read and one lstat per plugin,
// as it runs at every VE start. Anything else is extracted again, under base/.lock, into a
// temporary directory that is renamed into place once every file has been checked. Older
// version directories are left alone: a running older vectl may still use them. It returns
// ErrNotEmbedded when this binary has no plugins.
func Dir(base string) (string, error) {
	return dirFrom(embeddedFS(), base)
}

// Extracted returns the directory Dir would return when the plugins are already there, and
// extracts nothing: "" when they are not (or this binary has none).
func Extracted(base string) string {
	return extractedFrom(embeddedFS(), base)
}

func extractedFrom(fsys fs.FS, base string) string {
	s, err := load(fsys)
	if err != nil {
		return ""
	}
	dir := filepath.Join(base, s.dirName())
	if s.usable(dir) != nil {
		return ""
	}
	return dir
}

// Verify re-hashes every plugin in dir, a directory returned by Dir, against the embedded
// MANIFEST, and reports every difference.
func Verify(dir string) error {
	return verifyFrom(embeddedFS(), dir)
}

func embeddedFS() fs.FS {
	sub, err := fs.Sub(embedded, "bin")
	if err != nil {
		panic(err) // "bin" is a valid path: fs.Sub cannot fail
	}
	return sub
}

// plugin is one MANIFEST line: the plugin as it must be on disk.
type plugin struct {
	name string
	sum  [sha256.Size]byte
	size int64
}

// set is the embedded plugin set.
type set struct {
	version  string
	manifest []byte
	plugins  []plugin
}

// load reads and checks the plugin set in fsys: VERSION, MANIFEST and one <name>.zst per
// MANIFEST line, and no other blob.
func load(fsys fs.FS) (*set, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read embedded cni plugins: %w", err)
	}
	blobs := map[string]bool{}
	var haveVersion, haveManifest bool
	for _, e := range entries {
		switch name := e.Name(); {
		case name == versionName:
			haveVersion = true
		case name == manifestName:
			haveManifest = true
		case strings.HasSuffix(name, blobSuffix):
			blobs[strings.TrimSuffix(name, blobSuffix)] = true
		}
	}
	if !haveVersion && !haveManifest && len(blobs) == 0 {
		return nil, ErrNotEmbedded
	}
	if !haveVersion || !haveManifest {
		return nil, errors.New("embedded cni plugins are incomplete (VERSION or MANIFEST missing): rebuild with make plugins")
	}

	v, err := fs.ReadFile(fsys, versionName)
	if err != nil {
		return nil, fmt.Errorf("read embedded cni plugins version: %w", err)
	}
	s := &set{version: strings.TrimSpace(string(v))}
	if !validName(s.version) {
		return nil, fmt.Errorf("embedded cni plugins version %q is not a valid directory name", s.version)
	}
	if s.manifest, err = fs.ReadFile(fsys, manifestName); err != nil {
		return nil, fmt.Errorf("read embedded cni plugins manifest: %w", err)
	}
	if s.plugins, err = parseManifest(s.manifest); err != nil {
		return nil, fmt.Errorf("embedded cni plugins manifest: %w", err)
	}
	for _, p := range s.plugins {
		if !blobs[p.name] {
			return nil, fmt.Errorf("embedded cni plugin %s is in MANIFEST but %s%s is missing: rebuild with make plugins", p.name, p.name, blobSuffix)
		}
		delete(blobs, p.name)
	}
	if len(blobs) > 0 {
		return nil, fmt.Errorf("embedded %s%s is not in MANIFEST: rebuild with make plugins", slices.Sorted(maps.Keys(blobs))[0], blobSuffix)
	}
	return s, nil
}

func parseManifest(b []byte) ([]plugin, error) {
	var plugins []plugin
	seen := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"name sha256 size\", have %q", i+1, line)
		}
		p := plugin{name: f[0]}
		if !validName(p.name) || p.name == manifestName || seen[p.name] {
			return nil, fmt.Errorf("line %d: bad or repeated plugin name %q", i+1, p.name)
		}
		seen[p.name] = true
		if len(f[1]) != hex.EncodedLen(sha256.Size) || f[1] != strings.ToLower(f[1]) {
			return nil, fmt.Errorf("line %d: bad sha256 %q", i+1, f[1])
		}
		if _, err := hex.Decode(p.sum[:], []byte(f[1])); err != nil {
			return nil, fmt.Errorf("line %d: bad sha256 %q", i+1, f[1])
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size <= 0 {
			return nil, fmt.Errorf("line %d: bad size %q", i+1, f[2])
		}
		p.size = size
		plugins = append(plugins, p)
	}
	return plugins, nil
}

// validName accepts a single, non-hidden path element.
func validName(s string) bool {
	return s != "" && !strings.HasPrefix(s, ".") && !strings.ContainsAny(s, "/\\ \t\n\x00")
}

// dirName is <version>-<first 12 hex digits of sha256(MANIFEST)>.
func (s *set) dirName() string {
	sum := sha256.Sum256(s.manifest)
	return s.version + "-" + hex.EncodeToString(sum[:])[:12]
}

func dirFrom(fsys fs.FS, base string) (string, error) {
	s, err := load(fsys)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(base, s.dirName())
	if s.usable(dir) == nil {
		return dir, nil
	}
	if err := s.extract(fsys, base, dir); err != nil {
		return "", fmt.Errorf("extract cni plugins %s to %s: %w", s.version, dir, err)
	}
	return dir, nil
}

// usable is the cheap check on the VE start path: the MANIFEST is ours and every plugin is a
// regular 0755 file of the right size. Content is only re-hashed by Verify.
func (s *set) usable(dir string) error {
	m, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return err
	}
	if !bytes.Equal(m, s.manifest) {
		return errors.New("MANIFEST differs from the embedded one")
	}
	for _, p := range s.plugins {
		if err := checkMode(filepath.Join(dir, p.name), p); err != nil {
			return err
		}
	}
	return nil
}

func checkMode(path string, p plugin) error {
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755:
		return fmt.Errorf("%s: mode %v, want -rwxr-xr-x", path, fi.Mode())
	case fi.Size() != p.size:
		return fmt.Errorf("%s: %d bytes, want %d", path, fi.Size(), p.size)
	}
	return nil
}

// extract writes the set into a temporary directory in base and renames it to dir. It holds
// base/.lock throughout, so concurrent callers extract once and then all find dir usable.
func (s *set) extract(fsys fs.FS, base, dir string) (err error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(base, lockName))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	// Whoever held the lock before us may have just extracted the same set.
	if s.usable(dir) == nil {
		return nil
	}
	if err := removeTemps(base); err != nil {
		return err
	}

	tmp, err := os.MkdirTemp(base, tempPrefix+filepath.Base(dir)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(tmp))
		}
	}()
	for _, p := range s.plugins {
		if err := writePlugin(fsys, tmp, p); err != nil {
			return err
		}
	}
	// MANIFEST goes last: a directory with it is complete.
	if err := writeFile(filepath.Join(tmp, manifestName), s.manifest); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	// What is there failed usable: a damaged copy of this set. Nobody can be extracting
	// into it (we hold the lock), and anyone using it would fail anyway.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(base)
}

// writePlugin decompresses p into dir and checks the written file against the MANIFEST.
func writePlugin(fsys fs.FS, dir string, p plugin) error {
	blob, err := fsys.Open(p.name + blobSuffix)
	if err != nil {
		return fmt.Errorf("open embedded %s: %w", p.name, err)
	}
	defer blob.Close()
	dec, err := zstd.NewReader(blob, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return fmt.Errorf("decompress embedded %s: %w", p.name, err)
	}
	defer dec.Close()

	path := filepath.Join(dir, p.name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return err
	}
	h := sha256.New()
	// One byte more than the MANIFEST size, so that a longer blob is caught without
	// decompressing all of it.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(dec, p.size+1))
	if err != nil {
		f.Close()
		return fmt.Errorf("decompress embedded %s: %w", p.name, err)
	}
	if sum := h.Sum(nil); n != p.size || !bytes.Equal(sum, p.sum[:]) {
		f.Close()
		return fmt.Errorf("embedded %s is corrupt: it decompresses to %d bytes with sha256 %x, MANIFEST says %d bytes with sha256 %x: rebuild with make plugins",
			p.name, n, sum, p.size, p.sum)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Check what reached the disk, not what we meant to write.
	if err := checkContent(path, p); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// checkContent re-hashes the file at path.
func checkContent(path string, p plugin) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if sum := h.Sum(nil); n != p.size || !bytes.Equal(sum, p.sum[:]) {
		return fmt.Errorf("%s: %d bytes with sha256 %x, want %d bytes with sha256 %x", path, n, sum, p.size, p.sum)
	}
	return nil
}

func verifyFrom(fsys fs.FS, dir string) error {
	s, err := load(fsys)
	if err != nil {
		return err
	}
	var errs []error
	if m, err := os.ReadFile(filepath.Join(dir, manifestName)); err != nil {
		errs = append(errs, err)
	} else if !bytes.Equal(m, s.manifest) {
		errs = append(errs, fmt.Errorf("%s differs from the embedded one", filepath.Join(dir, manifestName)))
	}
	for _, p := range s.plugins {
		path := filepath.Join(dir, p.name)
		if err := checkMode(path, p); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := checkContent(path, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("verify cni plugins %s in %s: %w", s.version, dir, err)
	}
	return nil
}

// removeTemps removes what extractions that died left in base. The caller holds the lock,
// so no live extraction owns any of them.
func removeTemps(base string) error {
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			errs = append(errs, os.RemoveAll(filepath.Join(base, e.Name())))
		}
	}
	return errors.Join(errs...)
}

// lock takes an exclusive flock(2) on path, waiting for it. The kernel drops it when the
// holder dies, so a killed extraction never blocks the next one.
func lock(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f.Close, nil
}

func writeFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
