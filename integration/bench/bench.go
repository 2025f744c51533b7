package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	busyboxName = "busybox-1.35-x86_64"
	debianName  = "debian-12-x86_64-minimal"
	// debian13Name is the Debian 13 template of the debian group's second boot row.
	debian13Name = "debian-13-x86_64-minimal"
	// debianCacheGlob is where the integration tests keep their debootstrap'd template.
	debianCacheGlob = "/var/cache/vectl-test/" + debianName + "-*.tar.zst"
	// benchCache keeps a Debian template with iperf3 built by the bench itself, when the
	// integration tests' one is missing or lacks iperf3.
	benchCache = "/var/cache/vectl-bench/debian-12-x86_64-iperf3.tar.zst"
	// cgBench is the cgroup parent (in every hierarchy) of the peers' containers.
	cgBench = "vectl-bench"
	// veCgroupParent is the --cgroup-parent of the bench's VEs: below vectl-bench, where the
	// cost counters see them (acct.go).
	veCgroupParent = "/" + cgBench + "/ve"
)

// bench is one run of the suite.
type bench struct {
	opts    options
	ctx     context.Context
	started time.Time
	tag     string // short random tag in the ids of everything this run makes
	work    string // scratch directory, removed at the end
	cmdLog  *os.File

	v    *vectlEnv // the main VE root
	dens *vectlEnv // a second root for density, list and stats (only their VEs in it)

	netConfig  string
	netReady   bool
	spec       map[string]any // the OCI spec vectl generated for a busybox VE
	busyboxFS  string         // identical copies of vectl's templates, for the peers
	debianFS   string
	debianTmpl string // vectl's unpacked Debian template (LXC copies it)
	debianArc  string // its archive (untarred as OpenVZ did)
	runtimes   []*ociRuntime
	lxc        *lxcPeer
	nspawn     string // systemd-nspawn, when it works here
	hadVectlCg bool   // /vectl existed in the cgroup hierarchies before the run
	devNull    string // the host's /dev/null's mode and owner at the start
	sysctls    map[string]string
	machine    machineInfo

	acct     *accounting       // cost counters; nil without them
	pending  cost              // cost of the timed commands since the last recording
	pendingN int               // how many
	spans    int               // open spans (harness.go)
	costs    map[string][]cost // per sample key, the cost of each measured sample

	undo         []undoStep
	samples      map[string][]float64
	rows         []Row
	memory       []memRow
	notes        []string
	failed       bool // vectl itself failed somewhere: exit non-zero
	wroteResults bool
}

type undoStep struct {
	what string
	fn   func() error
}

// onCleanup registers an undo step; cleanup runs them in reverse order.
func (b *bench) onCleanup(what string, fn func() error) {
	b.undo = append(b.undo, undoStep{what, fn})
}

func newBench(ctx context.Context, opts options) (*bench, error) {
	if err := os.MkdirAll(opts.out, 0o755); err != nil {
		return nil, err
	}
	tb := make([]byte, 2)
	rand.Read(tb)
	b := &bench{opts: opts, ctx: ctx, started: time.Now(), tag: "vb" + hex.EncodeToString(tb),
		samples: map[string][]float64{}, costs: map[string][]cost{}, sysctls: map[string]string{}}
	work, err := os.MkdirTemp("", "vectl-bench-")
	if err != nil {
		return nil, err
	}
	b.work = work
	// Searchable, as /var/lib is: a user-namespace VE's root looks its root up below it.
	if err := os.Chmod(work, 0o711); err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	// The command log outlives the scratch directory: it is what to read when a row says
	// "not measured". results/.gitignore keeps it out of commits.
	if b.cmdLog, err = os.OpenFile(filepath.Join(opts.out, "commands.log"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644); err != nil {
		os.RemoveAll(work)
		return nil, err
	}
	for _, p := range forwardingSysctls {
		v, err := os.ReadFile(p)
		if err != nil {
			os.RemoveAll(work)
			return nil, err
		}
		b.sysctls[p] = strings.TrimSpace(string(v))
	}
	_, err = os.Stat("/sys/fs/cgroup/pids/vectl")
	_, err2 := os.Stat("/sys/fs/cgroup/vectl")
	b.hadVectlCg = err == nil || err2 == nil
	b.devNull = devNullState()
	return b, nil
}

func (b *bench) progress(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(b.started).Seconds(), msg)
	fmt.Fprintf(b.cmdLog, "### %s\n", msg)
}

