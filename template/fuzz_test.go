package template

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// Fuzz targets of template archives, which come from outside (image servers, other tools):
// the format sniffing, entry names and the extraction of whole tar streams into a scratch
// directory, where nothing may land outside it. `make fuzz` runs each.

func FuzzDetectFormat(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Add(make([]byte, 512))
	f.Fuzz(func(t *testing.T, head []byte) { detectFormat(head) })
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"./etc/passwd", "../x", "/abs", "a//b/./c", "..", "a/../b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := cleanName(name)
		if err != nil {
			return
		}
		if strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(c, "/../") || strings.HasSuffix(c, "/..") {
			t.Fatalf("cleanName(%q) = %q escapes", name, c)
		}
	})
}

func FuzzExtract(f *testing.F) {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	w.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	w.WriteHeader(&tar.Header{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755})
	w.WriteHeader(&tar.Header{Name: "./etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	w.Write([]byte("ve\n"))
	w.WriteHeader(&tar.Header{Name: "./etc/link", Typeflag: tar.TypeSymlink, Linkname: "../../../outside"})
	w.WriteHeader(&tar.Header{Name: "./etc/hard", Typeflag: tar.TypeLink, Linkname: "./etc/hostname"})
	w.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := parent + "/root"
		extract(context.Background(), bytes.NewReader(data), dst)
		// Nothing may appear beside the target.
		if entries, _ := os.ReadDir(parent); len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "root") {
			t.Fatalf("extraction wrote outside its target: %v", entries)
		}
	})
}
