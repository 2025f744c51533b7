package template

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrModified says that a template's archive or unpacked tree is not as it was installed.
var ErrModified = errors.New("template differs from its archive")

// Verification is what Verify found: the archive's checksum against the one recorded at
// import, and each difference between the unpacked tree and the archive, one line each
// ("changed: /etc/passwd (content)", "missing: /usr/bin/ls", "extra: /root/notes").
type Verification struct {
	Name        string   `json:"name"`
	ArchiveOK   bool     `json:"archive_ok"`
	Entries     int      `json:"entries"`
	Differences []string `json:"differences"`
	// Packed says the template is not unpacked yet (Info.Packed): only its archive was
	// checked.
	Packed bool `json:"packed,omitempty"`
}

// OK reports whether the archive and the tree are as they were installed.
func (v Verification) OK() bool { return v.ArchiveOK && len(v.Differences) == 0 }

// maxDifferences bounds the report: a tree replaced wholesale says so in a few lines.
const maxDifferences = 200

// Verify re-checks template name: the cached archive against the sha256 recorded when it
// entered the cache (all there is to check of a Packed one), then every entry of the archive against the unpacked tree (type,
// permission bits, owner when run as root, content of regular files, symlink targets,
// hard links), and the tree for entries the archive does not have. Device nodes, which
// import skips, are not expected in the tree. The tree is read without following any
// symlink in it.
func (s *Store) Verify(ctx context.Context, name string) (Verification, error) {
	v := Verification{Name: name, Differences: []string{}}
	info, err := s.Get(name)
	if err != nil {
		return v, err
	}
	path := s.ArchivePath(info)
	f, err := os.Open(path)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	defer f.Close()
	h := sha256.New()
	if info.Packed {
		if _, err := io.Copy(h, f); err != nil {
			return v, fmt.Errorf("verify %s: %w", name, err)
		}
		v.ArchiveOK, v.Packed = hex.EncodeToString(h.Sum(nil)) == info.SHA256, true
		return v, nil
	}
	zr, err := decompress(io.TeeReader(f, h), info.Format)
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	defer zr.Close()
	t, err := openArchiveTree(s.LowerDir(name))
	if err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	defer t.Close()
	vr := &verifier{t: t, asRoot: os.Geteuid() == 0, seen: map[string]bool{"": true}, nodes: map[string]bool{},
		diffs: map[string]string{}, v: &v}
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return v, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return v, fmt.Errorf("verify %s: read archive: %w", name, err)
		}
		vr.entry(hdr, tr)
	}
	io.Copy(io.Discard, f) // the rest of the file (padding) is part of the checksum
	v.ArchiveOK = hex.EncodeToString(h.Sum(nil)) == info.SHA256
	if err := vr.extras(s.LowerDir(name)); err != nil {
		return v, fmt.Errorf("verify %s: %w", name, err)
	}
	names := make([]string, 0, len(vr.diffs))
	for n := range vr.diffs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v.Differences = append(v.Differences, vr.diffs[n])
	}
	if len(v.Differences) > maxDifferences {
		n := len(v.Differences) - maxDifferences
		v.Differences = append(v.Differences[:maxDifferences], fmt.Sprintf("... and %d more", n))
	}
	return v, nil
}

// verifier compares archive entries with the tree.
type verifier struct {
	t      *tree
	asRoot bool
	seen   map[string]bool   // clean names of the archive's entries
	nodes  map[string]bool   // skipped device nodes, for hard links to them
	diffs  map[string]string // by name: a later entry of the same name replaces the report
	v      *Verification
}

func (vr *verifier) differ(kind, name, why string) {
	line := kind + ": /" + name
	if why != "" {
		line += " (" + why + ")"
	}
	vr.diffs[name] = line
}

