package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// DefaultServer is the image server template download uses without --server: the LXC and
// Incus image server, which serves both the LXC download index and simplestreams.
const DefaultServer = "https://images.linuxcontainers.org"

// Server formats template download understands.
const (
	ServerSimplestreams = "simplestreams" // streams/v1/index.json and its products file
	ServerLXC           = "lxc"           // meta/1.0/index-system, LXC's download template
	ServerOpenVZ        = "openvz"        // BASE/NAME.tar.{xz,zst,gz}, OpenVZ's precreated caches
)

// ErrVerify says that a downloaded template did not match its checksum or signature, or
// that the server gave neither.
var ErrVerify = errors.New("download does not match its checksum or signature")

// ErrNoOffer says that the server has no template of the name asked for.
var ErrNoOffer = errors.New("the server has no such template")

// Offer is one template a server has.
type Offer struct {
	Name    string `json:"name"`    // vectl's name: debian-13-x86_64[-variant]
	Product string `json:"product"` // the server's: debian/trixie/amd64/default
	Version string `json:"version"` // the server's build (20261201_05:24), "" for OpenVZ
	URL     string `json:"url"`     // the root filesystem archive
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size,omitempty"`
	sumsURL string // a SHA256SUMS file naming the archive, when the index gives no sha256
	sigURL  string // a detached OpenPGP signature of the archive
}

// DownloadOptions say where and how Download fetches a template.
type DownloadOptions struct {
	Server  string // base URL; DefaultServer when empty
	Keyring string // an OpenPGP keyring for gpgv: signatures are checked when set
	// NoVerify accepts an archive for which the server has neither a checksum nor, with
	// Keyring, a signature (a private mirror); a checksum it does give is still checked.
	NoVerify bool
	Client   *http.Client                  // nil: a client with the environment's proxy settings
	Progress func(done, total int64)       // called as the archive arrives (total -1: unknown)
	Log      func(format string, a ...any) // one-line notes (resumed at N bytes); nil: none
}

func (o *DownloadOptions) client() *http.Client {
	if o.Client != nil {
		return o.Client
	}
	// http.DefaultTransport takes HTTP(S)_PROXY and NO_PROXY from the environment.
	return &http.Client{Transport: http.DefaultTransport}
}

func (o *DownloadOptions) base() (*url.URL, error) {
	s := o.Server
	if s == "" {
		s = DefaultServer
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server %q: want an http or https URL", ErrInvalidName, s)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// ListServer returns what the server offers, and which format it speaks.
func ListServer(ctx context.Context, opts DownloadOptions) ([]Offer, string, error) {
	base, err := opts.base()
	if err != nil {
		return nil, "", err
	}
	c := opts.client()
	if offers, ok, err := listSimplestreams(ctx, c, base); ok || err != nil {
		return offers, ServerSimplestreams, err
	}
	if offers, ok, err := listLXC(ctx, c, base); ok || err != nil {
		return offers, ServerLXC, err
	}
	offers, err := listOpenVZ(ctx, c, base)
	return offers, ServerOpenVZ, err
}

// findOffer returns the server's offer for name.
func findOffer(ctx context.Context, name string, opts DownloadOptions) (Offer, error) {
	base, err := opts.base()
	if err != nil {
		return Offer{}, err
	}
	c := opts.client()
	offers, ok, err := listSimplestreams(ctx, c, base)
	if !ok && err == nil {
		offers, ok, err = listLXC(ctx, c, base)
	}
	if err != nil {
		return Offer{}, err
	}
	if ok {
		for _, o := range offers {
			if o.Name == name {
				return o, nil
			}
		}
		return Offer{}, fmt.Errorf("%w: %s at %s (template download --list shows what it has)", ErrNoOffer, name, base)
	}
	// OpenVZ's pattern: the archive is named after the template.
	for _, ext := range []string{formatXz, formatZstd, formatGzip} {
		u := base.JoinPath(name + "." + ext).String()
		if resp, err := get(ctx, c, u, http.MethodHead); err == nil {
			resp.Body.Close()
			o := Offer{Name: name, Product: name, URL: u, Size: resp.ContentLength, sigURL: u + ".asc",
				sumsURL: base.JoinPath("SHA256SUMS").String()}
			o.SHA256 = fetchSum(ctx, c, u+".sha256", path.Base(u))
			return o, nil
		}
	}
	return Offer{}, fmt.Errorf("%w: %s at %s (no %s.tar.xz, .tar.zst or .tar.gz)", ErrNoOffer, name, base, name)
}

// get fetches u and returns the response when its status is 200 (or 206 for a range).
func get(ctx context.Context, c *http.Client, u, method string, header ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.Set("User-Agent", "vectl")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, &httpError{url: u, status: resp.Status, code: resp.StatusCode}
	}
	return resp, nil
}

type httpError struct {
	url, status string
	code        int
}

func (e *httpError) Error() string { return fmt.Sprintf("GET %s: %s", e.url, e.status) }

// notFound reports whether err is an HTTP 404 or 403 (a server without that index).
func notFound(err error) bool {
	var he *httpError
	return errors.As(err, &he) && (he.code == http.StatusNotFound || he.code == http.StatusForbidden)
}

// maxIndex bounds an index file: the LXC server's images.json is a few MB.
const maxIndex = 64 << 20

func fetchSmall(ctx context.Context, c *http.Client, u string) ([]byte, error) {
	resp, err := get(ctx, c, u, http.MethodGet)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxIndex+1))
	if err == nil && len(data) > maxIndex {
		err = fmt.Errorf("GET %s: larger than %d MB", u, maxIndex>>20)
	}
	return data, err
}

