//go:build integration

package integration

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// statusLine runs vectl status and returns its line.
func (e *env) statusLine(id string) string {
	e.t.Helper()
	return strings.TrimSpace(e.must("status", id).stdout)
}

func (e *env) wantStatus(id, want string) {
	e.t.Helper()
	if got := e.statusLine(id); got != "VEID "+id+" "+want {
		// The VE's logs (its monitor's last words land in the console log) say why.
		logs, _ := filepath.Glob(filepath.Join(e.log, id+".*"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			e.t.Logf("%s (the end):\n%s", l, b[max(0, len(b)-4000):])
		}
		e.t.Fatalf("status %s = %q, want %q", id, got, "VEID "+id+" "+want)
	}
}

// wantGone checks that nothing of a destroyed VE is left in the env.
func (e *env) wantGone(id string) {
	e.t.Helper()
	for _, p := range []string{"ve/" + id, "private/" + id, "root/" + id, "locks/" + id + ".lock"} {
		if _, err := os.Lstat(filepath.Join(e.root, p)); !os.IsNotExist(err) {
			e.t.Errorf("%s left behind after destroy (%v)", p, err)
		}
	}
	if m := mountsUnder(filepath.Join(e.root, "root", id)); len(m) > 0 {
		e.t.Errorf("mounts left after destroy: %v", m)
	}
	e.wantStatus(id, "deleted unmounted down")
}

func TestLifecycle(t *testing.T) {
	for _, tmpl := range []string{"busybox", "debian"} {
		for _, layout := range []string{"overlay", "copy"} {
			t.Run(tmpl+"/"+layout, func(t *testing.T) {
				e := newEnv(t)
				name := e.importBusybox()
				marker := "bin/busybox"
				if tmpl == "debian" {
					name = e.importDebian()
					marker = "lib/systemd/systemd"
				}
				id := uniqueID(t)
				start := time.Now()
				// Privileged: the test writes into the mounted root as host root, which a
				// user-namespace VE's idmapped copy layout refuses (host uid 0 has no id
				// there; see README, User namespaces).
				e.must("create", id, "--ostemplate", name, "--layout", layout, "--userns", "no",
					"--hostname", "ve.example.com", "--name", "n"+id, "--description", "lifecycle test")
				t.Logf("create (%s, %s) took %v", tmpl, layout, time.Since(start))
				e.wantStatus(id, "exist unmounted down")

				var st map[string]any
				if err := json.Unmarshal([]byte(e.must("status", id, "--json").stdout), &st); err != nil {
					t.Fatal(err)
				}
				if st["exist"] != true || st["mounted"] != false || st["running"] != false || st["layout"] != layout ||
					st["ostemplate"] != name || st["hostname"] != "ve.example.com" || st["status"] != "stopped" {
					t.Fatalf("status --json = %v", st)
				}

				out := e.must("list", "-a", "-H", "-o", "ctid,status,hostname,name,ostemplate,layout").stdout
				want := []string{id, "stopped", "ve.example.com", "n" + id, name, layout}
				if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(want, " ") {
					t.Fatalf("list = %q, want %q", got, want)
				}

				// The name works wherever the id does.
				e.must("mount", "n"+id)
				e.wantStatus(id, "exist mounted down")
				e.must("mount", id) // mounting twice is fine
				root := filepath.Join(e.root, "root", id)
				if _, err := os.Stat(filepath.Join(root, marker)); err != nil {
					t.Fatalf("template content missing in the mounted root: %v", err)
				}
				// A write into one VE never reaches the shared template.
				if err := os.WriteFile(filepath.Join(root, "etc", "vectl-test"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				lower := filepath.Join(e.root, "templates", name, "etc", "vectl-test")
				if _, err := os.Stat(lower); !os.IsNotExist(err) {
					t.Fatalf("write in the VE reached the template: %v", err)
				}
				if got := e.must("list", "-a", "-H", "-o", "status", id).stdout; strings.TrimSpace(got) != "mounted" {
					t.Fatalf("list status = %q, want mounted", got)
				}

				e.must("umount", id)
				e.wantStatus(id, "exist unmounted down")
				if m := mountsUnder(root); len(m) > 0 {
					t.Fatalf("still mounted after umount: %v", m)
				}
				// Data persists across mounts.
				e.must("mount", id)
				if _, err := os.Stat(filepath.Join(root, "etc", "vectl-test")); err != nil {
					t.Fatalf("file written before umount is gone: %v", err)
				}
				// destroy unmounts by itself.
				e.must("destroy", id)
				e.wantGone(id)
				e.expect(14, "destroy", id)
				e.expect(14, "mount", id)
			})
		}
	}
}

func TestConcurrentCreateSameID(t *testing.T) {
	e := newEnv(t)
	name := e.importBusybox()
	for round := 0; round < 5; round++ {
		id := fmt.Sprintf("%d", 150+round)
		var wg sync.WaitGroup
		results := make([]result, 2)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = e.vectl("create", id, "--ostemplate", name)
			}()
		}
		wg.Wait()
		codes := []int{results[0].code, results[1].code}
		if !(codes[0] == 0 && codes[1] == 44 || codes[0] == 44 && codes[1] == 0) {
			t.Fatalf("round %d: exit codes %v, want one 0 and one 44:\n%s\n%s", round, codes, results[0], results[1])
		}
		loser := results[0]
		if loser.code == 0 {
			loser = results[1]
		}
		if !strings.Contains(loser.stderr, id) || !strings.Contains(loser.stderr, "exists") {
			t.Fatalf("the loser's message: %q", loser.stderr)
		}
		e.wantStatus(id, "exist unmounted down")
	}
}

func TestCreateKilledMidway(t *testing.T) {
	e := newEnv(t)
	name := e.importDebian() // big enough for a copy create to take a while
	id := uniqueID(t)
	c := e.cmd("create", id, "--ostemplate", name, "--layout", "copy")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it is busy copying the template.
	rootfs := filepath.Join(e.root, "private", id, "rootfs")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(rootfs, "usr")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.Process.Kill()
			c.Wait()
			t.Fatal("create never started copying")
		}
		time.Sleep(2 * time.Millisecond)
	}
	c.Process.Signal(syscall.SIGKILL)
	err := c.Wait()
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("create finished before it was killed (%v); the test needs a slower create", err)
	}
	e.wantStatus(id, "exist unmounted down incomplete")
	if st := strings.TrimSpace(e.must("list", "-a", "-H", "-o", "status", id).stdout); st != "incomplete" {
		t.Fatalf("list status = %q, want incomplete", st)
	}
	e.expect(43, "mount", id)
	e.expect(44, "create", id, "--ostemplate", name)
	e.must("destroy", id)
	e.wantGone(id)
	// The id is free again.
	e.must("create", id, "--ostemplate", name)
}

