package template

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// rootfsEntries is a tiny root filesystem with a busybox-style init.
var rootfsEntries = []ent{
	dirEnt("./", 0o755),
	dirEnt("./bin/", 0o755),
	withMode(fileEnt("./bin/busybox", "BusyBox v1.0 fake"), 0o755),
	dirEnt("./sbin/", 0o755),
	symlinkEnt("./sbin/init", "../bin/busybox"),
	dirEnt("./etc/", 0o755),
	fileEnt("./etc/hostname", "localhost\n"),
	withMode(fileEnt("./etc/shadow", "root:*:::::::\n"), 0o600),
	dirEnt("./tmp/", 0o1777),
	hardlinkEnt("./bin/sh", "bin/busybox"),
}

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case formatTar:
		return data
	case formatGzip:
		w := gzip.NewWriter(&buf)
		if _, err = w.Write(data); err == nil {
			err = w.Close()
		}
	case formatXz:
		var w *xz.Writer
		if w, err = xz.NewWriter(&buf); err == nil {
			if _, err = w.Write(data); err == nil {
				err = w.Close()
			}
		}
	case formatZstd:
		var w *zstd.Encoder
		if w, err = zstd.NewWriter(&buf); err == nil {
			if _, err = w.Write(data); err == nil {
				err = w.Close()
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newTestStore returns a Store in a fresh directory, cleaned up even if it holds read-only
// directories.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "templates")
	t.Cleanup(func() { removeTree(dir) })
	return NewStore(dir)
}

func writeArchive(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportFormats(t *testing.T) {
	s := newTestStore(t)
	raw := tarball(t, rootfsEntries)
	tests := []struct {
		file, format string
	}{
		{"plain-1-x86_64.tar", formatTar},
		{"gzip-1-x86_64.tar.gz", formatGzip},
		{"xz-1-x86_64.tar.xz", formatXz},
		{"zstd-1-x86_64.tar.zst", formatZstd},
		{"tgz-1-x86_64.tgz", formatGzip},
		// The name lies; the magic bytes decide.
		{"lying-1-x86_64.tar.gz", formatZstd},
	}
	var first string
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data := compress(t, tt.format, raw)
			path := writeArchive(t, tt.file, data)
			info, err := s.Import(context.Background(), path, "")
			if err != nil {
				t.Fatal(err)
			}
			name, _ := NameFromFile(tt.file)
			sum := sha256.Sum256(data)
			want := Info{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)),
				Format: tt.format, Source: path, Created: info.Created, Init: "busybox",
				Distribution: strings.Split(name, "-")[0], Version: "1"} // no os-release: from the name
			if !reflect.DeepEqual(info, want) {
				t.Errorf("Import = %+v\nwant     %+v", info, want)
			}
			if info.Created.IsZero() {
				t.Error("Created not set")
			}
			got, err := s.Get(name)
			if err != nil || !got.Created.Equal(info.Created) || got.SHA256 != info.SHA256 {
				t.Errorf("Get = %+v, %v; want %+v", got, err, info)
			}
			cached, err := os.ReadFile(filepath.Join(s.Dir, name+"."+tt.format))
			if err != nil || !bytes.Equal(cached, data) {
				t.Errorf("cached archive differs from the imported one: %v", err)
			}
			if first == "" {
				first = s.LowerDir(name)
				return
			}
			compareTrees(t, first, s.LowerDir(name), false)
		})
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Name)
	}
	want := []string{"gzip-1-x86_64", "lying-1-x86_64", "plain-1-x86_64", "tgz-1-x86_64", "xz-1-x86_64", "zstd-1-x86_64"}
	if !slices.Equal(names, want) {
		t.Errorf("List = %v, want %v", names, want)
	}
	if fi, err := os.Lstat(filepath.Join(s.LowerDir("plain-1-x86_64"), "tmp")); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("tmp is %v, %v", fi, err)
	}
	checkNoTemps(t, s)
}

// checkNoTemps fails if Dir holds anything but complete templates.
func checkNoTemps(t *testing.T, s *Store) {
	t.Helper()
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestImportRefusals(t *testing.T) {
	ctx := context.Background()
	hostile := compress(t, formatGzip, tarball(t, []ent{fileEnt("ok", "x"), fileEnt("../escape", "x")}))
	tests := []struct {
		name   string
		data   []byte
		is     error
		substr string
	}{
		{"text", []byte("this is not an archive at all\n"), errNotArchive, "not a tar archive"},
		{"empty", nil, errNotArchive, "not a tar archive"},
		{"zero block", make([]byte, 1024), errNotArchive, "not a tar archive"},
		{"hostile", hostile, ErrUnsafeEntry, `entry "../escape"`},
		{"truncated", compress(t, formatGzip, tarball(t, rootfsEntries))[:100], nil, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t)
			path := writeArchive(t, "junk-1.tar.gz", tt.data)
			_, err := s.Import(ctx, path, "")
			if err == nil {
				t.Fatal("Import succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Import = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.substr) || !strings.Contains(err.Error(), "junk-1") {
				t.Errorf("Import = %q, want it to name the template and say %q", err, tt.substr)
			}
			if tt.is == errNotArchive && !strings.Contains(err.Error(), path) {
				t.Errorf("Import = %q, want it to name the file", err)
			}
			if _, err := os.Lstat(s.Dir); tt.is == errNotArchive && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("import of a non-archive touched %s", s.Dir)
			} else if err == nil {
				if names := dirNames(t, s.Dir); len(names) != 0 {
					t.Errorf("failed import left %v", names)
				}
			}
		})
	}
}