// fetchSum returns the sha256 a checksum file at u gives for file ("" when none).
func fetchSum(ctx context.Context, c *http.Client, u, file string) string {
	data, err := fetchSmall(ctx, c, u)
	if err != nil {
		return ""
	}
	return sumFor(string(data), file)
}

// sumFor finds file's sha256 in sha256sum output ("HEX  name" or "HEX *name"); a file with
// one bare line names its only file.
func sumFor(text, file string) string {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= 1 && isHex(strings.ToLower(f[0]), 64) && (len(f) == 1 && len(lines) == 1 ||
			len(f) == 2 && path.Base(strings.TrimPrefix(f[1], "*")) == file) {
			return strings.ToLower(f[0])
		}
	}
	return ""
}

// simplestreams documents (the parts used here).
type ssIndex struct {
	Index map[string]struct {
		Datatype string `json:"datatype"`
		Path     string `json:"path"`
	} `json:"index"`
}

type ssProducts struct {
	Products map[string]struct {
		OS       string `json:"os"`
		Release  string `json:"release"`
		Arch     string `json:"arch"`
		Variant  string `json:"variant"`
		Versions map[string]struct {
			Items map[string]struct {
				Ftype  string `json:"ftype"`
				SHA256 string `json:"sha256"`
				Size   int64  `json:"size"`
				Path   string `json:"path"`
			} `json:"items"`
		} `json:"versions"`
	} `json:"products"`
}

// rootFtypes are the simplestreams item types of a root filesystem tarball.
var rootFtypes = []string{"root.tar.xz", "root.tar.gz", "root.tar.zst"}

func listSimplestreams(ctx context.Context, c *http.Client, base *url.URL) ([]Offer, bool, error) {
	data, err := fetchSmall(ctx, c, base.JoinPath("streams/v1/index.json").String())
	if notFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var idx ssIndex
	if err := json.Unmarshal(data, &idx); err != nil || idx.Index == nil {
		return nil, false, nil // not simplestreams
	}
	var offers []Offer
	for _, e := range idx.Index {
		if e.Datatype != "image-downloads" || e.Path == "" {
			continue
		}
		data, err := fetchSmall(ctx, c, base.JoinPath(e.Path).String())
		if err != nil {
			return nil, true, err
		}
		var p ssProducts
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, true, fmt.Errorf("%s: %w", e.Path, err)
		}
		for prod, pr := range p.Products {
			versions := make([]string, 0, len(pr.Versions))
			for v := range pr.Versions {
				versions = append(versions, v)
			}
			sort.Sort(sort.Reverse(sort.StringSlice(versions)))
			for _, v := range versions { // the newest build with a root tarball
				var found *Offer
				for _, it := range pr.Versions[v].Items {
					if slices.Contains(rootFtypes, it.Ftype) && it.Path != "" {
						dist := strings.ToLower(pr.OS)
						if parts := strings.Split(prod, ":"); len(parts) == 4 {
							dist = parts[0]
						}
						found = &Offer{Name: VectlName(dist, pr.Release, pr.Arch, pr.Variant),
							Product: strings.Join([]string{dist, pr.Release, pr.Arch, pr.Variant}, "/"),
							Version: v, URL: base.JoinPath(it.Path).String(), SHA256: strings.ToLower(it.SHA256),
							Size: it.Size}
						found.sigURL = found.URL + ".asc"
						break
					}
				}
				if found != nil {
					offers = append(offers, *found)
					break
				}
			}
		}
	}
	sortOffers(offers)
	return offers, true, nil
}