// note records something the results must mention (a peer that could not be measured, a
// skipped group).
func (b *bench) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	b.notes = append(b.notes, msg)
	b.progress("note: %s", msg)
}

// id names a VE or container of this run.
func (b *bench) id(name string) string { return b.tag + "-" + name }

// passes is the number of measured passes of a cheap benchmark.
func (b *bench) passes(def int) int {
	if b.opts.passes > 0 {
		return b.opts.passes
	}
	return def
}

// costly is the number of measured passes of a benchmark that takes seconds per pass.
func (b *bench) costly(def int) int {
	switch {
	case b.opts.quick:
		return 1
	case b.opts.passes > 0:
		return min(def, b.opts.passes)
	}
	return def
}

func (b *bench) runAll() error {
	b.machine = b.machineInfo()
	b.setupAccounting()
	b.progress("setting up: network guard, templates, peers (scratch %s)", b.work)
	if err := b.setupNetwork(); err != nil {
		return fmt.Errorf("network guard: %w", err)
	}
	if err := b.setupVectl(); err != nil {
		return err
	}
	b.setupPeers()
	b.settleBinaries()
	if b.opts.load {
		if err := b.startLoad(); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if len(b.opts.only) > 0 && !b.opts.only[g.name] {
			continue
		}
		if err := b.ctx.Err(); err != nil {
			b.note("%s: skipped (%v)", g.name, cause(b.ctx))
			continue
		}
		b.progress("== %s: %s", g.name, g.help)
		if err := g.run(b); err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				b.note("%s: cut short (%s)", g.name, cause(b.ctx))
				continue
			}
			b.failed = true
			b.note("%s: vectl failed: %v", g.name, err)
		}
	}
	return b.writeResults()
}

func cause(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "out of the time budget"
	}
	return "interrupted"
}

// setupVectl prepares the VE roots and the templates, and takes the OCI spec vectl
// generates for a busybox VE as the peers' configuration.
func (b *bench) setupVectl() error {
	b.netConfig = filepath.Join(b.work, "network.json")
	if err := os.WriteFile(b.netConfig, []byte(networkJSON), 0o644); err != nil {
		return err
	}
	b.v = b.newVectlEnv("main", "")
	b.dens = b.newVectlEnv("density", b.v.tmpl)
	b.onCleanup("VEs", func() error { return errors.Join(b.dens.removeAll(), b.v.removeAll()) })

	if _, err := b.v.do("template", "build", busyboxName, "--from", "busybox"); err != nil {
		return fmt.Errorf("busybox template: %w", err)
	}
	if err := b.setupDebian(); err != nil {
		return fmt.Errorf("debian template: %w", err)
	}

	// The peers run containers without a user namespace of their own (a privileged VE's
	// spec): a user-namespace VE's spec joins a namespace vectl pins while the VE runs.
	id := b.id("spec")
	if _, err := b.v.do("create", id, "--ostemplate", busyboxName, "--userns", "no"); err != nil {
		return err
	}
	if _, err := b.v.do("start", id); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(b.v.root, "ve", id, "oci.json"))
	if err == nil {
		err = json.Unmarshal(data, &b.spec)
	}
	_, err2 := b.v.do("stop", "--fast", id)
	_, err3 := b.v.do("destroy", id)
	if err := errors.Join(err, err2, err3); err != nil {
		return fmt.Errorf("the generated OCI spec: %w", err)
	}

	// The peers get copies of the very trees vectl's VEs are made from.
	b.busyboxFS = filepath.Join(b.work, "rootfs", "busybox")
	b.debianFS = filepath.Join(b.work, "rootfs", "debian")
	for src, dst := range map[string]string{filepath.Join(b.v.tmpl, busyboxName): b.busyboxFS, b.debianTmpl: b.debianFS} {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if _, err := b.sh("cp", "-a", src, dst); err != nil {
			return err
		}
	}
	return nil
}

