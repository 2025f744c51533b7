package template

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container/revert"
	"github.com/vectl/vectl/container/store"
)

// Info describes a cached template; it is stored as <Dir>/<name>.json.
type Info struct {
	// Name is the template's name, also the base name of its files in the cache.
	Name string `json:"name"`
	// SHA256 is the hex SHA-256 of the cached archive file.
	SHA256 string `json:"sha256"`
	// Size is the size in bytes of the cached archive file.
	Size int64 `json:"size"`
	// Format is "tar", "tar.gz", "tar.xz" or "tar.zst", detected from the archive's magic
	// bytes rather than its file name.
	Format string `json:"format"`
	// Source says where the template came from: the absolute path of the imported file,
	// "busybox <path>" or "debootstrap <suite> <mirror> [+pkg,pkg]".
	Source string `json:"source"`
	// Created is when the template entered the cache.
	Created time.Time `json:"created"`
	// Init is the init system found in the unpacked tree ("systemd", "sysvinit",
	// "busybox", "openrc"), or "" when /sbin/init is missing.
	Init string `json:"init"`
	// Distribution and Version name the OS in the tree: ID and VERSION_ID of its
	// /etc/os-release ("debian", "13"), else the first two fields of the template's name.
	Distribution string `json:"distribution"`
	Version      string `json:"version"`
	// Skipped says what the import left out of the archive (device nodes), one line each.
	Skipped []string `json:"skipped,omitempty"`
	// Packed says the archive is cached but not unpacked yet: a download only fetches and
	// checks it, and the first VE created from it unpacks it (Unpack). Init is unknown, and
	// Distribution and Version come from the name, until then.
	Packed bool `json:"packed,omitempty"`
}

// Store is the template cache in directory Dir (normally /var/lib/vectl/templates).
type Store struct {
	// Dir holds the archives, their .json metadata and their unpacked trees.
	Dir string
}

// NewStore returns the template cache in dir. The directory is created by the first Import
// or Build.
func NewStore(dir string) *Store { return &Store{Dir: dir} }

// LowerDir is the unpacked tree of template name: the lower layer of overlay VEs and the
// source of copied ones. It must be treated as read-only.
func (s *Store) LowerDir(name string) string { return filepath.Join(s.Dir, name) }

func (s *Store) infoPath(name string) string { return filepath.Join(s.Dir, name+".json") }

func (s *Store) archivePath(name, format string) string {
	return filepath.Join(s.Dir, name+"."+format)
}

var formats = []string{formatTar, formatGzip, formatXz, formatZstd}

// List returns the complete templates in the cache, sorted by name. It returns an empty
// slice, not nil, when there are none or Dir does not exist yet.
func (s *Store) List() ([]Info, error) {
	list := []Info{}
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return list, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || store.IsTemp(e.Name()) || ValidateName(name) != nil {
			continue
		}
		info, err := s.Get(name)
		if errors.Is(err, ErrNotFound) {
			continue // an import or removal in progress, or one a crash interrupted
		}
		if err != nil {
			return nil, fmt.Errorf("list templates: %w", err)
		}
		list = append(list, info)
	}
	slices.SortFunc(list, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

// Get returns the metadata of template name, or an error wrapping ErrNotFound unless both
// its .json and its unpacked tree (its archive, when Packed) exist.
func (s *Store) Get(name string) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	data, err := os.ReadFile(s.infoPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Info{}, fmt.Errorf("get template %s: %w", name, err)
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return Info{}, fmt.Errorf("get template %s: parse %s: %w", name, s.infoPath(name), err)
	}
	info.Name = name // the file name is authoritative
	if info.Packed {
		if _, err := os.Stat(s.ArchivePath(info)); err != nil {
			return Info{}, fmt.Errorf("%w: %s (no archive)", ErrNotFound, name)
		}
		return info, nil
	}
	if fi, err := os.Lstat(s.LowerDir(name)); err != nil || !fi.IsDir() {
		return Info{}, fmt.Errorf("%w: %s (no unpacked tree)", ErrNotFound, name)
	}
	if info.Distribution == "" {
		// Installed before the field existed: the tree still says.
		info.Distribution, info.Version = DetectOS(s.LowerDir(name), name)
	}
	return info, nil
}