func listLXC(ctx context.Context, c *http.Client, base *url.URL) ([]Offer, bool, error) {
	data, err := fetchSmall(ctx, c, base.JoinPath("meta/1.0/index-system").String())
	if notFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var offers []Offer
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(l), ";")
		if len(f) != 6 || f[5] == "" {
			continue
		}
		dir := base.JoinPath(f[5])
		o := Offer{Name: VectlName(f[0], f[1], f[2], f[3]), Product: strings.Join(f[:4], "/"), Version: f[4],
			URL: dir.JoinPath("rootfs.tar.xz").String(), sumsURL: dir.JoinPath("SHA256SUMS").String()}
		o.sigURL = o.URL + ".asc"
		offers = append(offers, o)
	}
	// A product listed twice (two builds): the newest wins.
	sortOffers(offers)
	offers = slices.CompactFunc(offers, func(a, b Offer) bool { return a.Name == b.Name })
	return offers, true, nil
}

// archiveLink matches the archives in a directory listing.
var archiveLink = lazyRegexp(`href="([^"/?#]+)\.(tar\.(?:gz|xz|zst))"`)

func listOpenVZ(ctx context.Context, c *http.Client, base *url.URL) ([]Offer, error) {
	data, err := fetchSmall(ctx, c, base.String())
	if err != nil {
		return nil, fmt.Errorf("%s: no simplestreams or LXC index, and no directory listing: %w", base, err)
	}
	var offers []Offer
	for _, m := range archiveLink().FindAllStringSubmatch(string(data), -1) {
		name, err := url.PathUnescape(m[1])
		if err != nil || ValidateName(name) != nil {
			continue
		}
		offers = append(offers, Offer{Name: name, Product: name, URL: base.JoinPath(m[1] + "." + m[2]).String()})
	}
	sortOffers(offers)
	offers = slices.CompactFunc(offers, func(a, b Offer) bool { return a.Name == b.Name })
	return offers, nil
}

// sortOffers orders by name, and the newest build first within a name.
func sortOffers(o []Offer) {
	sort.SliceStable(o, func(i, j int) bool {
		if o[i].Name != o[j].Name {
			return o[i].Name < o[j].Name
		}
		return o[i].Version > o[j].Version
	})
}

