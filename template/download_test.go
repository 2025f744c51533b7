package template

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

func TestVectlName(t *testing.T) {
	for _, tt := range []struct{ dist, release, arch, variant, want string }{
		{"debian", "trixie", "amd64", "default", "debian-13-x86_64"},
		{"Debian", "bookworm", "arm64", "cloud", "debian-12-aarch64-cloud"},
		{"ubuntu", "noble", "amd64", "", "ubuntu-24.04-x86_64"},
		{"alpine", "3.20", "amd64", "default", "alpine-3.20-x86_64"},
		{"debian", "sid", "amd64", "default", "debian-sid-x86_64"},
	} {
		if got := VectlName(tt.dist, tt.release, tt.arch, tt.variant); got != tt.want {
			t.Errorf("VectlName(%s, %s, %s, %s) = %s, want %s", tt.dist, tt.release, tt.arch, tt.variant, got, tt.want)
		}
	}
}

func TestSumFor(t *testing.T) {
	h := strings.Repeat("ab", 32)
	if got := sumFor(h+"  rootfs.tar.xz\n"+strings.Repeat("cd", 32)+" *meta.tar.xz\n", "rootfs.tar.xz"); got != h {
		t.Errorf("SHA256SUMS: %q", got)
	}
	if got := sumFor(strings.ToUpper(h)+"\n", "x.tar.gz"); got != h {
		t.Errorf("bare: %q", got)
	}
	if got := sumFor(h+"  other\n", "rootfs.tar.xz"); got != "" {
		t.Errorf("another file's sum: %q", got)
	}
}

// imageServer serves one archive in each of the three formats.
type imageServer struct {
	*httptest.Server
	archive []byte
	sum     string
	// wrongSum makes the indexes give another sha256; cut makes the first full GET of an
	// archive stop half-way.
	wrongSum, cut bool
	mu            sync.Mutex
	ranges        []string
}

func newImageServer(t *testing.T, archive []byte) *imageServer {
	s := &imageServer{archive: archive}
	sum := sha256.Sum256(archive)
	s.sum = hex.EncodeToString(sum[:])
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *imageServer) indexSum() string {
	if s.wrongSum {
		return strings.Repeat("0", 64)
	}
	return s.sum
}

func (s *imageServer) serve(w http.ResponseWriter, r *http.Request) {
	const build = "20261201_05:24"
	switch p := r.URL.Path; {
	case p == "/ss/streams/v1/index.json":
		fmt.Fprint(w, `{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json"}}}`)
	case p == "/ss/streams/v1/images.json":
		fmt.Fprintf(w, `{"format":"products:1.0","products":{"debian:trixie:amd64:default":{"os":"Debian","release":"trixie",
"arch":"amd64","variant":"default","versions":{"20261101_05:24":{"items":{"root.tar.xz":{"ftype":"root.tar.xz","sha256":"%s",
"size":%d,"path":"images/old/rootfs.tar.xz"}}},"%s":{"items":{"incus.tar.xz":{"ftype":"incus.tar.xz","path":"x"},
"root.tar.xz":{"ftype":"root.tar.xz","sha256":"%s","size":%d,"path":"images/debian/trixie/amd64/default/%s/rootfs.tar.xz"}}}}}}}`,
			s.indexSum(), len(s.archive), build, s.indexSum(), len(s.archive), build)
	case p == "/lxc/meta/1.0/index-system":
		fmt.Fprintf(w, "debian;trixie;amd64;default;%s;/images/debian/trixie/amd64/default/%s/\n", build, build)
	case strings.HasSuffix(p, "/SHA256SUMS") && strings.HasPrefix(p, "/lxc/"):
		fmt.Fprintf(w, "%s  rootfs.tar.xz\n%s  meta.tar.xz\n", s.indexSum(), strings.Repeat("1", 64))
	case p == "/ovz/":
		fmt.Fprint(w, `<html><a href="../">..</a> <a href="debian-13-x86_64.tar.gz">debian-13-x86_64.tar.gz</a>
<a href="debian-13-x86_64.tar.gz.sha256">sum</a></html>`)
	case p == "/ovz/debian-13-x86_64.tar.gz.sha256":
		fmt.Fprintf(w, "%s  debian-13-x86_64.tar.gz\n", s.indexSum())
	case strings.HasSuffix(p, "/rootfs.tar.xz") && !strings.HasPrefix(p, "/ss/images/old/") || p == "/ovz/debian-13-x86_64.tar.gz":
		s.mu.Lock()
		rng := r.Header.Get("Range")
		s.ranges = append(s.ranges, rng)
		cut := s.cut && rng == ""
		s.mu.Unlock()
		if cut {
			w.Header().Set("Content-Length", fmt.Sprint(len(s.archive)))
			w.Write(s.archive[:len(s.archive)/2])
			panic(http.ErrAbortHandler) // the connection drops half-way
		}
		http.ServeContent(w, r, "rootfs", timeZero, strings.NewReader(string(s.archive)))
	default:
		http.NotFound(w, r)
	}
}