func TestImportExistsRemoveGet(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	path := writeArchive(t, "a.tar", tarball(t, rootfsEntries))
	if _, err := s.Import(ctx, path, "debian-12-x86_64"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(ctx, path, "debian-12-x86_64"); !errors.Is(err, ErrExist) {
		t.Errorf("second Import = %v, want ErrExist", err)
	}
	if _, err := s.Import(ctx, path, "bad/name"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("Import with a bad name = %v, want ErrInvalidName", err)
	}
	if err := s.Remove("debian-12-x86_64"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get("debian-12-x86_64")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "debian-12-x86_64") {
		t.Errorf("Get after Remove = %v, want ErrNotFound naming the template", err)
	}
	if err := s.Remove("debian-12-x86_64"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	if names := dirNames(t, s.Dir); len(names) != 0 {
		t.Errorf("Remove left %v", names)
	}
	// The name is free again.
	if _, err := s.Import(ctx, path, "debian-12-x86_64"); err != nil {
		t.Errorf("Import after Remove: %v", err)
	}
}

func TestListEmpty(t *testing.T) {
	s := newTestStore(t)
	for _, stage := range []string{"missing dir", "empty dir"} {
		list, err := s.List()
		if err != nil || list == nil || len(list) != 0 {
			t.Errorf("%s: List = %#v, %v; want an empty non-nil slice", stage, list, err)
		}
		if err := os.MkdirAll(s.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInterruptedImport simulates crashes at each step of an import: none of the leftovers is
// a template, and the next import of the name removes them but nothing of other names.
func TestInterruptedImport(t *testing.T) {
	ctx := context.Background()
	s := newTestStore(t)
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mk := func(name string, isDir bool) {
		p := filepath.Join(s.Dir, name)
		var err error
		if isDir {
			err = os.MkdirAll(filepath.Join(p, "etc"), 0o755)
		} else {
			err = os.WriteFile(p, []byte("{}"), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mine := []string{".tmp-foo-0123abcd", ".tmp-foo-0123abcd.archive", ".tmp-build-foo-0123456789ab",
		".tmp-foo.tar.zst", ".tmp-foo.json.12345", "foo", "foo.tar.gz"}
	others := []string{".tmp-foo-bar-0123abcd", ".tmp-build-foo-0123abcd", ".tmp-foo-bar.tar.zst",
		".tmp-foo-0123abcd.tar.zst", ".tmp-foo.json.json.1", "foo-bar"}
	for _, n := range append(slices.Clone(mine), others...) {
		mk(n, !strings.Contains(n, ".tar") && !strings.Contains(n, ".json") && !strings.HasSuffix(n, ".archive"))
	}
	// An unpacked tree without its .json is not a template.
	if _, err := s.Get("foo"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a tree without .json = %v, want ErrNotFound", err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want nothing", list, err)
	}
	path := writeArchive(t, "foo.tar", tarball(t, rootfsEntries))
	if _, err := s.Import(ctx, path, "foo"); err != nil {
		t.Fatal(err)
	}
	got := dirNames(t, s.Dir)
	want := append(slices.Clone(others), "foo", "foo.json", "foo.tar")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("after import Dir holds %v\nwant %v", got, want)
	}
	// A .json without its tree is not a template either, and Remove finishes the job.
	if err := removeTree(s.LowerDir("foo")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("foo"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a .json without tree = %v, want ErrNotFound", err)
	}
	if err := s.Remove("foo"); err != nil {
		t.Errorf("Remove of a half-removed template = %v", err)
	}
}

func TestImportCancelled(t *testing.T) {
	s := newTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := writeArchive(t, "c.tar", tarball(t, rootfsEntries))
	if _, err := s.Import(ctx, path, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Import = %v, want context.Canceled", err)
	}
	if names := dirNames(t, s.Dir); len(names) != 0 {
		t.Errorf("cancelled import left %v", names)
	}
}

func TestIsTempOf(t *testing.T) {
	tests := []struct {
		entry, name string
		want        bool
	}{
		{".tmp-foo-0123abcd", "foo", true},
		{".tmp-foo-0123abcd.archive", "foo", true},
		{".tmp-build-foo-0123456789ab", "foo", true},
		{".tmp-foo.tar.zst", "foo", true},
		{".tmp-foo.json.42", "foo", true},
		{".tmp-foo-bar-0123abcd", "foo", false},
		{".tmp-build-foo-0123abcd", "foo", false},           // an import of "build-foo"
		{".tmp-build-foo-0123abcd", "build-foo", true},      // ... which it is
		{".tmp-build-foo-0123456789ab", "build-foo", false}, // a build of "foo"
		{".tmp-foo-0123abcd.tar.zst", "foo", false},         // a build of "foo-0123abcd"
		{".tmp-a.json.json.1", "a", false},                  // the .json of "a.json"
		{"foo", "foo", false},
		{".tmp-foo-0123ABCD", "foo", false},
	}
	for _, tt := range tests {
		if got := isTempOf(tt.entry, tt.name); got != tt.want {
			t.Errorf("isTempOf(%q, %q) = %v, want %v", tt.entry, tt.name, got, tt.want)
		}
	}
}
