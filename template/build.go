package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// BuildOptions says how Build makes a template's root filesystem.
type BuildOptions struct {
	// From is the builder: "busybox" (a minimal tree around the host's static busybox) or
	// "debootstrap" (a Debian minbase system with the init Init names).
	From string
	// Busybox is the static busybox binary to copy, for From "busybox"; default "/bin/busybox"
	// (Debian's busybox-static).
	Busybox string
	// Suite is the Debian suite, for From "debootstrap"; default "bookworm".
	Suite string
	// Mirror is the Debian mirror, for From "debootstrap"; default "http://deb.debian.org/debian".
	Mirror string
	// Init is the init system, for From "debootstrap": "systemd" (the default), "sysvinit",
	// "openrc" or "runit".
	Init string
	// CacheDir keeps the packages debootstrap downloads, for From "debootstrap", so that the
	// next build of the same suite fetches only what changed (an absolute path, made when
	// missing); "" downloads everything each time.
	CacheDir string
	// Include lists extra packages installed on top of the defaults, for From "debootstrap".
	Include []string
	// Log receives debootstrap's output; nil discards it. The busybox builder writes nothing.
	Log io.Writer
}

// Builders for BuildOptions.From.
const (
	fromBusybox     = "busybox"
	fromDebootstrap = "debootstrap"
)

// builder fills the empty directory dir with a root filesystem.
type builder func(ctx context.Context, dir string) error

// Build makes template name from scratch: it fills a temporary tree with the builder that
// opts.From names, packs it with Pack into a zstd-compressed archive and installs that like
// Import does, with Info.Source describing the build ("busybox /bin/busybox",
// "debootstrap bookworm http://deb.debian.org/debian +vim,curl"). It refuses an existing
// name with ErrExist. On error nothing of the build is left. Only debootstrap's output is
// reported while it runs, through opts.Log.
func (s *Store) Build(ctx context.Context, name string, opts BuildOptions) (Info, error) {
	info, err := s.build(ctx, name, opts)
	if err != nil {
		return Info{}, fmt.Errorf("build %s: %w", name, err)
	}
	return info, nil
}

func (s *Store) build(ctx context.Context, name string, opts BuildOptions) (info Info, err error) {
	if err := ValidateName(name); err != nil {
		return info, err
	}
	// Check the options before touching the cache, so that a typo leaves nothing behind.
	var fill builder
	var source string
	cleanup := removeTree
	switch opts.From {
	case fromBusybox:
		bb := opts.Busybox
		if bb == "" {
			bb = "/bin/busybox"
		}
		if err := checkStatic(bb); err != nil {
			return info, err
		}
		source = "busybox " + bb
		fill = func(ctx context.Context, dir string) error { return buildBusybox(ctx, dir, bb) }
	case fromDebootstrap:
		d, err := newDebootstrap(opts)
		if err != nil {
			return info, err
		}
		source = d.source()
		fill = d.build
		cleanup = removeBuildTree // debootstrap mounts /proc and /sys inside the tree
	default:
		return info, fmt.Errorf("unknown template builder %q (want %s or %s)", opts.From, fromBusybox, fromDebootstrap)
	}
	if err := s.prepare(name); err != nil {
		return info, err
	}

	dir := filepath.Join(s.Dir, tmpName("build-"+name, 12))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return info, err
	}
	if err := fill(ctx, dir); err != nil {
		return info, errors.Join(err, cleanup(dir))
	}
	a, err := s.packTree(ctx, dir, name)
	// The tree is not needed any more; removing it now keeps the peak disk use at one tree.
	if cerr := cleanup(dir); cerr != nil {
		if err == nil {
			removeIfExists(a.path)
		}
		return info, errors.Join(err, cerr)
	}
	if err != nil {
		return info, err
	}
	return s.install(ctx, name, a, source)
}

// packTree packs dir into Dir/.tmp-<name>.tar.zst, hashing the compressed stream on the way
// so that the archive is not read again for its checksum.
func (s *Store) packTree(ctx context.Context, dir, name string) (a archive, err error) {
	a = archive{path: filepath.Join(s.Dir, tmpPrefix+name+"."+formatZstd), format: formatZstd}
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return a, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(a.path)
		}
	}()
	h := sha256.New()
	cw := &countWriter{}
	zw, err := zstd.NewWriter(io.MultiWriter(f, h, cw), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return a, err
	}
	if err = pack(ctx, zw, dir); err != nil {
		zw.Close()
		return a, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err = zw.Close(); err != nil {
		return a, fmt.Errorf("compress %s: %w", a.path, err)
	}
	if err = f.Sync(); err != nil {
		return a, err
	}
	if err = f.Close(); err != nil {
		return a, err
	}
	a.sha256 = hex.EncodeToString(h.Sum(nil))
	a.size = cw.n
	return a, nil
}

// countWriter counts the bytes written through it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}