var timeZero = fixedTime()

func TestDownloadFormats(t *testing.T) {
	archive := tarball(t, rootfsEntries)
	srv := newImageServer(t, archive)
	ctx := context.Background()
	for _, tt := range []struct{ dir, kind, url string }{
		{"ss", ServerSimplestreams, "/ss/images/debian/trixie/amd64/default/20261201_05:24/rootfs.tar.xz"},
		{"lxc", ServerLXC, "/lxc/images/debian/trixie/amd64/default/20261201_05:24/rootfs.tar.xz"},
		{"ovz", ServerOpenVZ, "/ovz/debian-13-x86_64.tar.gz"},
	} {
		t.Run(tt.kind, func(t *testing.T) {
			opts := DownloadOptions{Server: srv.URL + "/" + tt.dir}
			offers, kind, err := ListServer(ctx, opts)
			if err != nil || kind != tt.kind || len(offers) != 1 || offers[0].Name != "debian-13-x86_64" {
				t.Fatalf("ListServer = %+v, %s, %v", offers, kind, err)
			}
			s := newTestStore(t)
			info, fetched, err := s.Download(ctx, "debian-13-x86_64", opts)
			if err != nil || !fetched {
				t.Fatalf("Download: %v (fetched %v)", err, fetched)
			}
			if info.SHA256 != srv.sum || info.Source != srv.URL+tt.url || !info.Packed || info.Init != "" ||
				info.Distribution != "debian" || info.Version != "13" {
				t.Errorf("info: %+v", info)
			}
			if _, err := os.Stat(s.LowerDir(info.Name)); !os.IsNotExist(err) {
				t.Errorf("a download unpacked the template: %v", err)
			}
			if v, err := s.Verify(ctx, info.Name); err != nil || !v.OK() || !v.Packed {
				t.Errorf("Verify of the packed template: %+v, %v", v, err)
			}
			if got, err := s.Get(info.Name); err != nil || !got.Packed {
				t.Errorf("Get: %+v, %v", got, err)
			}
			if got, err := s.Unpack(ctx, info.Name); err != nil || got.Packed || got.Init != "busybox" || got.SHA256 != srv.sum {
				t.Errorf("Unpack: %+v, %v", got, err)
			}
			if got, err := s.Get(info.Name); err != nil || got.Packed || got.Init != "busybox" {
				t.Errorf("Get after Unpack: %+v, %v", got, err)
			}
			if v, err := s.Verify(ctx, info.Name); err != nil || !v.OK() || v.Packed || v.Entries == 0 {
				t.Errorf("Verify of the unpacked template: %+v, %v", v, err)
			}
			if _, fetched, err := s.Download(ctx, "debian-13-x86_64", opts); err != nil || fetched {
				t.Errorf("second Download: fetched %v, %v", fetched, err)
			}
			if _, _, err := s.Download(ctx, "debian-12-x86_64", opts); !errors.Is(err, ErrNoOffer) {
				t.Errorf("missing template: %v", err)
			}
		})
	}
}

func TestDownloadRefusesCorrupt(t *testing.T) {
	srv := newImageServer(t, tarball(t, rootfsEntries))
	srv.wrongSum = true
	s := newTestStore(t)
	_, _, err := s.Download(context.Background(), "debian-13-x86_64", DownloadOptions{Server: srv.URL + "/ss"})
	if !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "nothing cached") {
		t.Fatalf("Download = %v, want ErrVerify", err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("cached: %+v", list)
	}
	if parts, _ := filepath.Glob(filepath.Join(s.Dir, "downloads", "*")); len(parts) != 0 {
		t.Errorf("left: %v", parts)
	}
}

