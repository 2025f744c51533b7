package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// lxcfsFiles are the files lxcfs serves that a VE's views also cover and the read row reads.
var lxcfsFiles = []string{"/proc/meminfo", "/proc/stat", "/proc/cpuinfo"}

// benchLxcfs: the peer for the views, lxcfs (Debian's package) serving a runc
// container of the same shape as a VE (--ram 256M --cpus 1): cat of /proc/meminfo inside,
// per read, and the daemon's PSS. The read is timed as a loop of cats inside the
// environment, less the same loop with no read, so that the tools' exec (vectl exec, runc
// exec) cancels out. lxcfs runs on a mount point of the bench's own and is stopped with it.
func (b *bench) benchLxcfs() error {
	lx, err := exec.LookPath("lxcfs")
	r := b.runtime("runc")
	if err != nil || r == nil {
		b.note("lxcfs: not measured: %s", map[bool]string{true: "no lxcfs", false: "no working runc"}[err != nil])
		return nil
	}
	mnt := filepath.Join(b.work, "lxcfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	daemon := exec.Command(lx, "-f", "--enable-cfs", "-p", filepath.Join(b.work, "lxcfs.pid"), mnt)
	daemon.Stdout, daemon.Stderr = b.cmdLog, b.cmdLog
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("lxcfs: %w", err)
	}
	stop := func() {
		daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			daemon.Process.Kill()
			<-done
		}
		syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
	defer stop()
	for start := time.Now(); !fileExists(filepath.Join(mnt, "proc", "meminfo")); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("lxcfs did not serve %s in 10 s", mnt)
		}
	}

	ve := b.id("viewshape")
	if err := b.create(ve, busyboxName, "--ram", "256M", "--cpus", "1"); err != nil {
		return err
	}
	defer b.destroy(ve)
	if _, err := b.v.do("start", ve, "--wait"); err != nil {
		return err
	}
	cid := b.id("lxcfs")
	bundle, err := b.bundle(cid, b.busyboxFS, []string{"/sbin/init"})
	if err == nil {
		err = lxcfsBundle(bundle, mnt)
	}
	if err == nil {
		prepCgroup(cid)
		_, err = b.sh(r.argv("run", "-d", "-b", bundle, cid)...)
	}
	defer func() {
		b.sh(r.argv("delete", "-f", cid)...)
		dropCgroup(cid)
	}()
	if err != nil {
		return fmt.Errorf("runc container with lxcfs: %w", err)
	}
	// Both show 256 MiB: the same shape, each through its own server.
	for _, argv := range [][]string{b.v.argv("exec", ve, "head", "-n", "1", "/proc/meminfo"),
		r.argv("exec", cid, "head", "-n", "1", "/proc/meminfo")} {
		if out, err := b.stdout(argv...); err != nil || !strings.Contains(out, "262144 kB") {
			return fmt.Errorf("%s: MemTotal %q (%v), want 262144 kB", strings.Join(argv, " "), strings.TrimSpace(out), err)
		}
	}
	const reads = 50
	loop := func(n int) string {
		return fmt.Sprintf("i=0; while [ $i -lt %d ]; do cat /proc/meminfo >/dev/null; i=$((i+1)); done", n)
	}
	read := func(key string, argv func(script string) []string) *variant {
		return &variant{name: "cat /proc/meminfo, " + key, vectl: key == "vectl", pass: func(p int, rec recorder) error {
			base, err := b.timed(argv(loop(0))...)
			if err != nil {
				return err
			}
			d, err := b.timed(argv(loop(reads))...)
			if err == nil {
				rec("meminfo/"+key, max(d-base, 0)/reads)
			}
			return err
		}}
	}
	b.interleave(b.passes(15),
		read("vectl", func(s string) []string { return b.v.argv("exec", ve, "sh", "-c", s) }),
		read("lxcfs", func(s string) []string { return r.argv("exec", cid, "sh", "-c", s) }))
	b.compare(cmp{group: "exec", name: "cat /proc/meminfo inside a VE (--ram 256M --cpus 1): its view vs lxcfs serving a runc container of the same shape",
		key: "meminfo/vectl", command: "cat /proc/meminfo (in a loop, per read)", peerKey: "meminfo/lxcfs",
		peer: "lxcfs " + lxcfsVersion(lx) + " (runc container)", target: ratioMax(1.0),
		note: "the loop's time less the same loop without reads, divided by the reads"})
	// The PSS the views add to a VE's monitor (benchViews) against lxcfs's, which one daemon
	// spends for every container of a host.
	views, noviews := b.samples["monpss/vectl-views"], b.samples["monpss/vectl-noviews"]
	if len(views) == 0 || len(noviews) == 0 {
		return nil
	}
	b.record("viewspss/added", max(distOf(views).Median-distOf(noviews).Median, 0))
	b.record("viewspss/lxcfs", pssMiB(daemon.Process.Pid))
	b.compare(cmp{group: "exec", name: "PSS of /proc views: what they add to one VE's idle monitor vs the lxcfs daemon serving one container",
		key: "viewspss/added", command: "vectl __monitor-idle (views rendered) less one without", unit: "MiB",
		peerKey: "viewspss/lxcfs", peer: "lxcfs (one daemon serves every container of a host)"})
	return nil
}

// lxcfsBundle has the runc container of bundle show lxcfs's files (mounted at mnt) over the
// kernel's, with the limits of a --ram 256M --cpus 1 VE.
func lxcfsBundle(bundle, mnt string) error {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	mounts, _ := s["mounts"].([]any)
	for _, f := range lxcfsFiles {
		mounts = append(mounts, map[string]any{"destination": f, "type": "bind",
			"source": filepath.Join(mnt, f), "options": []string{"bind", "rw"}})
	}
	s["mounts"] = mounts
	linux, _ := s["linux"].(map[string]any)
	res, _ := linux["resources"].(map[string]any)
	if res == nil {
		res = map[string]any{}
		linux["resources"] = res
	}
	res["memory"] = map[string]any{"limit": 256 << 20, "swap": 256 << 20}
	cpu, _ := res["cpu"].(map[string]any)
	if cpu == nil {
		cpu = map[string]any{}
		res["cpu"] = cpu
	}
	cpu["quota"], cpu["period"] = 100000, 100000
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// lxcfsVersion is what lxcfs --version says ("5.0.3"), or "" when it says nothing.
func lxcfsVersion(lx string) string {
	out, _ := exec.Command(lx, "--version").CombinedOutput()
	return strings.Trim(strings.TrimSpace(string(out)), `"`)
}
