package cniplugins

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
)

const fakeVersion = "v0.0.1-test"

// helperEnv makes the test binary, re-executed by TestDirConcurrent, extract the fake set
// into the directory it names and print the result.
const helperEnv = "CNIPLUGINS_TEST_EXTRACT_TO"

func TestMain(m *testing.M) {
	if base := os.Getenv(helperEnv); base != "" {
		dir, err := dirFrom(fakeFS(fakePlugins()), base)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(dir)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fakePlugin struct {
	name    string
	content []byte
}

// fakePlugins are two small "plugins" with the same content in every process, so that
// re-executed helpers extract the same set.
func fakePlugins() []fakePlugin {
	r := rand.New(rand.NewChaCha8([32]byte{1}))
	big := make([]byte, 256<<10)
	for i := range big {
		big[i] = byte(r.IntN(16)) // compressible, and slow enough to race on
	}
	return []fakePlugin{
		{"ptp", []byte("#!/bin/sh\necho ptp\n")},
		{"static", big},
	}
}

// fakeFS lays plugins out as `make plugins` does in network/cniplugins/bin.
func fakeFS(plugins []fakePlugin) fstest.MapFS {
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer enc.Close()
	fsys := fstest.MapFS{
		".keep":   {},
		"VERSION": {Data: []byte(fakeVersion + "\n")},
	}
	var manifest strings.Builder
	for _, p := range plugins {
		fmt.Fprintf(&manifest, "%s %x %d\n", p.name, sha256.Sum256(p.content), len(p.content))
		fsys[p.name+".zst"] = &fstest.MapFile{Data: enc.EncodeAll(p.content, nil)}
	}
	fsys["MANIFEST"] = &fstest.MapFile{Data: []byte(manifest.String())}
	return fsys
}

// listBase returns the names in base other than the lock file.
func listBase(t *testing.T, base string) []string {
	t.Helper()
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.Name() != lockName {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestDirExtracts(t *testing.T) {
	plugins := fakePlugins()
	fsys := fakeFS(plugins)
	base := filepath.Join(t.TempDir(), "cni-bin") // created by dirFrom
	if err := os.MkdirAll(filepath.Join(base, ".tmp-dead-123"), 0o700); err != nil {
		t.Fatal(err)
	}

	dir, err := dirFrom(fsys, base)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fsys["MANIFEST"].Data)
	want := filepath.Join(base, fmt.Sprintf("%s-%x", fakeVersion, sum[:6]))
	if dir != want {
		t.Fatalf("dir = %s, want %s", dir, want)
	}
	for _, p := range plugins {
		path := filepath.Join(dir, p.name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o755 {
			t.Errorf("%s: mode %v, want -rwxr-xr-x", p.name, fi.Mode())
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p.content) {
			t.Errorf("%s: content differs from the embedded plugin", p.name)
		}
	}
	m, err := os.ReadFile(filepath.Join(dir, "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m, fsys["MANIFEST"].Data) {
		t.Errorf("MANIFEST = %q, want %q", m, fsys["MANIFEST"].Data)
	}
	if got := listBase(t, base); !slices.Equal(got, []string{filepath.Base(dir)}) {
		t.Errorf("base holds %q, want only %s: a temporary directory was left", got, filepath.Base(dir))
	}
	if err := verifyFrom(fsys, dir); err != nil {
		t.Error(err)
	}
}

func TestDirReusesExtracted(t *testing.T) {
	fsys := fakeFS(fakePlugins())
	base := t.TempDir()
	dir, err := dirFrom(fsys, base)
	if err != nil {
		t.Fatal(err)
	}
	before := statAll(t, dir)

	again, err := dirFrom(fsys, base)
	if err != nil {
		t.Fatal(err)
	}
	if again != dir {
		t.Fatalf("second call returned %s, first %s", again, dir)
	}
	after := statAll(t, dir)
	for name, b := range before {
		a := after[name]
		if a == nil || !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) {
			t.Errorf("%s was rewritten by the second call", name)
		}
	}
}

func TestExtracted(t *testing.T) {
	fsys := fakeFS(fakePlugins())
	base := filepath.Join(t.TempDir(), "cni-bin")
	if got := extractedFrom(fsys, base); got != "" {
		t.Fatalf("before any extraction: %q, want \"\"", got)
	}
	if _, err := os.Stat(base); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("extractedFrom made %s (%v): it must extract nothing", base, err)
	}
	dir, err := dirFrom(fsys, base)
	if err != nil {
		t.Fatal(err)
	}
	if got := extractedFrom(fsys, base); got != dir {
		t.Fatalf("after the extraction: %q, want %s", got, dir)
	}
	if err := os.Truncate(filepath.Join(dir, "static"), 100); err != nil {
		t.Fatal(err)
	}
	if got := extractedFrom(fsys, base); got != "" {
		t.Errorf("with a damaged plugin: %q, want \"\"", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "static")); err != nil || fi.Size() != 100 {
		t.Errorf("the damaged plugin was touched (%v): extractedFrom must extract nothing", err)
	}
}

func statAll(t *testing.T, dir string) map[string]fs.FileInfo {
	t.Helper()
	infos := map[string]fs.FileInfo{}
	for _, name := range []string{".", "MANIFEST", "ptp", "static"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		infos[name] = fi
	}
	return infos
}

func TestDirReextractsDamaged(t *testing.T) {
	tests := []struct {
		name   string
		damage func(dir string) error
	}{
		{"truncated plugin", func(dir string) error { return os.Truncate(filepath.Join(dir, "static"), 100) }},
		{"missing plugin", func(dir string) error { return os.Remove(filepath.Join(dir, "ptp")) }},
		{"plugin not executable", func(dir string) error { return os.Chmod(filepath.Join(dir, "ptp"), 0o644) }},
		{"plugin replaced by a symlink", func(dir string) error {
			p := filepath.Join(dir, "ptp")
			if err := os.Rename(p, p+".real"); err != nil {
				return err
			}
			return os.Symlink("ptp.real", p)
		}},
		{"missing MANIFEST", func(dir string) error { return os.Remove(filepath.Join(dir, "MANIFEST")) }},
		{"other MANIFEST", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "MANIFEST"), []byte("ptp 00 1\n"), 0o644)
		}},
		{"directory removed", os.RemoveAll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plugins := fakePlugins()
			fsys := fakeFS(plugins)
			base := t.TempDir()
			dir, err := dirFrom(fsys, base)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.damage(dir); err != nil {
				t.Fatal(err)
			}
			if err := verifyFrom(fsys, dir); err == nil {
				t.Fatal("Verify accepts the damaged directory")
			}
			again, err := dirFrom(fsys, base)
			if err != nil {
				t.Fatal(err)
			}
			if again != dir {
				t.Fatalf("re-extracted to %s, want %s", again, dir)
			}
			if err := verifyFrom(fsys, dir); err != nil {
				t.Errorf("not repaired: %v", err)
			}
			if got := listBase(t, base); len(got) != 1 {
				t.Errorf("base holds %q, want only %s", got, filepath.Base(dir))
			}
		})
	}
}

