//go:build integration

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// mirror is a local image server (loopback only) serving one template archive in the three
// formats template download reads: simplestreams under /ss, LXC's index under /lxc, and
// OpenVZ's precreated-cache pattern under /ovz.
type mirror struct {
	url     string
	archive []byte
	sum     string
	srv     *http.Server
	mu      sync.Mutex
	corrupt bool          // the indexes give a wrong sha256
	cut     bool          // the next full GET of an archive stops half-way
	slow    time.Duration // a pause between chunks of an archive
	ranges  []string      // the Range header of each archive GET
	sig     []byte        // the archive's detached signature (URL.asc), when set
}

const mirrorBuild = "20261201_05:24"

func newMirror(t *testing.T, archive []byte) *mirror {
	sum := sha256.Sum256(archive)
	m := &mirror{archive: archive, sum: hex.EncodeToString(sum[:])}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.url = "http://" + ln.Addr().String()
	m.srv = &http.Server{Handler: http.HandlerFunc(m.serve)}
	go m.srv.Serve(ln)
	t.Cleanup(func() { m.srv.Close() })
	return m
}

func (m *mirror) indexSum() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.corrupt {
		return strings.Repeat("0", 64)
	}
	return m.sum
}

func (m *mirror) serve(w http.ResponseWriter, r *http.Request) {
	dir := "/images/busybox/1.36/amd64/default/" + mirrorBuild + "/"
	switch p := r.URL.Path; p {
	case "/ss/streams/v1/index.json":
		fmt.Fprint(w, `{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"streams/v1/images.json"}}}`)
	case "/ss/streams/v1/images.json":
		fmt.Fprintf(w, `{"format":"products:1.0","products":{"busybox:1.36:amd64:default":{"os":"BusyBox","release":"1.36",`+
			`"arch":"amd64","variant":"default","versions":{%q:{"items":{"root.tar.xz":{"ftype":"root.tar.xz","sha256":%q,`+
			`"size":%d,"path":%q}}}}}}}`, mirrorBuild, m.indexSum(), len(m.archive), strings.TrimPrefix(dir, "/")+"rootfs.tar.xz")
	case "/lxc/meta/1.0/index-system":
		fmt.Fprintf(w, "busybox;1.36;amd64;default;%s;%s\n", mirrorBuild, dir)
	case "/lxc" + dir + "SHA256SUMS":
		fmt.Fprintf(w, "%s  rootfs.tar.xz\n", m.indexSum())
	case "/ovz/":
		fmt.Fprint(w, `<a href="busybox-1.36-x86_64.tar.zst">busybox-1.36-x86_64.tar.zst</a>`)
	case "/ovz/busybox-1.36-x86_64.tar.zst.sha256":
		fmt.Fprintf(w, "%s  busybox-1.36-x86_64.tar.zst\n", m.indexSum())
	case "/ss" + dir + "rootfs.tar.xz", "/lxc" + dir + "rootfs.tar.xz", "/ovz/busybox-1.36-x86_64.tar.zst":
		m.sendArchive(w, r)
	case "/ss" + dir + "rootfs.tar.xz.asc", "/lxc" + dir + "rootfs.tar.xz.asc", "/ovz/busybox-1.36-x86_64.tar.zst.asc":
		m.mu.Lock()
		sig := m.sig
		m.mu.Unlock()
		if sig == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(sig)
	default:
		http.NotFound(w, r)
	}
}

func (m *mirror) sendArchive(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	rng := r.Header.Get("Range")
	m.ranges = append(m.ranges, rng)
	cut := m.cut && rng == "" && r.Method == http.MethodGet
	if cut {
		m.cut = false
	}
	slow := m.slow
	m.mu.Unlock()
	if cut {
		w.Header().Set("Content-Length", fmt.Sprint(len(m.archive)))
		w.Write(m.archive[:len(m.archive)/2])
		panic(http.ErrAbortHandler) // the connection drops half-way
	}
	if slow == 0 {
		http.ServeContent(w, r, "rootfs", time.Time{}, bytes.NewReader(m.archive))
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(m.archive)))
	for off := 0; off < len(m.archive); off += 64 << 10 {
		w.Write(m.archive[off:min(off+64<<10, len(m.archive))])
		w.(http.Flusher).Flush()
		time.Sleep(slow)
	}
}

