package template

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestVerify(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	ents := append(append([]ent(nil), rootfsEntries...),
		dirEnt("./dev/", 0o755), specialEnt("./dev/null", '3'), // skipped at import: not expected
		withMode(fileEnt("./etc/hostname", "replaced\n"), 0o644)) // a later entry replaces an earlier one
	path := writeArchive(t, "verify-1-x86_64.tar", tarball(t, ents))
	if _, err := s.Import(ctx, path, ""); err != nil {
		t.Fatal(err)
	}
	v, err := s.Verify(ctx, "verify-1-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if !v.OK() || v.Entries != len(ents) {
		t.Fatalf("fresh template: %+v", v)
	}

	// Change the tree in every way Verify tells apart.
	lower := s.LowerDir("verify-1-x86_64")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(lower, "etc/hostname"), []byte("other\n"), 0o644))
	must(os.Chmod(filepath.Join(lower, "etc/shadow"), 0o644))
	must(os.Remove(filepath.Join(lower, "sbin/init")))
	must(os.Symlink("/bin/false", filepath.Join(lower, "sbin/init")))
	must(os.Remove(filepath.Join(lower, "bin/sh")))
	must(os.WriteFile(filepath.Join(lower, "bin/sh"), []byte("BusyBox v1.0 fake"), 0o755))
	must(os.MkdirAll(filepath.Join(lower, "root/new"), 0o700))
	must(os.WriteFile(filepath.Join(lower, "root/new/notes"), nil, 0o600))
	must(os.RemoveAll(filepath.Join(lower, "tmp")))
	v, err = s.Verify(ctx, "verify-1-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ // by path
		"changed: /bin/sh (not a hard link of /bin/busybox)",
		"changed: /etc/hostname (content)",
		"changed: /etc/shadow (mode 0644, archive 0600)",
		"extra: /root",
		"changed: /sbin/init (link target)",
		"missing: /tmp",
	}
	if !v.ArchiveOK || !reflect.DeepEqual(v.Differences, want) {
		t.Errorf("differences:\n%q\nwant:\n%q (archive ok %v)", v.Differences, want, v.ArchiveOK)
	}

	// A changed archive fails its checksum.
	info, err := s.Get("verify-1-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.ArchivePath(info), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	_, err = f.Write(make([]byte, 512))
	must(err)
	must(f.Close())
	if v, err = s.Verify(ctx, "verify-1-x86_64"); err != nil || v.ArchiveOK || v.OK() {
		t.Errorf("appended archive: %+v, %v", v, err)
	}
	if _, err := s.Verify(ctx, "nothere-1-x86_64"); err == nil {
		t.Error("verify of a missing template succeeded")
	}
}
