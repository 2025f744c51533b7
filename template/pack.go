package template

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Pack writes a tar stream of the tree at src: regular files, directories, symlinks, fifos
// and hardlinks (a second path to an inode already written becomes a TypeLink entry), with
// owners, modes (setuid, setgid and sticky included), nanosecond mtimes and extended
// attributes as PAX "SCHILY.xattr.<name>" records (security.capability matters: Debian's ping
// relies on it; overlayfs's own trusted.overlay.* and user.overlay.* are left out). The root
// of the tree is the entry "./". Sockets are skipped. Device nodes directly under dev/ are
// skipped too, since a VE gets its own /dev; anywhere else they are an error.
func Pack(w io.Writer, src string) error {
	return pack(context.Background(), w, src)
}

// fileID identifies an inode, to find the hardlinks in a tree.
type fileID struct{ dev, ino uint64 }

// pack is Pack with a context checked between entries.
func pack(ctx context.Context, w io.Writer, src string) error {
	tw := tar.NewWriter(w)
	links := map[fileID]string{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		return packEntry(tw, p, filepath.ToSlash(rel), links)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func packEntry(tw *tar.Writer, p, rel string, links map[fileID]string) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()),
		// PAX keeps nanosecond mtimes, long names, large ids and xattrs; the writer would
		// otherwise round mtimes to the second.
		Format: tar.FormatPAX,
	}
	id := fileID{dev: st.Dev, ino: st.Ino}
	typ := st.Mode & unix.S_IFMT
	switch typ {
	case unix.S_IFSOCK:
		return nil // a socket is only meaningful to the process that bound it
	case unix.S_IFCHR, unix.S_IFBLK:
		if path.Dir(rel) == "dev" {
			return nil // debootstrap's /dev/null and friends: a VE gets its own /dev
		}
		return fmt.Errorf("pack %s: device node outside dev/", p)
	}
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		if first, ok := links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return writeHeader(tw, hdr, p)
		}
		links[id] = rel
	}
	switch typ {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		if rel == "." {
			hdr.Name = "./"
		} else {
			hdr.Name = rel + "/"
		}
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("pack %s: unsupported file type %#o", p, typ)
	}
	if typ != unix.S_IFLNK {
		xattrs, err := readXattrs(p)
		if err != nil {
			return err
		}
		if len(xattrs) > 0 {
			hdr.PAXRecords = xattrs
		}
	}
	if err := writeHeader(tw, hdr, p); err != nil {
		return err
	}
	if typ == unix.S_IFREG {
		return copyFileData(tw, p, &st)
	}
	return nil
}

func writeHeader(tw *tar.Writer, hdr *tar.Header, p string) error {
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("pack %s: %w", p, err)
	}
	return nil
}

// copyFileData writes the content of the regular file p, refusing to follow a symlink or to
// read a different file than the one whose header was written, should the tree change
// underneath.
func copyFileData(tw *tar.Writer, p string, want *unix.Stat_t) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME needs ownership (or CAP_FOWNER); it only spares the atime update.
		f, err = os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	if st.Dev != want.Dev || st.Ino != want.Ino {
		return fmt.Errorf("pack %s: file replaced while packing", p)
	}
	if _, err := io.CopyN(tw, f, want.Size); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("pack %s: file shrank while packing", p)
		}
		return fmt.Errorf("pack %s: %w", p, err)
	}
	return nil
}

// readXattrs returns the extended attributes of p (not following a symlink) as PAX records.
func readXattrs(p string) (map[string]string, error) {
	names, err := listXattrs(p)
	if err != nil {
		return nil, err
	}
	var recs map[string]string
	for _, n := range names {
		if overlayXattr(n) {
			continue // Extract would drop it anyway
		}
		v, err := getXattr(p, n)
		if errors.Is(err, unix.ENODATA) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, &os.PathError{Op: "getxattr " + n, Path: p, Err: err}
		}
		if recs == nil {
			recs = map[string]string{}
		}
		recs[xattrPrefix+n] = string(v)
	}
	return recs, nil
}

func listXattrs(p string) ([]string, error) {
	for {
		sz, err := unix.Llistxattr(p, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		if sz == 0 {
			return nil, nil
		}
		buf := make([]byte, sz)
		sz, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew since the size query
		}
		if err != nil {
			return nil, &os.PathError{Op: "listxattr", Path: p, Err: err}
		}
		var names []string
		for _, n := range splitNUL(buf[:sz]) {
			if n != "" {
				names = append(names, n)
			}
		}
		return names, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	for {
		sz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		if sz == 0 {
			return buf, nil
		}
		sz, err = unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:sz], nil
	}
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

// CopyTree makes dst, which must not exist, a full copy of the tree at src by piping Pack
// into Extract, so that copying a template into a VE goes through the same hostile-input-safe
// code as importing one. On error dst is removed.
func CopyTree(ctx context.Context, src, dst string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
	}()
	if fi, err := os.Stat(src); err != nil {
		return err
	} else if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", src)
	}
	// 0700 while it fills; the "./" entry gives it src's owner and mode at the end.
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, removeTree(dst))
		}
	}()
	pr, pw := io.Pipe()
	packed := make(chan error, 1)
	go func() {
		err := pack(ctx, pw, src)
		pw.CloseWithError(err)
		packed <- err
	}()
	_, xerr := extract(ctx, pr, dst) // a cached tree has no device nodes to skip
	if xerr == nil {
		// Let the packer finish writing the end-of-archive blocks.
		_, xerr = io.Copy(io.Discard, pr)
	}
	pr.CloseWithError(xerr)
	perr := <-packed
	switch {
	case xerr == nil:
		return perr
	case perr == nil || errors.Is(perr, xerr):
		return xerr // extraction failed first; the packer only saw the closed pipe
	default:
		return perr // packing failed first; extraction only saw the broken stream
	}
}