// Release names of the distributions whose image servers use code names.
var codenames = map[string]map[string]string{
	"debian": {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"},
	"ubuntu": {"20.04": "focal", "22.04": "jammy", "24.04": "noble", "26.04": "resolute"},
}

// Architecture names: vectl's (uname -m, as OpenVZ's templates) against the servers' (Debian's).
var archNames = map[string]string{"x86_64": "amd64", "aarch64": "arm64", "i686": "i386", "armv7l": "armhf"}

// VectlName is vectl's template name for a server's product: debian, trixie, amd64,
// default -> debian-13-x86_64; another variant is appended (debian-13-x86_64-cloud).
func VectlName(dist, release, arch, variant string) string {
	dist = strings.ToLower(dist)
	version := release
	for v, code := range codenames[dist] {
		if code == release {
			version = v
		}
	}
	for ours, theirs := range archNames {
		if theirs == arch {
			arch = ours
		}
	}
	name := dist + "-" + version + "-" + arch
	if variant != "" && variant != "default" {
		name += "-" + variant
	}
	return name
}

// partDir holds downloads in progress, by the URL's hash: a new attempt resumes them.
func (s *Store) partDir() string { return filepath.Join(s.Dir, "downloads") }

// Download fetches template name from an image server and installs it as Import does, with
// Info.Source the archive's URL. The archive goes to Dir/downloads first and an interrupted
// transfer resumes there (HTTP range) on the next attempt; it is checked against the sha256
// the server's index gives (or a SHA256SUMS beside it) and, with opts.Keyring, against its
// detached signature, before anything is cached; a mismatch removes it. A template of that
// name already in the cache with the server's sha256 is returned with fetched false.
func (s *Store) Download(ctx context.Context, name string, opts DownloadOptions) (info Info, fetched bool, err error) {
	if err := ValidateName(name); err != nil {
		return Info{}, false, err
	}
	o, err := findOffer(ctx, name, opts)
	if err != nil {
		return Info{}, false, fmt.Errorf("download %s: %w", name, err)
	}
	if o.SHA256 == "" && o.sumsURL != "" {
		o.SHA256 = fetchSum(ctx, opts.client(), o.sumsURL, path.Base(o.URL))
	}
	if info, err := s.Get(name); err == nil {
		if o.SHA256 != "" && o.SHA256 != info.SHA256 {
			return info, false, fmt.Errorf("download %s: %w with another archive (sha256 %.12s, the server's %.12s): remove it first",
				name, ErrExist, info.SHA256, o.SHA256)
		}
		return info, false, nil // already here: a concurrent download finished it
	}
	if err := os.MkdirAll(s.partDir(), 0o700); err != nil {
		return Info{}, false, err
	}
	sum := sha256.Sum256([]byte(o.URL))
	part := filepath.Join(s.partDir(), name+"-"+hex.EncodeToString(sum[:6])+".part")
	got, err := fetchResumable(ctx, opts, o, part)
	if err != nil {
		return Info{}, false, fmt.Errorf("download %s: %w (run it again to resume)", name, err)
	}
	if err := verifyDownload(ctx, opts, o, part, got); err != nil {
		os.Remove(part)
		os.Remove(part + ".etag")
		return Info{}, false, fmt.Errorf("download %s: %w: nothing cached", name, err)
	}
	info, err = s.installDownload(part, name, got, o.URL)
	os.Remove(part)
	os.Remove(part + ".etag")
	if err != nil {
		return Info{}, false, fmt.Errorf("download %s: %w", name, err)
	}
	return info, true, nil
}

// fetchResumable downloads o.URL into part, resuming what is there, and returns the sha256
// of the whole file.
func fetchResumable(ctx context.Context, opts DownloadOptions, o Offer, part string) (string, error) {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f) // what an earlier attempt got, hashed again
	if err != nil {
		return "", err
	}
	etag, _ := os.ReadFile(part + ".etag")
	var header []string
	if have > 0 {
		header = []string{"Range", fmt.Sprintf("bytes=%d-", have)}
		if len(etag) > 0 {
			header = append(header, "If-Range", string(etag))
		}
	}
	resp, err := get(ctx, opts.client(), o.URL, http.MethodGet, header...)
	var he *httpError
	if errors.As(err, &he) && he.code == http.StatusRequestedRangeNotSatisfiable {
		// Complete already (or the file shrank): start over.
		have = 0
		h.Reset()
		f.Truncate(0)
		resp, err = get(ctx, opts.client(), o.URL, http.MethodGet)
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusPartialContent && have > 0 {
		if opts.Log != nil {
			opts.Log("resuming %s at %d bytes", o.URL, have)
		}
	} else if have > 0 {
		// A full answer (no range support, or the file changed): start over. Only then:
		// truncating even an empty file makes ext4 flush it whole at close (auto_da_alloc),
		// 35-45 ms for 100 MB on the critical path.
		have = 0
		h.Reset()
		if err := f.Truncate(0); err != nil {
			return "", err
		}
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return "", err
	}
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		os.WriteFile(part+".etag", []byte(et), 0o600)
	}
	total := int64(-1)
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	} else if o.Size > 0 {
		total = o.Size
	}
	w := &progressWriter{done: have, total: total, report: opts.Progress}
	w.tick()
	if err := copyHashing(io.MultiWriter(f, w), resp.Body, h); err != nil {
		return "", err
	}
	w.last = time.Time{}
	w.tick()
	// No fsync (60 ms for 100 MB here): the archive is checked against this sha256 again
	// when it is unpacked (Store.Unpack), so one a crash left incomplete is refused then.
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyHashing copies src to dst a MiB at a time and feeds every chunk to h on another
// goroutine, so that hashing (sha256: ~1.9 GB/s here) overlaps the transfer rather than
// adding to it: io.Copy into a MultiWriter hashed 32 KiB at a time in line, 190 ms for
// a 106 MB template against curl's 110; this takes 110. src's errors, io.ErrUnexpectedEOF
// of a cut transfer included, are returned as they are; only io.EOF ends the copy.
func copyHashing(dst io.Writer, src io.Reader, h hash.Hash) error {
	const size, count = 1 << 20, 4
	free := make(chan []byte, count)
	for range count {
		free <- make([]byte, size)
	}
	full := make(chan []byte, count)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range full {
			h.Write(b)
			free <- b[:size]
		}
	}()
	var err error
	for err == nil {
		b := <-free
		k := 0
		for k < len(b) && err == nil {
			var n int
			n, err = src.Read(b[k:])
			k += n
		}
		if k == 0 {
			break // the reads above stop with k == 0 only on an error
		}
		if werr := writeChunked(dst, b[:k]); werr != nil {
			err = werr
			break
		}
		full <- b[:k]
	}
	close(full)
	<-hashed
	if err == io.EOF {
		return nil
	}
	return err
}

