package template

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Archive formats, as recorded in Info.Format and used as the cached file's extension.
const (
	formatTar  = "tar"
	formatGzip = "tar.gz"
	formatXz   = "tar.xz"
	formatZstd = "tar.zst"
)

// errNotArchive means a file is neither compressed with a known method nor a tar archive.
var errNotArchive = errors.New("not a tar archive (expected tar, tar.gz, tar.xz or tar.zst)")

var (
	magicGzip = []byte{0x1f, 0x8b}
	magicXz   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// tarBlock is the size of a tar header.
const tarBlock = 512

// detectFormat names the format of an archive from its first bytes (at least tarBlock of
// them unless the file is shorter): the file name may lie, the magic numbers do not.
func detectFormat(head []byte) (string, error) {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return formatGzip, nil
	case bytes.HasPrefix(head, magicXz):
		return formatXz, nil
	case bytes.HasPrefix(head, magicZstd):
		return formatZstd, nil
	case isTarHeader(head):
		return formatTar, nil
	}
	return "", errNotArchive
}

// isTarHeader reports whether b starts with a tar header with a valid checksum. Checking the
// checksum rather than the "ustar" magic also accepts old v7 archives.
func isTarHeader(b []byte) bool {
	if len(b) < tarBlock {
		return false
	}
	field := bytes.Trim(b[148:156], " \x00")
	want, err := strconv.ParseInt(string(field), 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b[:tarBlock] {
		if i >= 148 && i < 156 {
			c = ' ' // the checksum is computed with its own field as spaces
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed // some old tars summed signed bytes
}

// decompress returns the tar stream inside an archive of the given format.
func decompress(r io.Reader, format string) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	switch format {
	case formatTar:
		return io.NopCloser(br), nil
	case formatGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case formatXz:
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.NopCloser(zr), nil
	case formatZstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("unknown archive format %q", format)
}
