package container

import (
	"encoding/binary"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/runc/libcontainer/configs"
)

func TestCriuReasonSkipsNoise(t *testing.T) {
	log := []byte(`(00.05) Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.06) Dumping processes (pid: 1007 comm: init)
(00.15) Error (criu/sockets.c:640): sockets: Can't get 1:16 opt: Operation not supported
(00.16) Error (criu/util.c:656): exited, status=1
(00.17) Error (criu/cr-dump.c:2111): Dumping FAILED.
`)
	if got, want := criuReason(log, "fallback"), "sockets: Can't get 1:16 opt: Operation not supported"; got != want {
		t.Fatalf("criuReason = %q, want %q", got, want)
	}
	if got := criuReason([]byte("(00.01) Error (criu/cr-dump.c:2111): Dumping FAILED.\n"), " criu failed "); got != "criu failed" {
		t.Fatalf("only noise: got %q, want the fallback", got)
	}
}

func TestVersionRE(t *testing.T) {
	for out, want := range map[string]string{"Version: 4.1.1\n": "4.1.1", "Version: 4.2\nGitID: v4.2\n": "4.2"} {
		m := versionRE().FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%q: no version", out)
		}
		got := m[1] + "." + m[2]
		if m[3] != "" {
			got += "." + m[3]
		}
		if got != want {
			t.Errorf("%q: %s, want %s", out, got, want)
		}
	}
}