// exists reports whether a complete template name is in the cache.
func (s *Store) exists(name string) (bool, error) {
	_, err := s.Get(name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Import copies the archive file (tar, tar.gz, tar.xz or tar.zst, told apart by content) into
// the cache as template name, or under NameFromFile(file) when name is "", and unpacks it
// with Extract. It refuses an existing name with ErrExist. The archive is read twice: once to
// copy and hash it, once to unpack the copy. On error nothing of the import is left.
func (s *Store) Import(ctx context.Context, file, name string) (Info, error) {
	if name == "" {
		n, err := NameFromFile(file)
		if err != nil {
			return Info{}, err
		}
		name = n
	}
	info, err := s.importFile(ctx, file, name)
	if err != nil {
		return Info{}, fmt.Errorf("import %s: %w", name, err)
	}
	return info, nil
}

func (s *Store) importFile(ctx context.Context, file, name string) (Info, error) {
	if err := ValidateName(name); err != nil {
		return Info{}, err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return Info{}, err
	}
	return s.importFrom(ctx, abs, name, abs)
}

// importFrom imports file as template name with source recorded as the given string. It
// looks at the file before touching the cache, so that a wrong file leaves nothing behind.
func (s *Store) importFrom(ctx context.Context, file, name, source string) (Info, error) {
	src, err := os.Open(file)
	if err != nil {
		return Info{}, err
	}
	defer src.Close()
	br, format, err := sniff(src, file)
	if err != nil {
		return Info{}, err
	}
	if err := s.prepare(name); err != nil {
		return Info{}, err
	}
	a, err := s.cacheCopy(br, file, name, format)
	if err != nil {
		return Info{}, err
	}
	return s.install(ctx, name, a, source)
}

// prepare checks that name is free and removes what an interrupted operation on it left.
func (s *Store) prepare(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	ok, err := s.exists(name)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("%w: %s", ErrExist, name)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	_, err = s.purge(name)
	return err
}

// archive is an archive file inside Dir, hashed, waiting to be unpacked and installed.
type archive struct {
	path   string
	format string
	sha256 string
	size   int64
}

// sniff checks that the open file is an archive and returns its format and a reader that
// still yields the file from its first byte.
func sniff(f *os.File, file string) (*bufio.Reader, string, error) {
	if fi, err := f.Stat(); err != nil {
		return nil, "", err
	} else if !fi.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s: not a regular file", file)
	}
	br := bufio.NewReaderSize(f, 1<<20)
	head, err := br.Peek(tarBlock)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, "", fmt.Errorf("read %s: %w", file, err)
	}
	format, err := detectFormat(head)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", file, err)
	}
	return br, format, nil
}

// cacheCopy copies the archive read from r into a temporary file in Dir, hashing it on the
// way.
func (s *Store) cacheCopy(r io.Reader, file, name, format string) (a archive, err error) {
	a = archive{path: filepath.Join(s.Dir, tmpName(name, 8)+".archive"), format: format}
	dst, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return a, err
	}
	defer func() {
		if err != nil {
			dst.Close()
			os.Remove(a.path)
		}
	}()
	h := sha256.New()
	if a.size, err = io.Copy(io.MultiWriter(dst, h), r); err != nil {
		return a, fmt.Errorf("copy %s into the cache: %w", file, err)
	}
	if err = dst.Sync(); err != nil {
		return a, err
	}
	if err = dst.Close(); err != nil {
		return a, err
	}
	a.sha256 = hex.EncodeToString(h.Sum(nil))
	return a, nil
}

// install unpacks archive a (a temporary file in Dir, consumed) as template name and records
// it: unpack into a temporary directory, flush the filesystem, rename the archive and the
// tree into place, and write the .json last. On error everything is removed.
func (s *Store) install(ctx context.Context, name string, a archive, source string) (info Info, err error) {
	var r revert.Reverter
	defer r.Fail(&err)
	r.Add(func() error { return removeIfExists(a.path) })

	tmp := filepath.Join(s.Dir, tmpName(name, 8))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return info, err
	}
	r.Add(func() error { return removeTree(tmp) })
	skipped, err := unpack(ctx, a, tmp)
	if err != nil {
		return info, err
	}
	info = Info{
		Skipped: skipped.Notes(),
		Name:    name,
		SHA256:  a.sha256,
		Size:    a.size,
		Format:  a.format,
		Source:  source,
		Created: time.Now().UTC(),
	}
	data, err := s.describeTree(&info, tmp)
	if err != nil {
		return info, err
	}
	if err := s.placeArchive(&r, name, a); err != nil {
		return info, err
	}
	return info, s.commitTree(&r, name, tmp, data)
}