func TestDownloadResumes(t *testing.T) {
	srv := newImageServer(t, tarball(t, rootfsEntries))
	srv.cut = true
	s := newTestStore(t)
	opts := DownloadOptions{Server: srv.URL + "/lxc"}
	if _, _, err := s.Download(context.Background(), "debian-13-x86_64", opts); err == nil {
		t.Fatal("a cut transfer succeeded")
	}
	parts, _ := filepath.Glob(filepath.Join(s.Dir, "downloads", "*.part"))
	if len(parts) != 1 {
		t.Fatalf("partial downloads: %v", parts)
	}
	if fi, err := os.Stat(parts[0]); err != nil || fi.Size() != int64(len(srv.archive)/2) {
		t.Fatalf("partial file: %v %v", fi, err)
	}
	info, fetched, err := s.Download(context.Background(), "debian-13-x86_64", opts)
	if err != nil || !fetched || info.SHA256 != srv.sum {
		t.Fatalf("resumed Download: %+v %v", info, err)
	}
	want := fmt.Sprintf("bytes=%d-", len(srv.archive)/2)
	if last := srv.ranges[len(srv.ranges)-1]; last != want {
		t.Errorf("ranges asked: %q, want the last %q", srv.ranges, want)
	}
}

func TestDownloadNeedsAChecksum(t *testing.T) {
	archive := tarball(t, rootfsEntries)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/alpine-3.20-x86_64.tar.gz" {
			w.Write(archive)
			return
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	s := newTestStore(t)
	opts := DownloadOptions{Server: srv.URL}
	if _, _, err := s.Download(context.Background(), "alpine-3.20-x86_64", opts); !errors.Is(err, ErrVerify) ||
		!strings.Contains(err.Error(), "--no-verify") {
		t.Fatalf("Download without a checksum = %v", err)
	}
	opts.NoVerify = true
	if _, fetched, err := s.Download(context.Background(), "alpine-3.20-x86_64", opts); err != nil || !fetched {
		t.Fatalf("Download --no-verify = %v", err)
	}
	if _, _, err := ListServer(context.Background(), DownloadOptions{Server: "ftp://x"}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("ftp server: %v", err)
	}
}

// TestUnpackFailsCleanly: a downloaded template whose archive changed in the cache (a crash
// before the data reached the disk) fails its first use, with nothing left of the attempt,
// and stays packed; it is removed as any.
func TestUnpackFailsCleanly(t *testing.T) {
	srv := newImageServer(t, tarball(t, rootfsEntries))
	s := newTestStore(t)
	ctx := context.Background()
	info, _, err := s.Download(ctx, "debian-13-x86_64", DownloadOptions{Server: srv.URL + "/lxc"})
	if err != nil {
		t.Fatal(err)
	}
	// Bytes after the archive's end: it unpacks, but is not the archive downloaded.
	f, err := os.OpenFile(s.ArchivePath(info), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 512))
	f.Close()
	if _, err := s.Unpack(ctx, info.Name); !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), "download it again") {
		t.Fatalf("Unpack of an archive that changed: %v", err)
	}
	if err := os.Truncate(s.ArchivePath(info), info.Size/2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unpack(ctx, info.Name); err == nil {
		t.Fatal("a truncated archive unpacked")
	}
	if got, err := s.Get(info.Name); err != nil || !got.Packed {
		t.Fatalf("after the failed unpack: %+v, %v", got, err)
	}
	if ents, _ := filepath.Glob(filepath.Join(s.Dir, ".tmp-*")); len(ents) != 0 {
		t.Errorf("left: %v", ents)
	}
	if v, err := s.Verify(ctx, info.Name); err != nil || v.OK() {
		t.Errorf("Verify of the damaged archive: %+v, %v", v, err)
	}
	if err := s.Remove(info.Name); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(s.Dir); len(ents) != 1 || ents[0].Name() != "downloads" {
		t.Errorf("after Remove: %v", ents)
	}
}

func TestCopyHashing(t *testing.T) {
	data := make([]byte, 3<<20+12345) // several chunks and a short last one
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	want := sha256.Sum256(data)
	var out bytes.Buffer
	h := sha256.New()
	if err := copyHashing(&out, iotest.HalfReader(bytes.NewReader(data)), h); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), data) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Errorf("copied %d bytes, sha256 %x; want %d, %x", out.Len(), h.Sum(nil), len(data), want)
	}
	// A cut transfer keeps what arrived and says so.
	out.Reset()
	h.Reset()
	src := io.MultiReader(bytes.NewReader(data[:1<<20+5]), iotest.ErrReader(io.ErrUnexpectedEOF))
	if err := copyHashing(&out, src, h); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut copy: %v, want io.ErrUnexpectedEOF", err)
	}
	if part := sha256.Sum256(data[:1<<20+5]); out.Len() != 1<<20+5 || !bytes.Equal(h.Sum(nil), part[:]) {
		t.Errorf("cut copy wrote %d bytes (sha256 %x), want %d", out.Len(), h.Sum(nil), 1<<20+5)
	}
}
