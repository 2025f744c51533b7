package template

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of an archive built in memory.
type ent struct {
	name string
	typ  byte
	mode int64
	body string
	link string
	pax  map[string]string
	uid  int
	gid  int
}

func fileEnt(name, body string) ent {
	return ent{name: name, typ: tar.TypeReg, mode: 0o644, body: body}
}
func dirEnt(name string, mode int64) ent { return ent{name: name, typ: tar.TypeDir, mode: mode} }
func symlinkEnt(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlinkEnt(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, mode: 0o644, link: target}
}
func specialEnt(name string, typ byte) ent { return ent{name: name, typ: typ, mode: 0o600} }
func withMode(e ent, mode int64) ent       { e.mode = mode; return e }
func withOwner(e ent, uid, gid int) ent    { e.uid, e.gid = uid, gid; return e }
func withPAX(e ent, k, v string) ent       { e.pax = map[string]string{k: v}; return e }
func fixedTime() time.Time                 { return time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC) }

// tarball writes es as a PAX tar archive, uid/gid 0 and a fixed mtime.
func tarball(t *testing.T, es []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		hdr := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			ModTime: fixedTime(), PAXRecords: e.pax, Format: tar.FormatPAX, Uid: e.uid, Gid: e.gid,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeChar || e.typ == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 8, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("write header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("write %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sandbox is the layout of a hostile-archive test: tmp/{target,outside}, with
// outside/victim, whose content and link count must never change.
type sandbox struct {
	tmp, target, outside, victim string
}

const victimData = "victim\n"

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	tmp := t.TempDir()
	sb := sandbox{
		tmp:     tmp,
		target:  filepath.Join(tmp, "target"),
		outside: filepath.Join(tmp, "outside"),
		victim:  filepath.Join(tmp, "outside", "victim"),
	}
	for _, d := range []string{sb.target, sb.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(sb.victim, []byte(victimData), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeTree(tmp) })
	return sb
}

// checkUntouched fails unless tmp holds only target and outside, and outside only an
// unchanged victim with one link.
func (sb sandbox) checkUntouched(t *testing.T) {
	t.Helper()
	if got := dirNames(t, sb.tmp); !slices.Equal(got, []string{"outside", "target"}) {
		t.Errorf("entries next to the target: %v", got)
	}
	if got := dirNames(t, sb.outside); !slices.Equal(got, []string{"victim"}) {
		t.Errorf("entries in outside: %v", got)
	}
	fi, err := os.Lstat(sb.victim)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("victim mode is %v", fi.Mode())
	}
	if n := nlink(t, sb.victim); n != 1 {
		t.Errorf("victim has %d links, want 1", n)
	}
	if data, err := os.ReadFile(sb.victim); err != nil || string(data) != victimData {
		t.Errorf("victim content %q, %v", data, err)
	}
}

func dirNames(t *testing.T, d string) []string {
	t.Helper()
	ents, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func lstat(t *testing.T, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

func nlink(t *testing.T, p string) uint64 { t.Helper(); return uint64(lstat(t, p).Nlink) }