// writeChunk is the size of copyHashing's writes. A 1 MiB write makes the page cache ask
// for 1 MiB folios, whose allocation compacts memory on a node whose memory is fragmented
// (a busy one): the bench's download cost 270 to 420 ms of system time that way against
// curl's 110 with its 16 KiB writes.
const writeChunk = 64 << 10

func writeChunked(w io.Writer, b []byte) error {
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		if _, err := w.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// progressWriter reports progress at most ten times a second.
type progressWriter struct {
	done, total int64
	report      func(done, total int64)
	last        time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	p.tick()
	return len(b), nil
}

func (p *progressWriter) tick() {
	if p.report == nil || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.report(p.done, p.total)
}

// verifyDownload checks the archive against its sha256 and, with a keyring, its signature.
func verifyDownload(ctx context.Context, opts DownloadOptions, o Offer, part, got string) error {
	checked := false
	if o.SHA256 != "" {
		if got != o.SHA256 {
			return fmt.Errorf("%w: sha256 of %s is %s, the server says %s", ErrVerify, o.URL, got, o.SHA256)
		}
		checked = true
	}
	if opts.Keyring != "" {
		sig, err := fetchSmall(ctx, opts.client(), o.sigURL)
		if err != nil {
			return fmt.Errorf("%w: no signature %s to check with %s: %v", ErrVerify, o.sigURL, opts.Keyring, err)
		}
		sigFile := part + ".asc"
		if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
			return err
		}
		defer os.Remove(sigFile)
		out, err := exec.CommandContext(ctx, "gpgv", "--keyring", opts.Keyring, sigFile, part).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: gpgv: %s", ErrVerify, lastLine(out))
		}
		checked = true
	}
	if !checked && !opts.NoVerify {
		return fmt.Errorf("%w: the server gives no sha256 for %s; give --keyring to check its signature, or --no-verify",
			ErrVerify, o.URL)
	}
	return nil
}

// installDownload installs the checked download part (sha256 sum) as template name: the file
// is renamed into the cache (the same filesystem) rather than copied as an import does, and
// left packed: the first VE created from it unpacks it (Store.Unpack), as Incus does with
// the images it downloads. A download then costs what the transfer costs.
func (s *Store) installDownload(part, name, sum, source string) (Info, error) {
	f, err := os.Open(part)
	if err != nil {
		return Info{}, err
	}
	_, format, err := sniff(f, part)
	fi, serr := f.Stat()
	f.Close()
	if err != nil {
		return Info{}, err
	}
	if serr != nil {
		return Info{}, serr
	}
	if err := s.prepare(name); err != nil {
		return Info{}, err
	}
	a := archive{path: filepath.Join(s.Dir, tmpName(name, 8)+".archive"), format: format, sha256: sum, size: fi.Size()}
	if err := os.Rename(part, a.path); err != nil {
		return Info{}, err
	}
	return s.installPacked(name, a, source)
}