// placeArchive renames archive a into place as template name's, registering its removal
// with r.
func (s *Store) placeArchive(r *revert.Reverter, name string, a archive) error {
	final := s.archivePath(name, a.format)
	if err := os.Rename(a.path, final); err != nil {
		return err
	}
	r.Add(func() error { return removeIfExists(final) })
	return nil
}

// describeTree fills in what the unpacked tree tmp says of info's template (Init,
// Distribution, Version), returns the .json to record, and flushes the tree: one syncfs
// instead of an fsync per file, as the tree must be durable before the .json makes it a
// template.
func (s *Store) describeTree(info *Info, tmp string) ([]byte, error) {
	info.Init = DetectInit(tmp)
	info.Distribution, info.Version = DetectOS(tmp, info.Name)
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return nil, err
	}
	return data, syncFS(s.Dir)
}

// commitTree renames the unpacked tree tmp into place as template name's and then writes its
// .json (data), registering the tree's removal with r.
func (s *Store) commitTree(r *revert.Reverter, name, tmp string, data []byte) error {
	if err := os.Rename(tmp, s.LowerDir(name)); err != nil {
		return err
	}
	r.Add(func() error { return removeTree(s.LowerDir(name)) })
	if err := store.SyncDir(s.Dir); err != nil {
		return err
	}
	return store.WriteFileAtomic(s.infoPath(name), append(data, '\n'), 0o644)
}

// installPacked records archive a (a temporary file in Dir, consumed) as template name
// without unpacking it (Info.Packed): rename it into place, then write the .json.
func (s *Store) installPacked(name string, a archive, source string) (info Info, err error) {
	var r revert.Reverter
	defer r.Fail(&err)
	r.Add(func() error { return removeIfExists(a.path) })
	info = Info{Name: name, SHA256: a.sha256, Size: a.size, Format: a.format, Source: source,
		Created: time.Now().UTC(), Packed: true}
	if parts := strings.SplitN(name, "-", 3); len(parts) >= 2 {
		info.Distribution, info.Version = parts[0], parts[1] // until the tree says (Unpack)
	}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, err
	}
	if err := s.placeArchive(&r, name, a); err != nil {
		return info, err
	}
	if err := store.SyncDir(s.Dir); err != nil {
		return info, err
	}
	if err := store.WriteFileAtomic(s.infoPath(name), append(data, '\n'), 0o644); err != nil {
		return info, err
	}
	return info, nil
}