func TestListZeroAndFifty(t *testing.T) {
	e := newEnv(t)
	if out := e.must("list", "-a", "-j").stdout; strings.TrimSpace(out) != "[]" {
		t.Fatalf("list -a -j with no VEs = %q, want []", out)
	}
	if out := e.must("list", "-a").stdout; strings.Count(out, "\n") != 1 || !strings.Contains(out, "CTID") {
		t.Fatalf("list -a with no VEs = %q, want the header only", out)
	}
	if out := e.must("list", "-a", "-H").stdout; out != "" {
		t.Fatalf("list -a -H with no VEs = %q", out)
	}
	name := e.importBusybox()
	var ids []string
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("%d", 1000+i)
		ids = append(ids, id)
		e.must("create", id, "--ostemplate", name, "--hostname", "h"+id)
	}
	out := e.must("list", "-a", "-H", "-o", "ctid,status,hostname").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 50 {
		t.Fatalf("list -a shows %d VEs, want 50", len(lines))
	}
	for i, l := range lines {
		if f := strings.Fields(l); len(f) != 3 || f[0] != ids[i] || f[1] != "stopped" || f[2] != "h"+ids[i] {
			t.Fatalf("line %d = %q", i, l)
		}
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(e.must("list", "-a", "-j").stdout), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 50 || rows[49]["ctid"] != "1049" || rows[0]["hostname"] != "h1000" || rows[0]["status"] != "stopped" {
		t.Fatalf("list -a -j: %d rows, first %v", len(rows), rows[0])
	}
	// Running only (the default) lists none of them.
	if out := e.must("list", "-H").stdout; out != "" {
		t.Fatalf("list shows stopped VEs: %q", out)
	}
}