// TestTemplateDownload fetches a template (the busybox fixture, served by a loopback mirror)
// in each server format and boots a VE from it; a corrupted archive is refused with nothing
// cached; an interrupted transfer resumes with an HTTP range; two concurrent downloads of
// the same template both succeed, one waiting for the other.
func TestTemplateDownload(t *testing.T) {
	archive, err := os.ReadFile(busyboxFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	m := newMirror(t, archive)
	const name = "busybox-1.36-x86_64"
	for _, f := range []struct{ dir, kind string }{{"ss", "simplestreams"}, {"lxc", "lxc"}, {"ovz", "openvz"}} {
		t.Run(f.kind, func(t *testing.T) {
			e := newEnv(t)
			server := m.url + "/" + f.dir
			var list struct {
				Format    string
				Templates []struct{ Name, Product string }
			}
			if err := json.Unmarshal([]byte(e.must("template", "download", "--list", "--json", "--server", server).stdout), &list); err != nil ||
				list.Format != f.kind || len(list.Templates) != 1 || list.Templates[0].Name != name {
				t.Fatalf("--list: %+v, %v", list, err)
			}
			r := e.must("template", "download", name, "--server", server)
			if !strings.Contains(r.stdout, "template "+name+" downloaded from "+server) || !strings.Contains(r.stdout, m.sum) {
				t.Errorf("download said: %s", r)
			}
			if r := e.must("template", "download", name, "--server", server); !strings.Contains(r.stdout, "already in the cache") {
				t.Errorf("second download: %s", r)
			}
			// A download only fetches and checks: the first create unpacks.
			if got := templateInfo(t, e, name); !got.Packed || got.Init != "" {
				t.Errorf("after the download: %+v, want packed with no init yet", got)
			}
			if r := e.must("template", "verify", name); !strings.Contains(r.stdout, "not unpacked yet") {
				t.Errorf("verify of the packed template said: %s", r)
			}
			id := uniqueID(t)
			e.must("create", id, "--ostemplate", name)
			if got := templateInfo(t, e, name); got.Packed || got.Init == "" {
				t.Errorf("after the first create: %+v, want unpacked with its init", got)
			}
			if r := e.must("template", "verify", name); !strings.Contains(r.stdout, "entries as installed") {
				t.Errorf("verify of the unpacked template said: %s", r)
			}
			e.must("start", id, "--wait", "--timeout", "30")
			if got := e.out(id, "echo", "up"); got != "up" {
				t.Errorf("exec: %q", got)
			}
			e.expect(91, "template", "download", "debian-13-x86_64", "--server", server)
		})
	}

	t.Run("corrupt", func(t *testing.T) {
		e := newEnv(t)
		m.mu.Lock()
		m.corrupt = true
		m.mu.Unlock()
		defer func() { m.mu.Lock(); m.corrupt = false; m.mu.Unlock() }()
		r := e.expect(94, "template", "download", name, "--server", m.url+"/ss")
		if !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, "nothing cached") {
			t.Errorf("refusal: %s", r)
		}
		if got := e.must("template", "list", "--json").stdout; strings.TrimSpace(got) != "[]" {
			t.Errorf("cached after a refusal: %s", got)
		}
		if left, _ := filepath.Glob(filepath.Join(e.root, "templates", "downloads", "*")); len(left) != 0 {
			t.Errorf("left after a refusal: %v", left)
		}
	})

	t.Run("resume", func(t *testing.T) {
		e := newEnv(t)
		m.mu.Lock()
		m.cut, m.ranges = true, nil
		m.mu.Unlock()
		r := e.vectl("template", "download", name, "--server", m.url+"/lxc")
		if r.code == 0 || !strings.Contains(r.stderr, "run it again to resume") {
			t.Fatalf("cut transfer: %s", r)
		}
		r = e.must("template", "download", name, "--server", m.url+"/lxc")
		if !strings.Contains(r.stderr, fmt.Sprintf("resuming %s", m.url)) {
			t.Errorf("no resume note: %s", r)
		}
		m.mu.Lock()
		ranges := m.ranges
		m.mu.Unlock()
		if want := fmt.Sprintf("bytes=%d-", len(archive)/2); len(ranges) < 2 || ranges[len(ranges)-1] != want {
			t.Errorf("ranges asked: %q, want the last %q", ranges, want)
		}
		e.must("template", "verify", name)
	})

	t.Run("signature", func(t *testing.T) {
		e := newEnv(t)
		requireTool(t, "gpg")
		requireTool(t, "gpgv")
		home := filepath.Join(e.dir, "gnupg")
		if err := os.Mkdir(home, 0o700); err != nil {
			t.Fatal(err)
		}
		gpg := func(args ...string) []byte {
			t.Helper()
			cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("gpg %v: %v", args, err)
			}
			return out
		}
		defer exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() // its agent
		gpg("--quick-gen-key", "vectl test <test@vectl.invalid>", "ed25519", "sign", "never")
		keyring := filepath.Join(e.dir, "keyring.gpg")
		if err := os.WriteFile(keyring, gpg("--export"), 0o644); err != nil {
			t.Fatal(err)
		}
		arc := filepath.Join(e.dir, "archive")
		other := filepath.Join(e.dir, "other")
		os.WriteFile(arc, archive, 0o644)
		os.WriteFile(other, []byte("something else"), 0o644)
		setSig := func(file string) {
			m.mu.Lock()
			m.sig = gpg("--detach-sign", "--armor", "-o", "-", file)
			m.mu.Unlock()
		}
		defer func() { m.mu.Lock(); m.sig = nil; m.mu.Unlock() }()
		setSig(other)
		r := e.expect(94, "template", "download", name, "--server", m.url+"/ovz", "--keyring", keyring)
		if !strings.Contains(r.stderr, "gpgv") || !strings.Contains(r.stderr, "nothing cached") {
			t.Errorf("bad signature: %s", r)
		}
		setSig(arc)
		e.must("template", "download", name, "--server", m.url+"/ovz", "--keyring", keyring)
	})

	t.Run("concurrent", func(t *testing.T) {
		e := newEnv(t)
		m.mu.Lock()
		m.slow = 20 * time.Millisecond
		m.mu.Unlock()
		defer func() { m.mu.Lock(); m.slow = 0; m.mu.Unlock() }()
		var wg sync.WaitGroup
		res := make([]result, 2)
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i] = e.vectl("template", "download", name, "--server", m.url+"/ovz")
			}()
		}
		wg.Wait()
		out := res[0].stdout + res[1].stdout
		if res[0].code != 0 || res[1].code != 0 || !strings.Contains(out, "downloaded") || !strings.Contains(out, "already in the cache") {
			t.Fatalf("concurrent downloads:\n%s\n%s", res[0], res[1])
		}
	})
}

// templateInfo is template name as template list --json shows it.
func templateInfo(t *testing.T, e *env, name string) (info struct {
	Name, Init string
	Packed     bool
}) {
	t.Helper()
	var list []struct {
		Name, Init string
		Packed     bool
	}
	if err := json.Unmarshal([]byte(e.must("template", "list", "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	for _, i := range list {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("template %s is not in template list", name)
	return info
}