// setupDebian imports the newest Debian template the integration tests cached (reusing
// their debootstrap), if it has iperf3; else the bench's own cached one; else it builds one
// with debootstrap and caches it.
func (b *bench) setupDebian() error {
	var candidates []string
	cached, _ := filepath.Glob(debianCacheGlob)
	sort.Slice(cached, func(i, j int) bool { return mtime(cached[i]).After(mtime(cached[j])) })
	candidates = append(candidates, cached...)
	if _, err := os.Stat(benchCache); err == nil {
		candidates = append(candidates, benchCache)
	}
	b.debianTmpl = filepath.Join(b.v.tmpl, debianName)
	for _, c := range candidates {
		if _, err := b.v.do("template", "import", c, "--name", debianName); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(b.debianTmpl, "usr", "bin", "iperf3")); err == nil {
			b.progress("debian template: imported %s", c)
			return b.findDebianArchive()
		}
		b.progress("debian template %s has no iperf3", c)
		if _, err := b.v.do("template", "remove", debianName); err != nil {
			return err
		}
	}
	b.progress("debian template: building with debootstrap (a few minutes, needs the Debian mirror)")
	if _, err := b.v.do("template", "build", debianName, "--from", "debootstrap", "--suite", "bookworm",
		"--include", "iperf3"); err != nil {
		return err
	}
	if err := b.findDebianArchive(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(benchCache), 0o755); err == nil {
		if _, err := b.sh("cp", b.debianArc, benchCache+".tmp"); err == nil {
			os.Rename(benchCache+".tmp", benchCache)
		}
	}
	return nil
}

func (b *bench) findDebianArchive() error {
	m, _ := filepath.Glob(filepath.Join(b.v.tmpl, debianName+".tar*"))
	if len(m) == 0 {
		return fmt.Errorf("no archive of %s in %s", debianName, b.v.tmpl)
	}
	b.debianArc = m[0]
	return nil
}

func mtime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return st.ModTime()
}

// vectlEnv is one state root of vectl, with its own run and log directories, under the
// scratch directory.
type vectlEnv struct {
	b    *bench
	root string
	run  string
	log  string
	tmpl string
	// cgroupParent is the node's --cgroup-parent: veCgroupParent, or /vectl-bench-n2 for the
	// second node of migrate.
	cgroupParent string
}

func (b *bench) newVectlEnv(name, tmpl string) *vectlEnv {
	d := filepath.Join(b.work, name)
	if tmpl == "" {
		tmpl = filepath.Join(d, "root", "templates")
	}
	return &vectlEnv{b: b, root: filepath.Join(d, "root"), run: filepath.Join(d, "run"),
		log: filepath.Join(d, "log"), tmpl: tmpl, cgroupParent: veCgroupParent}
}

func (v *vectlEnv) argv(args ...string) []string {
	g := []string{v.b.opts.vectl, "--root", v.root, "--template-dir", v.tmpl, "--run-dir", v.run,
		"--log-dir", v.log, "--network-config", v.b.netConfig, "--firewall-table", fwTable,
		"--vz-conf-dir", "none"} // never the host's /etc/vz
	if v.cgroupParent != "" {
		g = append(g, "--cgroup-parent", v.cgroupParent)
	}
	return append(g, args...)
}

// timed runs vectl and returns how long it took.
func (v *vectlEnv) timed(args ...string) (time.Duration, error) { return v.b.timed(v.argv(args...)...) }

// do runs vectl untimed and returns its output.
func (v *vectlEnv) do(args ...string) (string, error) { return v.b.sh(v.argv(args...)...) }

// ids lists the VEs of this root: all, or the running ones.
func (v *vectlEnv) ids(all bool) ([]string, error) {
	args := []string{"list", "-1"}
	if all {
		args = append(args, "-a")
	}
	out, err := v.b.stdout(v.argv(args...)...)
	return strings.Fields(out), err
}

// removeAll stops and destroys every VE of this root.
func (v *vectlEnv) removeAll() error {
	if _, err := os.Stat(v.root); err != nil {
		return nil
	}
	var errs []error
	running, err := v.ids(false)
	errs = append(errs, err)
	for _, id := range running {
		if _, err := v.do("stop", "--fast", id); err != nil && exitCode(err) != 31 {
			errs = append(errs, err)
		}
	}
	all, err := v.ids(true)
	errs = append(errs, err)
	for _, id := range all {
		_, err := v.do("destroy", "--force", id)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stopped makes sure a VE is down (untimed cleanup after a measured step).
func (v *vectlEnv) stopped(id string) error {
	if _, err := v.do("stop", "--fast", id); err != nil && exitCode(err) != 31 {
		return err
	}
	return nil
}