// Same-size tampering passes the cheap check by design (no re-hash at every VE start), but
// Verify must catch it.
func TestVerifyCatchesSameSizeChange(t *testing.T) {
	fsys := fakeFS(fakePlugins())
	dir, err := dirFrom(fsys, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ptp"), []byte("#!/bin/sh\necho PTP\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err = verifyFrom(fsys, dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "ptp")+": 19 bytes with sha256") {
		t.Errorf("Verify = %v, want a sha256 mismatch on ptp", err)
	}
}

func TestDirRejectsBadEmbedded(t *testing.T) {
	tests := []struct {
		name    string
		change  func(fstest.MapFS)
		wantErr string
	}{
		{"blob content differs from MANIFEST", func(fsys fstest.MapFS) {
			other := fakeFS([]fakePlugin{{"ptp", []byte("#!/bin/sh\necho XXX\n")}})
			fsys["ptp.zst"] = other["ptp.zst"]
		}, "embedded ptp is corrupt: it decompresses to 19 bytes with sha256"},
		{"blob longer than MANIFEST says", func(fsys fstest.MapFS) {
			other := fakeFS([]fakePlugin{{"ptp", []byte("#!/bin/sh\necho ptp; echo more\n")}})
			fsys["ptp.zst"] = other["ptp.zst"]
		}, "embedded ptp is corrupt: it decompresses to 20 bytes"},
		{"blob with a flipped byte", func(fsys fstest.MapFS) {
			b := bytes.Clone(fsys["static.zst"].Data)
			b[len(b)/2] ^= 0xff
			fsys["static.zst"] = &fstest.MapFile{Data: b}
		}, "static"},
		{"truncated blob", func(fsys fstest.MapFS) {
			b := fsys["static.zst"].Data
			fsys["static.zst"] = &fstest.MapFile{Data: b[:len(b)/2]}
		}, "decompress embedded static"},
		{"blob missing", func(fsys fstest.MapFS) { delete(fsys, "static.zst") },
			"embedded cni plugin static is in MANIFEST but static.zst is missing"},
		{"blob not in MANIFEST", func(fsys fstest.MapFS) { fsys["loopback.zst"] = fsys["ptp.zst"] },
			"embedded loopback.zst is not in MANIFEST"},
		{"MANIFEST missing", func(fsys fstest.MapFS) { delete(fsys, "MANIFEST") },
			"embedded cni plugins are incomplete"},
		{"VERSION missing", func(fsys fstest.MapFS) { delete(fsys, "VERSION") },
			"embedded cni plugins are incomplete"},
		{"VERSION with a slash", func(fsys fstest.MapFS) { fsys["VERSION"] = &fstest.MapFile{Data: []byte("../x\n")} },
			`version "../x" is not a valid directory name`},
		{"MANIFEST line malformed", func(fsys fstest.MapFS) {
			fsys["MANIFEST"] = &fstest.MapFile{Data: []byte("ptp deadbeef\n")}
		}, "manifest: line 1: want \"name sha256 size\""},
		{"MANIFEST sha256 too long", func(fsys fstest.MapFS) {
			fsys["MANIFEST"] = &fstest.MapFile{Data: []byte("ptp " + strings.Repeat("ab", 40) + " 19\n")}
		}, "manifest: line 1: bad sha256"},
		{"MANIFEST names a path", func(fsys fstest.MapFS) {
			fsys["MANIFEST"] = &fstest.MapFile{Data: []byte("../ptp " + strings.Repeat("ab", 32) + " 19\n")}
		}, `manifest: line 1: bad or repeated plugin name "../ptp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fakeFS(fakePlugins())
			tt.change(fsys)
			base := t.TempDir()
			dir, err := dirFrom(fsys, base)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("dirFrom = %q, %v; want an error containing %q", dir, err, tt.wantErr)
			}
			if got := listBase(t, base); len(got) != 0 {
				t.Errorf("base holds %q after a failed extraction, want nothing", got)
			}
		})
	}
}

func TestDirNotEmbedded(t *testing.T) {
	fsys := fstest.MapFS{".keep": {}}
	_, err := dirFrom(fsys, t.TempDir())
	if !errors.Is(err, ErrNotEmbedded) {
		t.Fatalf("dirFrom = %v, want ErrNotEmbedded", err)
	}
	const want = "this vectl was built without the CNI plugins: build it with make, or pass --cni-path"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if err := verifyFrom(fsys, t.TempDir()); !errors.Is(err, ErrNotEmbedded) {
		t.Errorf("verifyFrom = %v, want ErrNotEmbedded", err)
	}
}

// Goroutines and processes extracting the same set at once must all get a complete
// directory, and leave no temporary directory behind.
func TestDirConcurrent(t *testing.T) {
	fsys := fakeFS(fakePlugins())
	base := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}

	const goroutines, processes = 4, 4
	dirs := make([]string, goroutines+processes)
	errs := make([]error, goroutines+processes)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range goroutines {
		wg.Go(func() {
			<-start
			dirs[i], errs[i] = dirFrom(fsys, base)
			if errs[i] == nil {
				// Nobody may replace a directory that was handed out.
				errs[i] = verifyFrom(fsys, dirs[i])
			}
		})
	}
	for i := goroutines; i < goroutines+processes; i++ {
		wg.Go(func() {
			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+base)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			<-start
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("%s: %v: %s", cmd, err, stderr.Bytes())
				return
			}
			dirs[i] = stdout.String()
		})
	}
	close(start)
	wg.Wait()

	for i := range dirs {
		if errs[i] != nil {
			t.Errorf("extraction %d: %v", i, errs[i])
		} else if dirs[i] != dirs[0] {
			t.Errorf("extraction %d: dir %s, extraction 0: %s", i, dirs[i], dirs[0])
		}
	}
	if t.Failed() {
		return
	}
	if err := verifyFrom(fsys, dirs[0]); err != nil {
		t.Error(err)
	}
	if got := listBase(t, base); !slices.Equal(got, []string{filepath.Base(dirs[0])}) {
		t.Errorf("base holds %q, want only %s", got, filepath.Base(dirs[0]))
	}
}

// The real plugins, when `make plugins` has embedded them: the set is complete, extracts,
// verifies, and ptp reports the pinned version (set at build time with -X; without it
// upstream plugins say "version unknown").
func TestEmbeddedPlugins(t *testing.T) {
	if len(Names()) == 0 {
		t.Skip("plugins not built: network/cniplugins/bin has no *.zst; run make plugins to embed them and run this test")
	}
	if got, want := Names(), []string{"ptp", "bridge", "static"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	if Version() == "" {
		t.Fatal("Version() is empty although plugins are embedded")
	}
	dir, err := Dir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(dir); err != nil {
		t.Fatal(err)
	}
	// Built like vectl (the Makefile's plugins rule): static, with container/prefault's mmap
	// wrapper, whose constructor reads /proc/buddyinfo, for a heap in huge pages.
	for _, name := range Names() {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("/proc/buddyinfo")) {
			t.Errorf("%s: no mmap wrapper (container/prefault/thp.c) linked in", name)
		}
		f, err := elf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked, want static", name)
			}
		}
		f.Close()
	}
	// With no CNI_COMMAND in its environment a plugin prints its version to stderr and exits 0.
	cmd := exec.Command(filepath.Join(dir, "ptp"))
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	if want := "CNI ptp plugin " + Version() + "\n"; !strings.HasPrefix(string(out), want) {
		t.Errorf("%s printed %q, want it to start with %q", cmd, out, want)
	}
}
