//go:build integration

package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// snapshotInfo is one entry of snapshot-list --json.
type snapshotInfo struct {
	UUID    string `json:"uuid"`
	Parent  string `json:"parent"`
	Name    string `json:"name"`
	Layer   string `json:"layer"`
	Current bool   `json:"current"`
	Size    int64  `json:"size"`
	Running bool   `json:"running"`
	Frozen  int64  `json:"frozen_ms"`
	Dump    bool   `json:"dump"`
}

func (e *env) snapshots(id string) []snapshotInfo {
	e.t.Helper()
	var out []snapshotInfo
	if err := json.Unmarshal([]byte(e.must("snapshot-list", id, "--json").stdout), &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) snapshot(id string, args ...string) string {
	e.t.Helper()
	uuid := strings.TrimSpace(e.must(append([]string{"snapshot", id}, args...)...).stdout)
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(uuid) {
		e.t.Fatalf("snapshot printed %q, not a UUID", uuid)
	}
	return uuid
}

// guestState is what a snapshot must bring back: the package list and a listing of /etc
// (names, sizes, modes, owners, and the content of every regular file).
func (e *env) guestState(id string) string {
	e.t.Helper()
	return e.must("exec", id, "sh", "-c",
		"dpkg-query -W -f '${Package} ${Version} ${Status}\\n' | sort; "+
			"find /etc -xdev -printf '%p %y %s %m %u:%g %l\\n' | sort; "+
			"find /etc -xdev -type f -exec md5sum {} + | sort").stdout
}

// testDeb builds a small real .deb with dpkg-deb on the host.
func testDeb(t *testing.T, dir string) string {
	t.Helper()
	requireTool(t, "dpkg-deb")
	pkg := filepath.Join(dir, "pkg")
	for _, d := range []string{"DEBIAN", "usr/share/vectl-snaptest", "etc/vectl-snaptest"} {
		if err := os.MkdirAll(filepath.Join(pkg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"DEBIAN/control": "Package: vectl-snaptest\nVersion: 1.0\nArchitecture: all\nMaintainer: vectl tests <root@localhost>\n" +
			"Description: a package the snapshot test installs\n",
		"DEBIAN/conffiles":                  "/etc/vectl-snaptest/conf\n",
		"etc/vectl-snaptest/conf":           "setting=1\n",
		"usr/share/vectl-snaptest/data.txt": strings.Repeat("data\n", 1000),
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(pkg, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(dir, "vectl-snaptest_1.0_all.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", pkg, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	return deb
}

// Snapshots of a stopped Debian VE: switching back restores /etc and the package list, a
// deleted middle snapshot leaves the later ones intact, a snapshot mounts read-only, and a
// VE with snapshots is destroyed only with --force, its layers with it.
func TestSnapshotStoppedDebian(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importDebian()
	deb := testDeb(t, e.dir)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id, "--wait", "--timeout", "90")
	before := e.guestState(id)
	e.must("stop", id)

	s1 := e.snapshot(id, "--name", "clean")
	// Changes: /etc edited and a package installed with dpkg inside the VE.
	e.must("start", id, "--wait", "--timeout", "90")
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	if r := e.vectlIn(bytes.NewReader(data), "exec", id, "sh", "-c", "cat > /root/t.deb && dpkg -i /root/t.deb && rm /root/t.deb"); r.code != 0 {
		t.Fatalf("dpkg -i in the VE:\n%s", r)
	}
	e.must("exec", id, "sh", "-c", "echo changed > /etc/motd && rm /etc/issue.net && mkdir -p /etc/newdir && echo x > /etc/newdir/f")
	changed := e.guestState(id)
	if changed == before {
		t.Fatal("the changes did not change the guest state")
	}
	e.must("stop", id)
	s2 := e.snapshot(id, "--name", "with-package", "--description", "dpkg -i vectl-snaptest")
	e.must("start", id, "--wait", "--timeout", "90")
	e.must("exec", id, "sh", "-c", "echo third > /etc/third && rm -r /etc/newdir")
	third := e.guestState(id)
	e.must("stop", id)
	s3 := e.snapshot(id, "--name", "third")

	snaps := e.snapshots(id)
	if len(snaps) != 3 || snaps[0].UUID != s1 || snaps[1].Parent != s1 || snaps[2].Parent != s2 || !snaps[2].Current {
		t.Fatalf("snapshot-list: %+v", snaps)
	}
	if snaps[1].Size < 5000 {
		t.Errorf("snapshot %s (a package installed) is listed with %d bytes", s2, snaps[1].Size)
	}
	// vzctl's listing: {uuid} and its default columns.
	if out := e.must("snapshot-list", id, "-H", "-o", "uuid,name").stdout; !strings.Contains(out, s2+" with-package") {
		t.Errorf("snapshot-list -H -o uuid,name:\n%s", out)
	}

	// A snapshot mounted read-only shows its own files.
	mnt := filepath.Join(e.dir, "snapmnt")
	os.Mkdir(mnt, 0o755)
	e.must("snapshot-mount", id, "--id", s1, "--target", mnt)
	if _, err := os.Stat(filepath.Join(mnt, "etc/vectl-snaptest/conf")); !os.IsNotExist(err) {
		t.Errorf("snapshot %s shows the package installed after it (%v)", s1, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "etc/issue.net")); err != nil {
		t.Errorf("snapshot %s lacks /etc/issue.net: %v", s1, err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "etc/x"), []byte("x"), 0o644); err == nil {
		t.Errorf("a mounted snapshot is writable")
	}
	e.expect(158, "snapshot-delete", id, "--id", s1) // mounted
	e.must("snapshot-umount", id, "--id", s1)
	if m := mountsUnder(mnt); len(m) > 0 {
		t.Fatalf("snapshot-umount left %v", m)
	}

	// Back to the first snapshot: packages and /etc as before.
	e.must("snapshot-switch", id, "--id", "{"+s1+"}")
	e.must("start", id, "--wait", "--timeout", "90")
	if got := e.guestState(id); got != before {
		t.Errorf("after snapshot-switch to %s the guest differs:\n%s", s1, diffLines(before, got))
	}
	e.must("stop", id)
	if snaps := e.snapshots(id); !snaps[0].Current {
		t.Errorf("snapshot %s is not marked current after the switch: %+v", s1, snaps)
	}

	// The middle snapshot goes; the third still has everything it had.
	e.must("snapshot-delete", id, "--id", s2)
	e.expect(158, "snapshot-delete", id, "--id", s2)
	e.expect(159, "snapshot-switch", id, "--id", s2)
	e.must("snapshot-switch", id, "--id", s3)
	e.must("start", id, "--wait", "--timeout", "90")
	if got := e.guestState(id); got != third {
		t.Errorf("snapshot %s changed when %s was deleted:\n%s", s3, s2, diffLines(third, got))
	}
	e.must("stop", id)
	if snaps := e.snapshots(id); len(snaps) != 2 || snaps[1].Parent != s1 {
		t.Errorf("after deleting %s: %+v", s2, snaps)
	}
	// Deleting the first (nothing builds on its own layer but s3's chain) and the third
	// (the VE's base, then merged into its upper): the VE keeps its files.
	e.must("snapshot-delete", id, "--id", s1)
	e.must("snapshot-delete", id, "--id", s3)
	layers, _ := os.ReadDir(filepath.Join(e.root, "layers"))
	if len(layers) != 0 {
		t.Errorf("no snapshot left, but %d layers stay (a merge was missed)", len(layers))
	}
	e.must("start", id, "--wait", "--timeout", "90")
	if got := e.guestState(id); got != third {
		t.Errorf("the VE changed when its snapshots were deleted:\n%s", diffLines(third, got))
	}
	e.must("stop", id)

	// Destroy: refused with snapshots, done with --force, layers and all.
	e.snapshot(id)
	r := e.expect(161, "destroy", id)
	if !strings.Contains(r.stderr, "--force") {
		t.Errorf("the refusal does not say what to do: %s", r.stderr)
	}
	e.must("destroy", "--force", id)
	e.wantGone(id)
	if layers, _ := os.ReadDir(filepath.Join(e.root, "layers")); len(layers) != 0 {
		t.Errorf("destroy --force left %d layers", len(layers))
	}
	// Bad input: one line, the documented status, nothing made.
	id2 := uniqueID(t) + "1"
	e.must("create", id2, "--ostemplate", tmpl)
	e.expect(21, "snapshot", id2, "--id", "not-a-uuid")
	e.expect(160, "snapshot-mount", id2, "--id", "2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d", "--target", mnt)
	e.expect(20, "snapshot-switch", id2)
	if snaps := e.snapshots(id2); len(snaps) != 0 {
		t.Errorf("refused snapshots were recorded: %+v", snaps)
	}
}

func diffLines(a, b string) string {
	in := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		in[l]++
	}
	var out []string
	for _, l := range strings.Split(b, "\n") {
		if in[l] > 0 {
			in[l]--
			continue
		}
		out = append(out, "+ "+l)
	}
	for l, n := range in {
		if n > 0 {
			out = append(out, "- "+l)
		}
	}
	if len(out) > 40 {
		out = append(out[:40], "...")
	}
	return strings.Join(out, "\n")
}

// A running VE's snapshot is consistent: a writer appending numbered lines 100 times a
// second leaves a prefix of its file with no torn line, and the VE was frozen only for the
// final pass.
func TestSnapshotRunning(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importDebian()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id, "--wait", "--timeout", "90")
	e.must("exec", id, "sh", "-c", "dd if=/dev/urandom of=/root/bulk bs=1M count=64 status=none")
	e.must("exec", id, "sh", "-c", `setsid sh -c 'echo $$ > /root/writer.pid; i=0; while :; do i=$((i+1)); printf "line %08d %s\n" $i abcdefghijklmnopqrstuvwxyz >> /root/log; sleep 0.01; done' </dev/null >/dev/null 2>&1 &`)
	time.Sleep(2 * time.Second)
	taken := e.must("snapshot", id, "--name", "live")
	s := strings.TrimSpace(taken.stdout)
	time.Sleep(500 * time.Millisecond)
	now := e.must("exec", id, "cat", "/root/log").stdout

	snaps := e.snapshots(id)
	if len(snaps) != 1 || !snaps[0].Running {
		t.Fatalf("snapshot-list: %+v", snaps)
	}
	t.Logf("frozen for %d ms", snaps[0].Frozen)
	mnt := filepath.Join(e.dir, "snapmnt")
	os.Mkdir(mnt, 0o755)
	e.must("snapshot-mount", id, "--id", s, "--target", mnt)
	defer e.vectl("snapshot-umount", id, "--id", s)
	data, err := os.ReadFile(filepath.Join(mnt, "root/log"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(data)
	if !strings.HasSuffix(got, "\n") {
		t.Fatalf("the snapshot's log ends in a torn line: %q", got[max(0, len(got)-60):])
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	re := regexp.MustCompile(`^line (\d{8}) abcdefghijklmnopqrstuvwxyz$`)
	for i, l := range lines {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d of the snapshot's log is torn: %q", i+1, l)
		}
		if n, _ := strconv.Atoi(m[1]); n != i+1 {
			t.Fatalf("line %d of the snapshot's log is number %d", i+1, n)
		}
	}
	if len(lines) < 50 || !strings.HasPrefix(now, got) || len(now) <= len(got) {
		t.Errorf("the snapshot's log (%d lines) is not a prefix of the VE's (%d bytes)", len(lines), len(now))
	}
	sum := func(p string) string {
		out, err := exec.Command("md5sum", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.Fields(string(out))[0]
	}
	if a, b := sum(filepath.Join(mnt, "root/bulk")), strings.Fields(e.must("exec", id, "md5sum", "/root/bulk").stdout)[0]; a != b {
		t.Errorf("the snapshot's 64 MiB file differs: %s, the VE's %s", a, b)
	}
	e.must("snapshot-umount", id, "--id", s)
	e.must("status", id)
	if !strings.Contains(e.statusLine(id), "running") {
		t.Errorf("the VE does not run after its snapshot: %s", e.statusLine(id))
	}
	// The writer goes on.
	n1 := len(e.must("exec", id, "cat", "/root/log").stdout)
	time.Sleep(300 * time.Millisecond)
	if n2 := len(e.must("exec", id, "cat", "/root/log").stdout); n2 <= n1 {
		t.Errorf("the writer stopped after the snapshot")
	}

	// With criu the snapshot holds the memory too: switching back resumes the writer where
	// the snapshot left it, same process, the next line number, no gap and no torn line.
	if !snaps[0].Dump {
		t.Fatalf("criu is installed (make criu), but the running VE's snapshot has no memory dump: %+v\n%s", snaps[0], taken.stderr)
	}
	pid := strings.TrimSpace(e.must("exec", id, "cat", "/root/writer.pid").stdout)
	noDump := e.snapshot(id, "--skip-suspend")
	e.expect(159, "snapshot-switch", id, "--id", noDump, "--must-resume")
	e.must("snapshot-switch", id, "--id", s, "--must-resume")
	if !strings.Contains(e.statusLine(id), "running") {
		t.Fatalf("the VE does not run after switching to a snapshot with a dump: %s", e.statusLine(id))
	}
	time.Sleep(time.Second)
	e.must("exec", id, "kill", "-0", pid)
	after := e.must("exec", id, "cat", "/root/log").stdout
	if !strings.HasPrefix(after, got) || len(after) <= len(got) {
		t.Fatalf("after the switch the log does not go on from the snapshot's (%d bytes, snapshot %d)", len(after), len(got))
	}
	for i, l := range strings.Split(strings.TrimSuffix(after, "\n"), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d after the switch is torn: %q", i+1, l)
		}
		if n, _ := strconv.Atoi(m[1]); n != i+1 {
			t.Fatalf("line %d after the switch is number %d: the writer did not resume where the snapshot was", i+1, n)
		}
	}
	// Without --must-resume a files-only snapshot ends stopped.
	e.must("snapshot-switch", id, "--id", noDump)
	if st := e.statusLine(id); !strings.Contains(st, "down") {
		t.Errorf("after switching to a snapshot without a dump: %s", st)
	}
	e.must("snapshot-delete", id, "--id", s)
	if _, err := os.Stat(filepath.Join(e.root, "dump", id+".snapshots", s)); !os.IsNotExist(err) {
		t.Errorf("snapshot-delete left the memory dump: %v", err)
	}
}

// A clone shares the stopped source's files (its private area is near empty whatever the
// source holds), boots beside it with its own machine-id, SSH host keys, host name and
// addresses, and what one writes the other does not see.
func TestCloneOverlay(t *testing.T) {
	e := newEnv(t)
	e.withNetwork()
	tmpl := e.importDebian()
	src, dst := uniqueID(t), uniqueID(t)+"2"
	ipA, ipB := testIP("4"), testIP("4")
	e.must("create", src, "--ostemplate", tmpl, "--ipadd", ipA, "--hostname", "source.example")
	e.must("start", src, "--wait", "--timeout", "90")
	e.must("exec", src, "sh", "-c", "head -c 1G /dev/urandom > /root/big && md5sum /root/big > /root/big.md5")
	e.must("stop", src)

	start := time.Now()
	e.must("clone", src, dst, "--ipadd", ipB)
	t.Logf("clone of a VE with 1 GiB of private data took %v", time.Since(start))
	out, err := exec.Command("du", "-s", "-B1", filepath.Join(e.root, "private", dst)).Output()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64); n > 4<<20 {
		t.Errorf("the clone's private area takes %d bytes: it copied the source's data", n)
	}
	e.expect(44, "clone", src, dst)
	e.expect(14, "clone", "no-such-ve", uniqueID(t)+"3")

	e.must("start", src, "--wait", "--timeout", "90")
	e.must("start", dst, "--wait", "--timeout", "90")
	id := func(ve string) string {
		return e.must("exec", ve, "sh", "-c", "cat /etc/machine-id; hostname; cat /etc/ssh/ssh_host_ed25519_key.pub; "+
			"ip -o addr show dev eth0 | awk '{print $4}'; cat /sys/class/net/eth0/address").stdout
	}
	a, b := id(src), id(dst)
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i, what := range []string{"machine-id", "host name", "ssh host key", "address", "MAC"} {
		if i >= len(al) || i >= len(bl) || al[i] == bl[i] {
			t.Errorf("source and clone share their %s:\n%s\n---\n%s", what, a, b)
		}
	}
	if !strings.Contains(b, dst) || !strings.Contains(b, strings.Split(ipB, "/")[0]) {
		t.Errorf("the clone's host name or address is not its own:\n%s", b)
	}
	if r := e.must("exec", dst, "md5sum", "-c", "/root/big.md5"); !strings.Contains(r.stdout, "OK") {
		t.Errorf("the clone's copy of the data: %s", r)
	}
	e.must("exec", dst, "sh", "-c", "echo clone > /root/only-clone && rm /root/big.md5")
	e.must("exec", src, "sh", "-c", "echo source > /root/only-source")
	if r := e.vectl("exec", src, "test", "-e", "/root/only-clone"); r.code == 0 {
		t.Errorf("the source sees the clone's file")
	}
	if r := e.vectl("exec", dst, "test", "-e", "/root/only-source"); r.code == 0 {
		t.Errorf("the clone sees the source's file")
	}
	e.must("exec", src, "test", "-e", "/root/big.md5")
	e.must("stop", src)
	e.must("stop", dst)
	// The source goes; the clone keeps the layer it builds on.
	e.must("destroy", src)
	e.must("start", dst, "--wait", "--timeout", "90")
	if r := e.must("exec", dst, "sh", "-c", "wc -c < /root/big"); strings.TrimSpace(r.stdout) != fmt.Sprint(1<<30) {
		t.Errorf("the clone lost its data with the source: %s", r.stdout)
	}
	e.must("stop", dst)
	e.must("destroy", dst)
	if layers, _ := os.ReadDir(filepath.Join(e.root, "layers")); len(layers) != 0 {
		t.Errorf("%d layers left after both VEs were destroyed", len(layers))
	}
}

// backupListing lists what a backup must keep, as seen inside a VE: names, types, modes,
// owners, sizes, link counts, symlink targets and the content of every regular file of the
// VE's own data.
func (e *env) backupListing(id string) string {
	e.t.Helper()
	return e.must("exec", id, "sh", "-c",
		"cd / && find etc root usr/local var/lib/dpkg srv -xdev -printf '%p %y %m %U:%G %s %n %l\\n' | sort; "+
			"find etc root usr/local srv -xdev -type f -exec md5sum {} + | sort; du -k /root/sparse | cut -f1").stdout
}

// xattrsOf reads the xattrs of the files below dir/sub (host side), by path relative to
// dir; a POSIX ACL's named ids are shown relative to the VE's range (base uid and gid).
func xattrsOf(t *testing.T, dir string, base [2]uint32, subs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	walk := func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		buf := make([]byte, 4096)
		n, err := syscall.Listxattr(p, buf)
		if err != nil || n == 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
			if strings.HasPrefix(name, "trusted.overlay.") && name != "trusted.overlay.opaque" {
				continue // the overlay's own bookkeeping (origin, impure) differs per mount
			}
			v := make([]byte, 4096)
			m, _ := syscall.Getxattr(p, name, v)
			v = v[:max(m, 0)]
			if strings.HasPrefix(name, "system.posix_acl_") {
				var ents []string
				for i := 4; i+8 <= len(v); i += 8 {
					tag, perm, id := binary.LittleEndian.Uint16(v[i:]), binary.LittleEndian.Uint16(v[i+2:]), binary.LittleEndian.Uint32(v[i+4:])
					switch tag {
					case 0x02:
						id -= base[0]
					case 0x08:
						id -= base[1]
					}
					ents = append(ents, fmt.Sprintf("%x:%o:%d", tag, perm, int32(id)))
				}
				out[rel+" "+name] = strings.Join(ents, ",")
				continue
			}
			out[rel+" "+name] = string(v)
		}
		return nil
	}
	for _, sub := range subs {
		filepath.Walk(filepath.Join(dir, sub), walk)
	}
	return out
}

// veBase is the host uid and gid of a VE's root (0, 0 for a privileged VE).
func (e *env) veBase(id string) [2]uint32 {
	e.t.Helper()
	var st struct {
		UserNS *struct {
			UID uint32 `json:"uid"`
			GID uint32 `json:"gid"`
		} `json:"userns"`
	}
	if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil {
		e.t.Fatal(err)
	}
	if st.UserNS == nil {
		return [2]uint32{}
	}
	return [2]uint32{st.UserNS.UID, st.UserNS.GID}
}

// A backup of a VE (its snapshot layer, its upper directory with hard links, a sparse file,
// a setuid file, another user's file and an xattr) restored under a new id is the same VE
// seen from inside, boots, and has its own range of ids; a cut or altered archive, or one
// whose template is missing, is refused and leaves nothing.
func TestBackupRestore(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importDebian()
	id, restored := uniqueID(t), uniqueID(t)+"5"
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id, "--wait", "--timeout", "90")
	e.must("exec", id, "sh", "-c", "mkdir -p /srv/data && echo before > /srv/data/layered && useradd -u 1234 -m alice")
	e.must("stop", id)
	e.snapshot(id) // a layer under the upper directory
	e.must("start", id, "--wait", "--timeout", "90")
	e.must("exec", id, "sh", "-c", "echo hello > /root/a && ln /root/a /root/b && truncate -s 100M /root/sparse && "+
		"echo s > /root/suid && chmod 4755 /root/suid && echo mine > /home/alice/f && chown alice:alice /home/alice/f && "+
		"ln -s /root/a /root/link && mkfifo /root/fifo && rm /etc/issue.net && echo after > /srv/data/layered")
	e.must("stop", id)
	upper := filepath.Join(e.root, "private", id, "upper")
	if err := syscall.Setxattr(filepath.Join(upper, "root/a"), "user.vectl-test", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}
	e.must("start", id, "--wait", "--timeout", "90")
	want := e.backupListing(id)

	dir := filepath.Join(e.dir, "backups")
	os.Mkdir(dir, 0o755)
	var rep struct {
		File     string `json:"file"`
		FrozenMs int64  `json:"frozen_ms"`
	}
	if err := json.Unmarshal([]byte(e.must("backup", id, dir, "--mode", "suspend", "--json").stdout), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("backup of the running VE: %s, frozen %d ms", rep.File, rep.FrozenMs)
	if rep.FrozenMs <= 0 || !strings.HasPrefix(rep.File, dir+"/vectl-backup-"+id+"-") {
		t.Errorf("backup --json: %+v", rep)
	}
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
		t.Errorf("the backup left more than its archive: %v", names)
	}
	e.expect(21, "backup", id, rep.File) // never overwrites

	e.must("backup-restore", rep.File, restored)
	e.must("start", restored, "--wait", "--timeout", "90")
	if got := e.backupListing(restored); got != want {
		t.Errorf("the restored VE differs from the original:\n%s", diffLines(want, got))
	}
	if r := e.must("exec", restored, "stat", "-c", "%i", "/root/a", "/root/b"); len(strings.Fields(r.stdout)) != 2 || strings.Fields(r.stdout)[0] != strings.Fields(r.stdout)[1] {
		t.Errorf("the hard link was not kept: %s", r.stdout)
	}
	ba, bb := e.veBase(id), e.veBase(restored)
	if ba == bb {
		t.Errorf("the restored VE shares the original's ids: %v", ba)
	}
	e.must("stop", restored)
	// The restored VE may have written its journal since: the files the test made, and the
	// journal directory's ACL (named ids, shifted to the new range).
	subs := []string{"root", "home", "srv", "tmp", "var/log/journal"}
	xa, xb := xattrsOf(t, upper, ba, subs...), xattrsOf(t, filepath.Join(e.root, "private", restored, "upper"), bb, subs...)
	for k := range xa {
		if strings.HasPrefix(k, "var/log/journal/") {
			delete(xa, k)
		}
	}
	for k := range xb {
		if strings.HasPrefix(k, "var/log/journal/") {
			delete(xb, k)
		}
	}
	if xa["root/a user.vectl-test"] != "kept" || fmt.Sprint(xa) != fmt.Sprint(xb) {
		t.Errorf("xattrs differ:\n%v\n%v", xa, xb)
	}

	// Refusals: nothing is made.
	data, err := os.ReadFile(rep.File)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(e.dir, "cut.tar.zst")
	os.WriteFile(cut, data[:len(data)*2/3], 0o600)
	e.expect(163, "backup-restore", cut, uniqueID(t)+"6")
	e.must("backup", id, filepath.Join(e.dir, "plain.tar"), "--compress", "none", "--mode", "stop")
	plain, _ := os.ReadFile(filepath.Join(e.dir, "plain.tar"))
	plain[len(plain)-5000] ^= 0xff
	os.WriteFile(filepath.Join(e.dir, "altered.tar"), plain, 0o600)
	e.expect(163, "backup-restore", filepath.Join(e.dir, "altered.tar"), uniqueID(t)+"7")
	e.expect(44, "backup-restore", rep.File, restored)
	if out := e.must("list", "-a", "-1").stdout; len(strings.Fields(out)) != 2 {
		t.Errorf("refused restores left VEs: %s", out)
	}
	if ents, _ := os.ReadDir(e.root); len(ents) > 0 {
		for _, en := range ents {
			if strings.HasPrefix(en.Name(), ".restore-") {
				t.Errorf("a refused restore left %s", en.Name())
			}
		}
	}

	// On a node without the template: refused, unless it is embedded.
	other := newEnv(t)
	r := other.expect(91, "backup-restore", rep.File)
	if !strings.Contains(r.stderr, "--with-template") {
		t.Errorf("the refusal does not say what to do: %s", r.stderr)
	}
	withT := filepath.Join(e.dir, "with-template.tar.zst")
	e.must("backup", id, withT, "--with-template")
	// (Under another id: the cgroup parent is shared with the first env, where id runs.)
	elsewhere := uniqueID(t) + "8"
	other.must("backup-restore", withT, elsewhere)
	other.must("start", elsewhere, "--wait", "--timeout", "90")
	if got := other.backupListing(elsewhere); got != want {
		t.Errorf("restored on another node, the VE differs:\n%s", diffLines(want, got))
	}
	other.must("stop", elsewhere)
}

// The copy and image layouts snapshot a whole copy: of the rootfs, or of the disk image
// (a running VE's filesystem frozen for it, so that the copy is clean). Switching copies it
// back; a snapshot mounts read-only and can be cloned.
func TestSnapshotCopyImage(t *testing.T) {
	for _, lay := range []string{"copy", "image"} {
		t.Run(lay, func(t *testing.T) {
			e := newEnv(t)
			tmpl := e.importBusybox()
			id, clone := uniqueID(t), uniqueID(t)+"9"
			args := []string{"create", id, "--ostemplate", tmpl, "--layout", lay}
			if lay == "image" {
				args = append(args, "--diskspace", "256M")
			}
			e.must(args...)
			e.must("start", id)
			e.must("exec", id, "sh", "-c", "echo one > /root/f && sync")
			s1 := e.snapshot(id) // running: frozen, filesystem too
			e.must("exec", id, "sh", "-c", "echo two > /root/f")
			e.must("stop", id)
			s2 := e.snapshot(id)
			snaps := e.snapshots(id)
			if len(snaps) != 2 || !snaps[0].Running || snaps[1].Running || !snaps[1].Current {
				t.Fatalf("snapshot-list: %+v", snaps)
			}
			mnt := filepath.Join(e.dir, "mnt")
			os.Mkdir(mnt, 0o755)
			e.must("snapshot-mount", id, "--id", s1, "--target", mnt)
			if data, err := os.ReadFile(filepath.Join(mnt, "root/f")); err != nil || string(data) != "one\n" {
				t.Errorf("the running VE's snapshot holds %q (%v), want one", data, err)
			}
			if err := os.WriteFile(filepath.Join(mnt, "x"), nil, 0o644); err == nil {
				t.Errorf("a mounted snapshot is writable")
			}
			e.must("snapshot-umount", id, "--id", s1)
			e.must("snapshot-switch", id, "--id", s1, "--skip-resume")
			e.must("start", id)
			if out := e.must("exec", id, "cat", "/root/f").stdout; out != "one\n" {
				t.Errorf("after snapshot-switch /root/f = %q, want one", out)
			}
			e.must("stop", id)
			e.must("clone", id, clone, "--snapshot", s2)
			e.must("start", clone)
			if out := e.must("exec", clone, "cat", "/root/f").stdout; out != "two\n" {
				t.Errorf("the clone of snapshot %s has /root/f = %q, want two", s2, out)
			}
			e.must("stop", clone)
			e.must("snapshot-delete", id, "--id", s1)
			e.must("destroy", "--force", id)
			e.must("destroy", clone)
			if layers, _ := os.ReadDir(filepath.Join(e.root, "layers")); len(layers) != 0 {
				t.Errorf("%d layers left", len(layers))
			}
		})
	}
}

// backup --mode suspend dumps a running VE's memory with its files; restored under its own
// id the VE comes back suspended, and restore resumes it where the backup froze it. With
// --with-snapshots its snapshots come back too.
func TestBackupSuspendDump(t *testing.T) {
	e := newEnv(t)
	tmpl := e.importBusybox()
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", tmpl)
	e.must("start", id)
	e.must("exec", id, "sh", "-c", "echo kept > /root/before")
	e.must("stop", id)
	snap := e.snapshot(id, "--name", "before")
	e.must("start", id)
	e.must("exec", id, "sh", "-c", `setsid sh -c 'echo $$ > /root/writer.pid; i=0; while :; do i=$((i+1)); echo "line $i" >> /root/log; sleep 0.01; done' </dev/null >/dev/null 2>&1 &`)
	time.Sleep(time.Second)
	pid := strings.TrimSpace(e.must("exec", id, "cat", "/root/writer.pid").stdout)
	file := filepath.Join(e.dir, "b.tar.zst")
	e.must("backup", id, file, "--mode", "suspend", "--with-snapshots")
	e.must("stop", "--fast", id)
	e.must("destroy", "--force", id)

	e.must("backup-restore", file)
	if st := e.statusLine(id); !strings.Contains(st, "down") {
		t.Fatalf("restored with a memory dump, the VE is not down (suspended): %s", st)
	}
	if out := e.must("list", "-a", "-o", "ctid,status", "-H").stdout; !strings.Contains(out, "suspended") {
		t.Errorf("the restored VE is not listed suspended: %s", out)
	}
	e.must("restore", id)
	e.must("exec", id, "kill", "-0", pid)
	log := e.must("exec", id, "cat", "/root/log").stdout
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	for i, l := range lines {
		if l != fmt.Sprintf("line %d", i+1) {
			t.Fatalf("line %d of the resumed writer's log is %q", i+1, l)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if more := e.must("exec", id, "cat", "/root/log").stdout; len(more) <= len(log) {
		t.Errorf("the resumed writer does not write")
	}
	snaps := e.snapshots(id)
	if len(snaps) != 1 || snaps[0].UUID != snap || snaps[0].Name != "before" {
		t.Fatalf("the snapshots did not come back: %+v", snaps)
	}
	e.must("stop", id)
	e.must("snapshot-switch", id, "--id", snap)
	e.must("start", id)
	if out := e.must("exec", id, "sh", "-c", "cat /root/before; test -e /root/log && echo has-log; true").stdout; out != "kept\n" {
		t.Errorf("after switching to the restored snapshot: %q", out)
	}
}