func TestTemplateCommands(t *testing.T) {
	e := newEnv(t)
	if out := e.must("template", "list", "--json").stdout; strings.TrimSpace(out) != "[]" {
		t.Fatalf("template list --json on an empty cache = %q", out)
	}
	e.expect(91, "create", uniqueID(t), "--ostemplate", busyboxName)

	name := e.importBusybox()
	e.expect(44, "template", "import", busyboxFixture(t), "--name", name)
	var infos []map[string]any
	if err := json.Unmarshal([]byte(e.must("template", "list", "--json").stdout), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0]["name"] != name || infos[0]["init"] != "busybox" ||
		len(fmt.Sprint(infos[0]["sha256"])) != 64 || infos[0]["size"].(float64) <= 0 ||
		!strings.Contains(fmt.Sprint(infos[0]["source"]), busyboxFixture(t)) {
		t.Fatalf("template list --json = %v", infos)
	}
	if out := e.must("template", "list").stdout; !strings.Contains(out, name) || !strings.Contains(out, "busybox") {
		t.Fatalf("template list = %q", out)
	}

	// Name from the file name, and a template in use cannot be removed.
	dir := t.TempDir()
	renamed := filepath.Join(dir, "tiny-1.0-x86_64.tar.zst")
	if err := copyFile(busyboxFixture(t), renamed); err != nil {
		t.Fatal(err)
	}
	e.must("template", "import", renamed)
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", "tiny-1.0-x86_64")
	r := e.expect(93, "template", "remove", "tiny-1.0-x86_64")
	if !strings.Contains(r.stderr, id) {
		t.Fatalf("refusal does not name the VE: %q", r.stderr)
	}
	e.must("destroy", id)
	e.must("template", "remove", "tiny-1.0-x86_64")
	e.expect(91, "template", "remove", "tiny-1.0-x86_64")
	for _, p := range []string{"tiny-1.0-x86_64", "tiny-1.0-x86_64.json", "tiny-1.0-x86_64.tar.zst"} {
		if _, err := os.Lstat(filepath.Join(e.root, "templates", p)); !os.IsNotExist(err) {
			t.Errorf("%s left after template remove", p)
		}
	}

	// A hostile archive is refused with the entry named, and nothing is left.
	evil := filepath.Join(dir, "evil-1-x86_64.tar")
	tarCmd := exec.Command("tar", "-cf", evil, "-P", "--transform", "s,^,../,", "-C", dir, "tiny-1.0-x86_64.tar.zst")
	if out, err := tarCmd.CombinedOutput(); err != nil {
		t.Fatalf("making the hostile archive: %v %s", err, out)
	}
	r = e.expect(21, "template", "import", evil)
	if !strings.Contains(r.stderr, "../") {
		t.Fatalf("refusal does not name the entry: %q", r.stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(e.root, "templates"))
	for _, en := range ents {
		if strings.HasPrefix(en.Name(), "evil") || strings.HasPrefix(en.Name(), ".tmp") {
			t.Errorf("%s left after a refused import", en.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(e.root, "templates", "tiny-1.0-x86_64.tar.zst")); !os.IsNotExist(err) {
		t.Errorf("the hostile entry landed outside the template cache")
	}
}

func TestDebianTemplateContent(t *testing.T) {
	// The Debian template is built with vectl template build --from debootstrap by the
	// fixture; check what it promises.
	e := newEnv(t)
	name := e.importDebian()
	var infos []map[string]any
	json.Unmarshal([]byte(e.must("template", "list", "--json").stdout), &infos)
	if len(infos) != 1 || infos[0]["init"] != "systemd" {
		t.Fatalf("debian template = %v, want init systemd", infos)
	}
	lower := filepath.Join(e.root, "templates", name)
	if fi, err := os.Stat(filepath.Join(lower, "etc", "machine-id")); err != nil || fi.Size() != 0 {
		t.Fatalf("etc/machine-id must be empty so each VE gets its own: %v", err)
	}
	for _, p := range []string{"sbin/ip", "usr/sbin/iptables", "bin/ps", "usr/bin/tcpdump"} {
		if _, err := os.Lstat(filepath.Join(lower, p)); err != nil {
			t.Errorf("template lacks %s: %v", p, err)
		}
	}
}

// TestTemplateImportSkipsDeviceNodes (issue 20): an archive shaped like debootstrap's or an
// OpenVZ precreated cache (top directory "./", device nodes in /dev) imports; the nodes are
// skipped and said so, one outside /dev is named, and a VE made from it boots with its own
// /dev.
func TestTemplateImportSkipsDeviceNodes(t *testing.T) {
	e := newEnv(t)
	// The busybox fixture's tree, repacked with "./" names and device nodes added.
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "--zstd", "-xf", busyboxFixture(t), "-C", src).CombinedOutput(); err != nil {
		t.Fatalf("unpack the fixture: %v\n%s", err, out)
	}
	arc := filepath.Join(t.TempDir(), "busybox-1.35-x86_64-devnodes.tar.gz")
	f, err := os.Create(arc)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	if err := tw.AddFS(os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		name  string
		typ   byte
		major int64
	}{{"./dev/null", tar.TypeChar, 1}, {"./dev/zero", tar.TypeChar, 1}, {"./dev/sda", tar.TypeBlock, 8}, {"./etc/console", tar.TypeChar, 5}} {
		if err := tw.WriteHeader(&tar.Header{Name: n.name, Typeflag: n.typ, Mode: 0o666, Devmajor: n.major}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []io.Closer{tw, gz, f} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	out := e.must("template", "import", arc).stdout
	for _, want := range []string{"imported", "skipped 3 device nodes in /dev", "skipped device node /etc/console"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	var infos []struct {
		Name    string
		Skipped []string
	}
	if err := json.Unmarshal([]byte(e.must("template", "list", "--json").stdout), &infos); err != nil || len(infos) != 1 ||
		len(infos[0].Skipped) != 2 {
		t.Fatalf("template list --json: %+v, %v", infos, err)
	}
	id := uniqueID(t)
	e.must("create", id, "--ostemplate", infos[0].Name)
	e.must("start", id, "--wait")
	if got := e.out(id, "sh", "-c", "test -c /dev/null && test ! -e /dev/sda && test ! -e /etc/console && echo ok"); got != "ok" {
		t.Errorf("the VE's /dev: %q", got)
	}
	// verify expects the skipped nodes nowhere, and finds a change to the shared tree.
	e.must("template", "verify", infos[0].Name)
	tree := filepath.Join(e.root, "templates", infos[0].Name)
	if err := os.WriteFile(filepath.Join(tree, "etc", "vectl-planted"), []byte("planted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.expect(94, "template", "verify", infos[0].Name)
	if !strings.Contains(r.stdout, "extra: /etc/vectl-planted") {
		t.Errorf("template verify: %s", r)
	}
	os.Remove(filepath.Join(tree, "etc", "vectl-planted"))
}