// Unpack makes sure template name has its unpacked tree, unpacking a Packed one (as Import
// does, its archive staying in the cache) and recording what the tree says (Init,
// Distribution, Version, Skipped). The caller holds the template's lock.
func (s *Store) Unpack(ctx context.Context, name string) (info Info, err error) {
	if info, err = s.Get(name); err != nil || !info.Packed {
		return info, err
	}
	var r revert.Reverter
	defer r.Fail(&err)
	tmp := filepath.Join(s.Dir, tmpName(name, 8))
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return info, err
	}
	r.Add(func() error { return removeTree(tmp) })
	// The download did not fsync the archive: it is hashed again on the way.
	h := sha256.New()
	skipped, err := unpackFrom(ctx, s.ArchivePath(info), info.Format, h, tmp)
	if err != nil {
		return info, fmt.Errorf("unpack template %s: %w", name, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != info.SHA256 {
		return info, fmt.Errorf("unpack template %s: %w: the archive's sha256 is %.12s, not the %.12s it was downloaded with: remove the template and download it again",
			name, ErrVerify, sum, info.SHA256)
	}
	info.Packed, info.Skipped = false, skipped.Notes()
	data, err := s.describeTree(&info, tmp)
	if err != nil {
		return info, err
	}
	return info, s.commitTree(&r, name, tmp, data)
}

// unpack extracts archive a into the existing directory dst.
func unpack(ctx context.Context, a archive, dst string) (Skipped, error) {
	return unpackFrom(ctx, a.path, a.format, nil, dst)
}

// unpackFrom extracts the archive file path (format) into the existing directory dst, and
// feeds the whole file to h (when not nil).
func unpackFrom(ctx context.Context, path, format string, h io.Writer, dst string) (Skipped, error) {
	f, err := os.Open(path)
	if err != nil {
		return Skipped{}, err
	}
	defer f.Close()
	var r io.Reader = f
	if h != nil {
		r = io.TeeReader(f, h)
	}
	tr, err := decompress(r, format)
	if err != nil {
		return Skipped{}, err
	}
	defer tr.Close()
	skipped, err := extract(ctx, tr, dst)
	if err == nil && h != nil {
		_, err = io.Copy(io.Discard, r) // what follows the archive's end
	}
	return skipped, err
}

// Remove deletes template name: its .json first, so that a crash part-way leaves no
// template that looks complete, then its archive and its unpacked tree. It also finishes a
// removal or import that a crash interrupted; it returns an error wrapping ErrNotFound only
// when nothing of the name was there. The caller must make sure no VE still uses the tree.
func (s *Store) Remove(name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	found, err := s.purge(name)
	if err != nil {
		return fmt.Errorf("remove template %s: %w", name, err)
	}
	if !found {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return nil
}

// purge removes every file of name in Dir, the .json first, and the temporary files of an
// earlier operation on name. It reports whether the .json, an archive or the tree existed.
func (s *Store) purge(name string) (found bool, err error) {
	var errs []error
	switch err := os.Remove(s.infoPath(name)); {
	case err == nil:
		found = true
		if err := store.SyncDir(s.Dir); err != nil {
			return found, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	paths := []string{s.LowerDir(name)}
	for _, f := range formats {
		paths = append(paths, s.archivePath(name, f))
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			found = true
		}
		if err := removeTree(p); err != nil {
			errs = append(errs, err)
		}
	}
	ents, err := os.ReadDir(s.Dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range ents {
		if isTempOf(e.Name(), name) {
			if err := removeTree(filepath.Join(s.Dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return found, errors.Join(errs...)
}

// Temporary names in Dir. Different names may be imported and built at the same time, so
// each pattern must match the leftovers of one name only:
//
//	.tmp-<name>-<8 hex>           an import's unpacked tree
//	.tmp-<name>-<8 hex>.archive   an import's copy of the archive
//	.tmp-build-<name>-<12 hex>    a build's tree (12, so it never matches name "build-...")
//	.tmp-<name>.tar.zst           a build's packed archive
//	.tmp-<name>.json.<digits>     store.WriteFileAtomic's temporary file
const tmpPrefix = ".tmp-"

// tmpName returns a fresh temporary name for name with n random hex digits.
func tmpName(name string, n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return tmpPrefix + name + "-" + hex.EncodeToString(b)
}

// isTempOf reports whether entry is a temporary file or directory of an operation on name.
func isTempOf(entry, name string) bool {
	rest, ok := strings.CutPrefix(entry, tmpPrefix)
	if !ok {
		return false
	}
	if r, ok := strings.CutPrefix(rest, "build-"+name+"-"); ok && isHex(r, 12) {
		return true
	}
	if rest == name+"."+formatZstd {
		return true
	}
	if r, ok := strings.CutPrefix(rest, name+".json."); ok && isDigits(r) {
		return true
	}
	if r, ok := strings.CutPrefix(rest, name+"-"); ok {
		r = strings.TrimSuffix(r, ".archive")
		return isHex(r, 8)
	}
	return false
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// removeIfExists removes a file, accepting that it is already gone.
func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeTree removes p and everything below it, accepting that it is already gone. An
// unprivileged caller cannot empty a directory whose archived mode is 0555, so on failure it
// makes the directories writable and tries again.
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700) // d comes from lstat: never a symlink
		}
		return nil
	})
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// syncFS flushes the filesystem holding dir.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}

// ArchivePath is the cached archive file of a template.
func (s *Store) ArchivePath(info Info) string { return s.archivePath(info.Name, info.Format) }