func TestAdoptNamespaces(t *testing.T) {
	dir := t.TempDir()
	// ids-1.img: two magics, then one task_kobj_ids_entry with uts 12 and user 14.
	ids := encodePB([]pbField{{num: 1, val: 2}, {num: idsUTSNS, val: 12}, {num: idsUserNS, val: 14}, {num: 12, val: 5}})
	img := append(make([]byte, 8), binary.LittleEndian.AppendUint32(nil, uint32(len(ids)))...)
	if err := os.WriteFile(filepath.Join(dir, "ids-1.img"), append(img, ids...), 0o600); err != nil {
		t.Fatal(err)
	}
	root := encodePB([]pbField{{num: 1, val: 1}, {num: idsUTSNS, val: 4}, {num: idsUserNS, val: 7}})
	inv := encodePB([]pbField{{num: 1, val: 2}, {num: invRootIDs, wire: 2, data: root}, {num: 13, wire: 2, data: []byte("uuid")}})
	magic := []byte{0x16, 0x31, 0x31, 0x58}
	img = append(append(magic, binary.LittleEndian.AppendUint32(nil, uint32(len(inv)))...), inv...)
	if err := os.WriteFile(filepath.Join(dir, "inventory.img"), img, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := adoptNamespaces(dir); err != nil {
		t.Fatal(err)
	}
	m, entry, rest, err := readImage(filepath.Join(dir, "inventory.img"), imgMagicLen)
	if err != nil || string(m) != string(magic) || len(rest) != 0 {
		t.Fatalf("rewritten inventory: %v %x %x", err, m, rest)
	}
	fs, _ := parsePB(entry)
	got := map[uint64]uint64{}
	for _, f := range fs {
		if f.num == invRootIDs {
			rf, _ := parsePB(f.data)
			for _, r := range rf {
				got[r.num] = r.val
			}
		}
		if f.num == 13 && string(f.data) != "uuid" {
			t.Errorf("other fields changed: %q", f.data)
		}
	}
	if got[idsUTSNS] != 12 || got[idsUserNS] != 14 || got[1] != 1 {
		t.Fatalf("root_ids after adopt: %v", got)
	}
	os.Remove(filepath.Join(dir, "ids-1.img"))
	if adoptNamespaces(dir) == nil {
		t.Fatal("no ids-1.img: no error")
	}
}

func TestDumpedClocks(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, entry []byte) {
		t.Helper()
		img := append(make([]byte, 8), binary.LittleEndian.AppendUint32(nil, uint32(len(entry)))...)
		if err := os.WriteFile(filepath.Join(dir, name), append(img, entry...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A dump of a VE in the host's time namespace: no time_ns_id, no image.
	write("ids-1.img", encodePB([]pbField{{num: 1, val: 2}, {num: idsUserNS, val: 14}}))
	if _, _, ok, err := dumpedClocks(dir); ok || err != nil {
		t.Fatalf("no time namespace: ok %v, err %v", ok, err)
	}
	write("ids-1.img", encodePB([]pbField{{num: 1, val: 2}, {num: idsUserNS, val: 14}, {num: idsTimeNS, val: 13}}))
	// timens-13.img as criu 4.2 wrote it for a VE 3 s after its boot.
	write("timens-13.img", []byte{0x0a, 0x07, 0x08, 0x03, 0x10, 0xc9, 0xe8, 0xa2, 0x0f, 0x12, 0x07, 0x08, 0x03, 0x10, 0x9d, 0xd9, 0xa2, 0x0f})
	mono, boot, ok, err := dumpedClocks(dir)
	if !ok || err != nil || mono != 3_032_027_721 || boot != 3_032_025_757 {
		t.Fatalf("dumpedClocks = %d, %d, %v, %v", mono, boot, ok, err)
	}
	write("timens-13.img", []byte{0x0a, 0x02, 0x08, 0x03})
	if _, _, _, err := dumpedClocks(dir); err == nil {
		t.Fatal("a time namespace image without a boot-time clock was taken")
	}
}

func TestCeilSeconds(t *testing.T) {
	for ns, want := range map[int64]int64{0: 0, 1: 1, 1e9: 1, 1e9 + 1: 2, -1: 0, -1e9: -1, -1_500_000_000: -1} {
		if got := ceilSeconds(ns); got != want {
			t.Errorf("ceilSeconds(%d) = %d, want %d", ns, got, want)
		}
	}
}

// TestDumpConf: a VE's own configuration gets the nftables lock once (a method it names
// stays), the scan paths and the log level in place of the last dump's; the shared one, a
// file that is gone or none named: nothing to do.
func TestDumpConf(t *testing.T) {
	dir := t.TempDir()
	m := &Manager{opts: Options{RunDir: dir}}
	conf := filepath.Join(dir, "ve-criu.conf")
	base := criuConf + m.criuVerbosity() + "ext-mount-map /dev/null:/dev/null\n"
	if err := os.WriteFile(conf, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := configs.Config{Labels: []string{"bundle=/x", "org.criu.config=" + conf}}
	for range 2 {
		if err := m.dumpConf(cfg, true, []string{"/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	kept := "address 127.0.0.1\next-mount-map /dev/null:/dev/null\n" + m.cgroupYardLine()
	want := kept + "irmap-scan-path /etc/localtime\nirmap-scan-path /usr/share/zoneinfo/Etc/UTC\nverbosity=2\n" + nftLockLine
	if data, _ := os.ReadFile(conf); string(data) != want {
		t.Fatalf("criu.conf:\n%s", data)
	}
	m.opts.CriuLogLevel = 4
	if err := m.dumpConf(cfg, true, []string{"/etc/localtime"}); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(conf); string(data) != kept+"irmap-scan-path /etc/localtime\nverbosity=4\n"+nftLockLine {
		t.Fatalf("criu.conf after a second dump:\n%s", data)
	}
	own := "network-lock iptables"
	if err := os.WriteFile(conf, []byte(own), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.dumpConf(cfg, true, nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(conf); string(data) != m.cgroupYardLine()+"verbosity=4\n"+own+"\n" {
		t.Fatalf("a chosen method was changed:\n%s", data)
	}
	shared := []byte(criuConf)
	if err := os.WriteFile(m.criuConfPath(), shared, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []configs.Config{{Labels: []string{"org.criu.config=" + m.criuConfPath()}},
		{Labels: []string{"org.criu.config=" + filepath.Join(dir, "gone")}}, {}} {
		if err := m.dumpConf(cfg, true, []string{"/etc/localtime"}); err != nil {
			t.Fatalf("%v: %v", cfg.Labels, err)
		}
	}
	if data, _ := os.ReadFile(m.criuConfPath()); string(data) != string(shared) {
		t.Fatalf("the shared configuration was changed:\n%s", data)
	}
	if _, err := os.Stat(filepath.Join(dir, "gone")); !os.IsNotExist(err) {
		t.Fatalf("a configuration that was gone is back: %v", err)
	}
}

// TestYardLinks: each hierarchy of /proc/PID/cgroup is linked, by CRIU's name for it, to the
// mount of its root (cgroup v1 with a combined and a named hierarchy and cgroup2 beside;
// cgroup2 alone); a hierarchy mounted only below its root, or not at all, means no yard.
func TestYardLinks(t *testing.T) {
	hybrid := `25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory
40 30 0:26 / /srv/my\040mem rw - cgroup cgroup rw,memory`
	cg := "3:memory:/a\n2:cpu,cpuacct:/a\n1:name=systemd:/a\n0::/a"
	mounts := func(text string) []*mountinfo.Info {
		ms, err := mountinfo.GetMountsFromReader(strings.NewReader(text), nil)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	got, ok := yardLinks(cg, mounts(hybrid))
	want := map[string]string{"memory": "/sys/fs/cgroup/memory", "cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
		"systemd": "/sys/fs/cgroup/systemd", "unified": "/sys/fs/cgroup/unified"}
	if !ok || !maps.Equal(got, want) {
		t.Fatalf("hybrid: %v %v", got, ok)
	}
	if got, ok := yardLinks("0::/x", mounts("30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate")); !ok ||
		!maps.Equal(got, map[string]string{"unified": "/sys/fs/cgroup"}) {
		t.Fatalf("cgroup2: %v %v", got, ok)
	}
	if got, ok := yardLinks(cg+"\n4:pids:/a", mounts(hybrid)); ok {
		t.Fatalf("pids is not mounted, yet: %v", got)
	}
	if got, ok := yardLinks("5:memory:/a", mounts(strings.Replace(hybrid, "0:26 / /sys/fs/cgroup/memory", "0:26 /sub /sys/fs/cgroup/memory", 1))); !ok || got["memory"] != "/srv/my mem" {
		t.Fatalf("memory mounted at its root only at a path with a space: %v %v", got, ok)
	}
}

// TestLocaltimeScan: the VE's zone file joins /etc/localtime when its link is a plain path
// (relative links resolved from /etc); anything that could change CRIU's configuration is
// left out.
func TestLocaltimeScan(t *testing.T) {
	for _, c := range []struct{ link, want string }{
		{"/usr/share/zoneinfo/Etc/UTC", "/usr/share/zoneinfo/Etc/UTC"},
		{"../usr/share/zoneinfo/America/Port-au-Prince", "/usr/share/zoneinfo/America/Port-au-Prince"},
		{"/usr/share/zoneinfo/Etc/GMT+3", "/usr/share/zoneinfo/Etc/GMT+3"},
		{"/x\naction-script /tmp/evil", ""},
		{"/usr/share/zone info/x", ""},
		{"/a\"b", ""},
		{"", ""},
	} {
		root := t.TempDir()
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		if c.link != "" {
			if err := os.Symlink(c.link, filepath.Join(root, "etc/localtime")); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{"/etc/localtime"}
		if c.want != "" {
			want = append(want, c.want)
		}
		if got := localtimeScan(root); !slices.Equal(got, want) {
			t.Errorf("link %q: %q, want %q", c.link, got, want)
		}
	}
}

// TestCriuKdatDir: one directory per boot, root's alone; those of other boots go; a boot id
// that is not a name is refused.
func TestCriuKdatDir(t *testing.T) {
	m := &Manager{opts: Options{RunDir: t.TempDir()}}
	old, err := m.criuKdatDir("5a0c6f4e-1111-2222-3333-444455556666")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := m.criuKdatDir("0f1e2d3c-aaaa-bbbb-cccc-ddddeeeeffff")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v %v", dir, fi, err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("the directory of another boot is still there: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b"} {
		if _, err := m.criuKdatDir(bad); err == nil {
			t.Errorf("boot id %q accepted", bad)
		}
	}
}