func (vr *verifier) entry(hdr *tar.Header, r io.Reader) {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return // import refused such archives; an installed one has none
	}
	vr.v.Entries++
	delete(vr.diffs, name)
	delete(vr.nodes, name)
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		vr.nodes[name] = true
		return
	case tar.TypeLink:
		if target, err := cleanName(hdr.Linkname); err == nil && vr.nodes[target] {
			vr.nodes[name] = true
			return
		}
	}
	vr.seen[name] = true
	var st unix.Stat_t
	if err := vr.lstat(name, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			vr.differ("missing", name, "")
		} else {
			vr.differ("changed", name, err.Error())
		}
		return
	}
	want := map[byte]uint32{tar.TypeDir: unix.S_IFDIR, tar.TypeSymlink: unix.S_IFLNK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
	if want == 0 {
		want = unix.S_IFREG // regular files and hard links
	}
	if st.Mode&unix.S_IFMT != want {
		vr.differ("changed", name, "type")
		return
	}
	var why []string
	if want != unix.S_IFLNK && st.Mode&0o7777 != mode(hdr) && hdr.Typeflag != tar.TypeLink {
		why = append(why, fmt.Sprintf("mode %04o, archive %04o", st.Mode&0o7777, mode(hdr)))
	}
	if vr.asRoot && hdr.Typeflag != tar.TypeLink && (int(st.Uid) != hdr.Uid || int(st.Gid) != hdr.Gid) {
		why = append(why, fmt.Sprintf("owner %d:%d, archive %d:%d", st.Uid, st.Gid, hdr.Uid, hdr.Gid))
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if target, err := vr.readlink(name); err != nil || target != hdr.Linkname {
			why = append(why, "link target")
		}
	case tar.TypeLink:
		target, _ := cleanName(hdr.Linkname)
		var tst unix.Stat_t
		if err := vr.lstat(target, &tst); err != nil || tst.Dev != st.Dev || tst.Ino != st.Ino {
			why = append(why, "not a hard link of /"+target)
		}
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		if !vr.sameContent(name, st.Size, r) {
			why = append(why, "content")
		}
	}
	if len(why) > 0 {
		vr.differ("changed", name, strings.Join(why, ", "))
	}
}

// lstat stats name in the tree without following a symlink anywhere on its path.
func (vr *verifier) lstat(name string, st *unix.Stat_t) error {
	if name == "" {
		return unix.Fstat(vr.t.fd, st)
	}
	pfd, base, err := vr.t.parent(name)
	if err != nil {
		return errors.Unwrap(err) // the kernel's errno
	}
	defer unix.Close(pfd)
	return unix.Fstatat(pfd, base, st, unix.AT_SYMLINK_NOFOLLOW)
}

func (vr *verifier) readlink(name string) (string, error) {
	pfd, base, err := vr.t.parent(name)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	target, _, err := readlinkat(pfd, base)
	return target, err
}

// sameContent compares the regular file name (size bytes) with the archive's content r.
func (vr *verifier) sameContent(name string, size int64, r io.Reader) bool {
	fd, err := vr.t.open(name, unix.O_RDONLY|unix.O_NOFOLLOW)
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	a, b := sha256.New(), sha256.New()
	n, err := io.Copy(a, r)
	if err != nil || n != size {
		return false
	}
	if _, err := io.Copy(b, f); err != nil {
		return false
	}
	return bytes.Equal(a.Sum(nil), b.Sum(nil))
}

// extras reports what the tree has and the archive does not: the parents of the archive's
// entries count as its own (tar may leave them implicit).
func (vr *verifier) extras(root string) error {
	implied := map[string]bool{}
	for name := range vr.seen {
		for d := filepath.Dir(name); d != "." && d != "/"; d = filepath.Dir(d) {
			implied[d] = true
		}
	}
	var extra []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if !vr.seen[rel] && !implied[rel] {
			extra = append(extra, rel)
			if d.IsDir() {
				return fs.SkipDir // one line for a whole new directory
			}
		}
		return nil
	})
	for _, e := range extra {
		vr.differ("extra", e, "")
	}
	return err
}
