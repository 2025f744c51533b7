package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// create makes a VE in the main root (untimed) and registers nothing: each group removes
// its VEs itself, and the final cleanup catches what a failure left.
func (b *bench) create(id, tmpl string, args ...string) error {
	_, err := b.v.do(append([]string{"create", id, "--ostemplate", tmpl}, args...)...)
	return err
}

// destroy stops and removes VEs of the main root (untimed), joining the errors.
func (b *bench) destroy(ids ...string) error {
	var errs []error
	for _, id := range ids {
		errs = append(errs, b.v.stopped(id))
		if _, err := b.v.do("destroy", "--force", id); err != nil && exitCode(err) != 14 {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ociVariants makes one variant per working OCI runtime; mk gets the runtime and the
// container id to use.
func (b *bench) ociVariants(what string, mk func(r *ociRuntime, cid string) func(p int, rec recorder) error) []*variant {
	var vs []*variant
	for _, r := range b.runtimes {
		vs = append(vs, &variant{name: r.label + " " + what, pass: mk(r, b.id(r.key+"-"+what))})
	}
	return vs
}

// peerRows adds, for every peer measured under prefix/<peer key>, a row comparing vectl's
// samples at prefix/vectl with it; the first peer listed in targets gets its target.
func (b *bench) peerRows(c cmp, prefix string, peers [][2]string, targets map[string]*Target) {
	for _, p := range peers {
		cc := c
		cc.key = prefix + "/vectl"
		cc.peerKey, cc.peer = prefix+"/"+p[0], p[1]
		cc.target = targets[p[0]]
		if len(b.samples[cc.peerKey]) == 0 && cc.target == nil {
			continue // a peer that does not work here: said once in the notes
		}
		b.compare(cc)
	}
}

// crunTargets adds to targets (which may be nil) issue 22's target against crun, whichever
// way crun runs here: at most 1.0x its median, in wall time and in CPU time (Row.CPUStatus).
func (b *bench) crunTargets(label string, targets map[string]*Target) map[string]*Target {
	if targets == nil {
		targets = map[string]*Target{}
	}
	key := "crun"
	if b.runtime("crun") == nil && b.runtime("crun-u") != nil {
		key = "crun-u"
	}
	targets[key] = ratioMax(1.0).as(label + " vs crun")
	return targets
}

// peerList is the sample key and label of every OCI runtime that works here; runc is always
// listed, so that a target held against it shows as not measured rather than vanishing.
func (b *bench) peerList(suffix string) [][2]string {
	var ps [][2]string
	if b.runtime("runc") == nil {
		ps = append(ps, [2]string{"runc", "runc" + suffix})
	}
	for _, r := range b.runtimes {
		ps = append(ps, [2]string{r.key, r.label + suffix})
	}
	return ps
}

// benchRunToExit: /bin/true in a fresh environment until it exits. vectl has no such
// command; the nearest is a foreground start of a VE whose init is /bin/true (a script
// "#!/bin/true" as /sbin/init), which returns when the init has ended and the VE is torn down.
func (b *bench) benchRunToExit() error {
	id := b.id("true")
	if err := b.create(id, busyboxName); err != nil {
		return err
	}
	defer b.destroy(id)
	if _, err := b.v.do("mount", id); err != nil {
		return err
	}
	initPath := filepath.Join(b.v.root, "root", id, "sbin", "init")
	os.Remove(initPath)
	err := os.WriteFile(initPath, []byte("#!/bin/true\n"), 0o755)
	if _, err2 := b.v.do("umount", id); err != nil || err2 != nil {
		return errors.Join(err, err2)
	}

	vs := []*variant{{name: "vectl start --foreground", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.v.timed("start", "--foreground", id)
		if err != nil && exitCode(err) != 2 { // 2: the init ended on its own, as it should
			return err
		}
		rec("runexit/vectl", d)
		return b.v.stopped(id)
	}}}
	vs = append(vs, b.ociVariants("run", func(r *ociRuntime, cid string) func(int, recorder) error {
		bundle, err := b.bundle(cid, b.busyboxFS, []string{"/bin/true"})
		return func(p int, rec recorder) error {
			if err != nil {
				return err
			}
			prepCgroup(cid)
			defer dropCgroup(cid)
			d, err := b.timed(r.argv("run", "-b", bundle, cid)...)
			if err != nil {
				b.sh(r.argv("delete", "-f", cid)...)
				return err
			}
			rec("runexit/"+r.key, d)
			return nil
		}
	})...)
	if b.nspawn != "" {
		vs = append(vs, &variant{name: "systemd-nspawn", pass: func(p int, rec recorder) error {
			d, err := b.timed(b.nspawnArgv("/bin/true")...)
			if err != nil {
				return err
			}
			rec("runexit/nspawn", d)
			return nspawnTidy()
		}})
	}
	if b.lxc != nil {
		name := b.id("lxc-true")
		if err := b.lxc.define(name, b.busyboxFS); err != nil {
			return err
		}
		vs = append(vs, &variant{name: "lxc-execute", pass: func(p int, rec recorder) error {
			d, err := b.timed(b.lxc.argv("lxc-execute", name, "--", "/bin/true")...)
			if err == nil {
				rec("runexit/lxc", d)
			}
			return err
		}})
	}
	b.interleave(b.passes(15), vs...)
	peers := b.peerList(" run")
	peers = append(peers, [2]string{"nspawn", "systemd-nspawn (from sh)"}, [2]string{"lxc", "lxc-execute"})
	b.peerRows(cmp{group: "runexit", name: "run /bin/true to exit in a fresh environment",
		command: "vectl start --foreground (init: #!/bin/true)"}, "runexit", peers,
		b.crunTargets("run to exit", map[string]*Target{"runc": ratioMax(1.0).as("run to exit")}))
	return nil
}

// benchStartStop: start of a busybox VE until its init runs (vectl start returns once the
// monitor reports the init running; runc run -d once the container's process runs), then its
// stop on the kill path.
func (b *bench) benchStartStop() error {
	idm, idn, idp, idv := b.id("start"), b.id("startnm"), b.id("startpriv"), b.id("startnoviews")
	for _, id := range []string{idm, idn} {
		if err := b.create(id, busyboxName); err != nil {
			return err
		}
	}
	// The default VE has a user namespace of its own; a privileged one is measured beside it.
	if err := b.create(idp, busyboxName, "--userns", "no"); err != nil {
		return err
	}
	// And one without /proc views (--meminfo none), for their cost at start.
	if err := b.create(idv, busyboxName); err != nil {
		return err
	}
	if _, err := b.v.do("set", idv, "--meminfo", "none", "--save"); err != nil {
		return err
	}
	defer b.destroy(idm, idn, idp, idv)
	vectl := func(id, suffix string, startArgs ...string) *variant {
		return &variant{name: "vectl start " + strings.Join(startArgs, " "), vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed(append([]string{"start", id}, startArgs...)...)
			if err != nil {
				return err
			}
			rec("start/vectl"+suffix, d)
			if d, err = b.v.timed("stop", "--fast", id); err != nil {
				return err
			}
			rec("stop/vectl"+suffix, d)
			return nil
		}}
	}
	vs := []*variant{vectl(idm, ""), vectl(idn, "-nm", "--no-monitor"), vectl(idp, "-priv"), vectl(idv, "-noviews")}
	vs = append(vs, b.ociVariants("start", func(r *ociRuntime, cid string) func(int, recorder) error {
		bundle, err := b.bundle(cid, b.busyboxFS, []string{"/sbin/init"})
		return func(p int, rec recorder) error {
			if err != nil {
				return err
			}
			prepCgroup(cid)
			defer dropCgroup(cid)
			d, err := b.timed(r.argv("run", "-d", "-b", bundle, cid)...)
			if err != nil {
				b.sh(r.argv("delete", "-f", cid)...)
				return err
			}
			rec("start/"+r.key, d)
			if d, err = b.timed(r.argv("delete", "-f", cid)...); err != nil {
				return err
			}
			rec("stop/"+r.key, d)
			return nil
		}
	})...)
	if b.lxc != nil {
		name := b.id("lxc-start")
		if err := b.lxc.define(name, b.busyboxFS); err != nil {
			return err
		}
		vs = append(vs, &variant{name: "lxc-start -d", pass: func(p int, rec recorder) error {
			d, err := b.timed(b.lxc.argv("lxc-start", name, "-d")...)
			if err != nil {
				return err
			}
			rec("start/lxc", d)
			if d, err = b.timed(b.lxc.argv("lxc-stop", name, "-k")...); err != nil {
				return err
			}
			rec("stop/lxc", d)
			return nil
		}})
	}
	b.interleave(b.passes(20), vs...)

	startPeers := b.peerList(" run -d")
	if b.lxc != nil {
		startPeers = append(startPeers, [2]string{"lxc", "lxc-start -d"})
	}
	b.peerRows(cmp{group: "start", name: "start busybox VE until its init runs", command: "vectl start"},
		"start", startPeers, b.crunTargets("start", map[string]*Target{"runc": ratioMax(1.0).as("busybox start")}))
	b.compare(cmp{group: "start", name: "start busybox VE, own user namespace vs privileged", key: "start/vectl",
		command: "vectl start", peerKey: "start/vectl-priv", peer: "vectl start of a --userns no VE",
		target: ratioMax(1.1).as("userns start")})
	b.compare(cmp{group: "start", name: "start busybox VE, /proc views vs --meminfo none", key: "start/vectl",
		command: "vectl start", peerKey: "start/vectl-noviews", peer: "vectl start of a --meminfo none VE",
		target: deltaMax(3, "ms").as("views at start")})
	b.compare(cmp{group: "start", name: "start busybox VE until its init runs, no monitor", key: "start/vectl-nm",
		command: "vectl start --no-monitor", peerKey: "start/runc", peer: "runc run -d"})
	stopPeers := b.peerList(" delete -f")
	if b.lxc != nil {
		stopPeers = append(stopPeers, [2]string{"lxc", "lxc-stop -k"})
	}
	b.peerRows(cmp{group: "start", name: "stop busybox VE, kill path", command: "vectl stop --fast"},
		"stop", stopPeers, b.crunTargets("stop", map[string]*Target{"runc": ratioMax(0.5).cpu(1.0).as("stop --fast")}))
	b.compare(cmp{group: "start", name: "stop busybox VE, kill path, no monitor", key: "stop/vectl-nm",
		command: "vectl stop --fast", peerKey: "stop/runc", peer: "runc delete -f"})
	return nil
}

// benchExec: exec of /bin/true into running environments, live set --ram, CPU-bound work
// inside a VE against the same binary on the host, and the memory of one idle monitor.
func (b *bench) benchExec() error {
	id := b.id("exec")
	if err := b.create(id, busyboxName); err != nil {
		return err
	}
	defer b.destroy(id)
	if _, err := b.v.do("start", id, "--wait"); err != nil {
		return err
	}
	// The peers' running containers, started untimed.
	type running struct {
		r   *ociRuntime
		cid string
	}
	var ctrs []running
	defer func() {
		for _, c := range ctrs {
			b.sh(c.r.argv("delete", "-f", c.cid)...)
			dropCgroup(c.cid)
		}
	}()
	for _, r := range b.runtimes {
		cid := b.id(r.key + "-exec")
		bundle, err := b.bundle(cid, b.busyboxFS, []string{"/sbin/init"})
		if err == nil {
			prepCgroup(cid)
			_, err = b.sh(r.argv("run", "-d", "-b", bundle, cid)...)
		}
		if err != nil {
			b.note("%s exec: not measured: %v", r.label, err)
			b.sh(r.argv("delete", "-f", cid)...)
			dropCgroup(cid)
			continue
		}
		ctrs = append(ctrs, running{r, cid})
	}
	lxcName := ""
	if b.lxc != nil {
		name := b.id("lxc-exec")
		err := b.lxc.define(name, b.busyboxFS)
		if err == nil {
			_, err = b.sh(b.lxc.argv("lxc-start", name, "-d")...)
		}
		if err != nil {
			b.note("LXC exec: not measured: %v", err)
		} else {
			lxcName = name
			defer b.sh(b.lxc.argv("lxc-stop", name, "-k")...)
		}
	}

	// Memory of one idle monitor (and of LXC's monitor, its nearest equivalent).
	if pss, err := b.monitorPss(id); err != nil {
		b.failed = true
		b.note("monitor memory: %v", err)
	} else {
		b.record("monpss/vectl", pss)
	}
	if lxcName != "" {
		if pid, err := b.lxc.pid(lxcName); err == nil {
			if pss := pssMiB(ppid(pid)); pss > 0 {
				b.record("monpss/lxc", pss)
			}
		}
	}
	b.compare(cmp{group: "exec", name: "resident memory of one idle monitor (PSS)", key: "monpss/vectl",
		command: "vectl __monitor-idle", peerKey: "monpss/lxc", peer: "LXC monitor", unit: "MiB",
		target: valueMax(1.5, "MiB").as("idle monitor PSS"), note: "runc and crun keep no process per container"})
	// And of a systemd unit's monitor: start --foreground without a terminal, once it rests.
	if pss, err := b.foregroundMonitorPss(); err != nil {
		b.failed = true
		b.note("foreground monitor memory: %v", err)
	} else {
		b.record("monpss/vectl-fg", pss)
	}
	b.compare(cmp{group: "exec", name: "resident memory of one idle foreground monitor (a systemd unit's, PSS)",
		key: "monpss/vectl-fg", command: "vectl start --foreground", peerKey: "monpss/vectl", peer: "background monitor",
		unit: "MiB", target: valueMax(1.5, "MiB").as("foreground monitor PSS")})

	vs := []*variant{{name: "vectl exec", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.v.timed("exec", id, "/bin/true")
		if err == nil {
			rec("exec/vectl", d)
		}
		return err
	}}}
	for _, c := range ctrs {
		vs = append(vs, &variant{name: c.r.label + " exec", pass: func(p int, rec recorder) error {
			d, err := b.timed(c.r.argv("exec", c.cid, "/bin/true")...)
			if err == nil {
				rec("exec/"+c.r.key, d)
			}
			return err
		}})
	}
	if lxcName != "" {
		vs = append(vs, &variant{name: "lxc-attach", pass: func(p int, rec recorder) error {
			d, err := b.timed(b.lxc.argv("lxc-attach", lxcName, "--", "/bin/true")...)
			if err == nil {
				rec("exec/lxc", d)
			}
			return err
		}})
	}
	b.interleave(b.passes(30), vs...)
	b.peerRows(cmp{group: "exec", name: "exec /bin/true into a running environment", command: "vectl exec"},
		"exec", append(b.peerList(" exec"), [2]string{"lxc", "lxc-attach"}),
		b.crunTargets("exec", map[string]*Target{"runc": ratioMax(0.7).as("exec /bin/true")}))

	// Live memory limit: alternate two values so that every call changes something.
	sizes := []string{"256M", "512M"}
	vs = []*variant{{name: "vectl set --ram", vectl: true, pass: func(p int, rec recorder) error {
		for _, s := range sizes {
			d, err := b.v.timed("set", id, "--ram", s)
			if err != nil {
				return err
			}
			rec("ram/vectl", d)
		}
		return nil
	}}}
	for _, c := range ctrs {
		vs = append(vs, &variant{name: c.r.label + " update --memory", pass: func(p int, rec recorder) error {
			for _, s := range []string{"268435456", "536870912"} {
				d, err := b.timed(c.r.argv("update", "--memory", s, "--memory-swap", s, c.cid)...)
				if err != nil {
					return err
				}
				rec("ram/"+c.r.key, d)
			}
			return nil
		}})
	}
	ramPeers := b.peerList(" update")
	if lxcName != "" {
		key := "memory.limit_in_bytes" // cgroup v1, as on a hybrid host
		if cgroup2Mount() == "/sys/fs/cgroup" {
			key = "memory.max"
		}
		ramPeers = append(ramPeers, [2]string{"lxc", "lxc-cgroup " + key})
		vs = append(vs, &variant{name: "lxc-cgroup " + key, pass: func(p int, rec recorder) error {
			for _, s := range []string{"268435456", "536870912"} {
				d, err := b.timed(b.lxc.argv("lxc-cgroup", lxcName, key, s)...)
				if err != nil {
					return err
				}
				rec("ram/lxc", d)
			}
			return nil
		}})
	}
	b.interleave(b.passes(15), vs...)
	b.peerRows(cmp{group: "exec", name: "live set --ram on a running VE", command: "vectl set --ram",
		note: "peers: update --memory --memory-swap; LXC: the memory limit alone"},
		"ram", ramPeers, b.crunTargets("set --ram", map[string]*Target{"runc": valueMax(10, "ms").as("set --ram")}))

	if err := b.benchViews(id); err != nil {
		return err
	}
	return b.benchCPU(id)
}

// benchViews: what a VE's /proc views cost. A read of /proc/meminfo inside (vectl exec of
// busybox's cat, so the view's render is the difference) against the same read in a VE
// with --meminfo none (the kernel's own file), and the idle monitor's PSS with its views
// rendered against a monitor without views; then lxcfs, the peer (benchLxcfs).
func (b *bench) benchViews(id string) error {
	idv := b.id("execnoviews")
	if err := b.create(idv, busyboxName); err != nil {
		return err
	}
	defer b.destroy(idv)
	if _, err := b.v.do("set", idv, "--meminfo", "none", "--save"); err != nil {
		return err
	}
	if _, err := b.v.do("start", idv, "--wait"); err != nil {
		return err
	}
	read := func(ve, key string) *variant {
		return &variant{name: "cat /proc/meminfo in " + key, vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed("exec", ve, "cat", "/proc/meminfo", "/proc/stat", "/proc/cpuinfo")
			if err == nil {
				rec("procread/"+key, d)
			}
			return err
		}}
	}
	b.interleave(b.passes(30), read(id, "vectl"), read(idv, "vectl-noviews"))
	b.compare(cmp{group: "exec", name: "read /proc/meminfo, stat and cpuinfo in a VE: its views vs the kernel's files",
		key: "procread/vectl", command: "vectl exec ID cat ...", peerKey: "procread/vectl-noviews",
		peer: "the same in a --meminfo none VE", note: "each open of a view waits for its monitor to render it"})
	for _, v := range []struct{ ve, key string }{{id, "monpss/vectl-views"}, {idv, "monpss/vectl-noviews"}} {
		pss, err := b.monitorPss(v.ve)
		if err != nil {
			b.failed = true
			b.note("monitor memory: %v", err)
			return nil
		}
		b.record(v.key, pss)
	}
	b.compare(cmp{group: "exec", name: "PSS an idle monitor adds for its /proc views (rendered)", key: "monpss/vectl-views",
		command: "vectl __monitor-idle", peerKey: "monpss/vectl-noviews", peer: "monitor of a --meminfo none VE", unit: "MiB",
		target: deltaMax(0.5, "MiB").as("views PSS"), note: "one VE: with more, the pages of the code are shared and count less"})
	if err := b.benchLxcfs(); err != nil {
		b.note("lxcfs: not measured: %v", err)
	}
	return nil
}

// benchCPU runs the same busybox awk loop inside the VE (through vectl exec) and on the host
// (the template's own busybox binary), sized to take about a second on the host.
func (b *bench) benchCPU(id string) error {
	host := filepath.Join(b.v.tmpl, busyboxName, "bin", "busybox")
	want := time.Second
	if b.opts.quick {
		want = 300 * time.Millisecond
	}
	loops := 200000
	script := func(n int) string { return fmt.Sprintf("BEGIN{s=0; for(i=0;i<%d;i++) s+=i%%7; print s}", n) }
	for range 5 {
		d, err := b.timed(host, "awk", script(loops))
		if err != nil {
			return err
		}
		if d > want*8/10 {
			break
		}
		loops = int(float64(loops) * float64(want) / float64(max(d, time.Millisecond)))
	}
	vs := []*variant{
		{name: "CPU inside the VE", vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed("exec", id, "/bin/busybox", "awk", script(loops))
			if err == nil {
				rec("cpu/vectl", d)
			}
			return err
		}},
		{name: "CPU on the host", pass: func(p int, rec recorder) error {
			d, err := b.timed(host, "awk", script(loops))
			if err == nil {
				rec("cpu/host", d)
			}
			return err
		}},
	}
	b.interleave(b.costly(7), vs...)
	note := ""
	if d := distOf(b.samples["exec/vectl"]); d != nil {
		note = fmt.Sprintf("inside includes vectl exec itself (%.0f ms)", d.Median)
	}
	b.compare(cmp{group: "exec", name: "CPU-bound work inside vs outside (busybox awk loop)", key: "cpu/vectl",
		command: "vectl exec ID busybox awk", peerKey: "cpu/host", peer: "same binary on the host", note: note})
	return nil
}

// benchSequential: sequential start of 20 busybox VEs, timed as one total.
func (b *bench) benchSequential() error {
	n := 20
	if b.opts.quick {
		n = 5
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = b.id(fmt.Sprintf("seq%02d", i))
		if err := b.create(ids[i], busyboxName); err != nil {
			return err
		}
	}
	defer b.destroy(ids...)
	vs := []*variant{{name: fmt.Sprintf("vectl start x%d", n), vectl: true, pass: func(p int, rec recorder) error {
		var total time.Duration
		var err error
		for _, id := range ids {
			var d time.Duration
			if d, err = b.v.timed("start", id); err != nil {
				break
			}
			total += d
		}
		for _, id := range ids {
			err = errors.Join(err, b.v.stopped(id))
		}
		if err == nil {
			rec("seq/vectl", total)
		}
		return err
	}}}
	vs = append(vs, b.ociVariants("seq", func(r *ociRuntime, cid string) func(int, recorder) error {
		var bundles, cids []string
		var err error
		for i := range n {
			c := fmt.Sprintf("%s%02d", cid, i)
			bundle, e := b.bundle(c, b.busyboxFS, []string{"/sbin/init"})
			err = errors.Join(err, e)
			bundles, cids = append(bundles, bundle), append(cids, c)
		}
		return func(p int, rec recorder) error {
			if err != nil {
				return err
			}
			var total time.Duration
			var rerr error
			for i, c := range cids {
				prepCgroup(c)
				d, err := b.timed(r.argv("run", "-d", "-b", bundles[i], c)...)
				if err != nil {
					rerr = err
					break
				}
				total += d
			}
			for _, c := range cids {
				if _, err := b.sh(r.argv("delete", "-f", c)...); err != nil && rerr == nil && fileExists(filepath.Join(r.state, c)) {
					rerr = err
				}
				dropCgroup(c)
			}
			if rerr == nil {
				rec("seq/"+r.key, total)
			}
			return rerr
		}
	})...)
	seqPeers := b.peerList(" run -d")
	if b.lxc != nil {
		var names []string
		var derr error
		for i := range n {
			name := b.id(fmt.Sprintf("lxc-seq%02d", i))
			derr = errors.Join(derr, b.lxc.define(name, b.busyboxFS))
			names = append(names, name)
		}
		seqPeers = append(seqPeers, [2]string{"lxc", "lxc-start -d"})
		vs = append(vs, &variant{name: fmt.Sprintf("lxc-start -d x%d", n), pass: func(p int, rec recorder) error {
			if derr != nil {
				return derr
			}
			var total time.Duration
			var rerr error
			for _, name := range names {
				d, err := b.timed(b.lxc.argv("lxc-start", name, "-d")...)
				if err != nil {
					rerr = err
					break
				}
				total += d
			}
			for _, name := range names {
				if b.lxc.running(name) {
					if _, err := b.sh(b.lxc.argv("lxc-stop", name, "-k")...); err != nil && rerr == nil {
						rerr = err
					}
				}
			}
			if rerr == nil {
				rec("seq/lxc", total)
			}
			return rerr
		}})
	}
	b.interleave(b.costly(5), vs...)
	b.peerRows(cmp{group: "seq", name: fmt.Sprintf("sequential start of %d VEs (total)", n), command: "vectl start"},
		"seq", seqPeers, b.crunTargets("20 starts", map[string]*Target{"runc": ratioMax(1.0).as("20 starts")}))
	return nil
}

// benchNetwork: a start with one IPv4 and one IPv6 address against one without network,
// live set --ipadd / --ipdel, and host-to-VE TCP throughput against a veth pair made by hand.
func (b *bench) benchNetwork() error {
	n1, n0 := b.id("net1"), b.id("net0")
	ip4, ip6 := "10.195.1.11", "fd99:195::11"
	if err := b.create(n1, busyboxName, "--ipadd", ip4, "--ipadd", ip6); err != nil {
		return err
	}
	defer b.destroy(n1, n0)
	if err := b.create(n0, busyboxName); err != nil {
		return err
	}
	start := func(id, key string) *variant {
		return &variant{name: "vectl start (" + key + ")", vectl: true, pass: func(p int, rec recorder) error {
			d, err := b.v.timed("start", id)
			if err != nil {
				return err
			}
			rec("netstart/"+key, d)
			return b.v.stopped(id)
		}}
	}
	b.interleave(b.passes(20), start(n1, "with"), start(n0, "without"))
	b.compare(cmp{group: "net", name: "start with one IPv4 + one IPv6 address vs without network",
		key: "netstart/with", command: "vectl start", peerKey: "netstart/without", peer: "vectl start, no addresses",
		target: deltaMax(15, "ms").as("start +IPv4+IPv6")})

	if _, err := b.v.do("start", n1, "--wait"); err != nil {
		return err
	}
	if _, err := b.sh("ping", "-c", "1", "-W", "2", ip4); err != nil {
		b.failed = true
		b.note("net: the VE's address %s does not answer: %v", ip4, err)
	}
	extra := "10.195.1.12"
	// vectl --version in the same passes shows what starting the process alone costs at
	// that time: on a VM the floor moves by a millisecond or two over a day.
	vs := []*variant{{name: "vectl set --ipadd/--ipdel", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.v.timed("set", n1, "--ipadd", extra)
		if err != nil {
			return err
		}
		rec("ipadd/vectl", d)
		if d, err = b.v.timed("set", n1, "--ipdel", extra); err != nil {
			return err
		}
		rec("ipdel/vectl", d)
		return nil
	}}, {name: "vectl --version", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.timed(b.opts.vectl, "--version")
		if err == nil {
			rec("version/vectl", d)
		}
		return err
	}}}
	b.interleave(b.passes(60), vs...)
	b.compare(cmp{group: "net", name: "live set --ipadd on a running VE", key: "ipadd/vectl",
		command: "vectl set ID --ipadd A", peerKey: "version/vectl", peer: "vectl --version (process start alone)",
		target: valueMax(5, "ms").as("set --ipadd")})
	b.compare(cmp{group: "net", name: "live set --ipdel on a running VE", key: "ipdel/vectl",
		command: "vectl set ID --ipdel A"})
	if err := b.v.stopped(n1); err != nil {
		return err
	}
	return b.benchIperf()
}

// benchIperf: iperf3 -s inside a Debian VE, iperf3 -c on the host, against the same through a
// veth pair made by hand into a network namespace (addresses from the bench pool).
func (b *bench) benchIperf() error {
	id, ip := b.id("iperf"), "10.195.1.20"
	if err := b.create(id, debianName, "--ipadd", ip); err != nil {
		return err
	}
	defer b.destroy(id)
	if _, err := b.v.do("start", id, "--wait", "--timeout", "120"); err != nil {
		return err
	}
	if _, err := b.timed(b.v.argv("exec", id, "iperf3", "-s", "-D", "-I", "/run/iperf3.pid")...); err != nil {
		return err
	}
	nsIP, nsErr := b.handmadeVeth()
	if nsErr != nil {
		b.note("iperf3 through a hand-made veth pair: not measured: %v", nsErr)
	}
	secs := "3"
	if b.opts.quick {
		secs = "2"
	}
	client := func(name, addr, key string, vectl bool) *variant {
		return &variant{name: name, vectl: vectl, pass: func(p int, rec recorder) error {
			t := secs
			if p < 0 {
				t = "1"
			}
			var out string
			var err error
			for range 20 { // the server may take a moment to listen
				if out, err = b.stdout("iperf3", "-c", addr, "-t", t, "-J"); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				return err
			}
			bps, err := iperfRate(out)
			if err != nil {
				return err
			}
			if p >= 0 {
				b.record("iperf/"+key, bps/1e9)
			}
			return nil
		}}
	}
	vs := []*variant{client("iperf3 to the VE", ip, "vectl", true)}
	if nsErr == nil {
		vs = append(vs, client("iperf3 to a hand-made veth pair", nsIP, "veth", false))
	}
	b.interleave(b.costly(3), vs...)
	b.compare(cmp{group: "net", name: "host-to-VE TCP throughput (iperf3, " + secs + " s)", key: "iperf/vectl",
		command: "iperf3 -c VE", peerKey: "iperf/veth", peer: "hand-made veth pair + netns", unit: "Gbit/s",
		target: ratioMin(0.9).as("TCP host→VE")})
	return nil
}

// handmadeVeth makes a network namespace with one end of a veth pair and an iperf3 server,
// and registers their removal. The names start with "veth" so that the guard lets them talk.
func (b *bench) handmadeVeth() (string, error) {
	ns, hv, nv := b.tag+"-ns", "veth"+b.tag+"h", "veth"+b.tag+"n"
	hostIP, nsIP := "10.195.250.1", "10.195.250.2"
	pidFile := filepath.Join(b.work, "iperf3-ns.pid")
	if _, err := b.sh("ip", "netns", "add", ns); err != nil {
		return "", err
	}
	b.onCleanup("network namespace "+ns, func() error {
		if data, err := os.ReadFile(pidFile); err == nil {
			var pid int
			if fmt.Sscan(strings.TrimSpace(string(data)), &pid); pid > 0 {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
					waitGone(pid, 5*time.Second)
				}
			}
		}
		var errs []error
		if _, err := b.sh("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
		// The namespace's removal takes its veth pair with it, in the kernel's own time: a
		// pair still there a moment ago may be gone by the time ip looks for it.
		if fileExists("/sys/class/net/" + hv) {
			if _, err := b.sh("ip", "link", "del", hv); err != nil && fileExists("/sys/class/net/"+hv) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	for _, argv := range [][]string{
		{"ip", "link", "add", hv, "type", "veth", "peer", "name", nv, "netns", ns},
		{"ip", "addr", "add", hostIP + "/30", "dev", hv},
		{"ip", "link", "set", hv, "up"},
		{"ip", "-n", ns, "addr", "add", nsIP + "/30", "dev", nv},
		{"ip", "-n", ns, "link", "set", nv, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	} {
		if _, err := b.sh(argv...); err != nil {
			return "", err
		}
	}
	if _, err := b.timed("ip", "netns", "exec", ns, "iperf3", "-s", "-D", "-I", pidFile); err != nil {
		return "", err
	}
	return nsIP, nil
}

// benchDebian: a Debian VE with systemd booted until systemctl is-system-running says
// running (or degraded), and shut down gracefully through systemd; runc with the same rootfs
// and spec, polled the way vectl start --wait polls.
func (b *bench) benchDebian() error {
	if err := b.bootRows("", debianName, b.debianFS, ratioMax(1.1).as("Debian boot")); err != nil {
		return err
	}
	// Debian 13 (systemd 257): the current stable, built (or taken from the integration
	// tests' cache) for this row.
	fs, err := b.setupDebian13()
	if err != nil {
		return err
	}
	return b.bootRows(" 13", debian13Name, fs, ratioMax(1.0).as("Debian 13 boot"))
}

// bootRows times start --wait and stop of a systemd VE from tmpl against runc run -d of a
// copy of the same tree (fs), and adds the rows (label " 13": "Debian 13 systemd VE ...").
func (b *bench) bootRows(label, tmpl, fs string, target *Target) error {
	id := b.id("deb")
	if err := b.create(id, tmpl); err != nil {
		return err
	}
	defer b.destroy(id)
	key := "boot" + strings.TrimSpace(label)
	vs := []*variant{{name: "vectl start --wait / stop (Debian)", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.v.timed("start", id, "--wait", "--timeout", "120")
		if err != nil {
			return err
		}
		rec(key+"/vectl", d)
		if d, err = b.v.timed("stop", id); err != nil {
			return err
		}
		rec("shut"+key+"/vectl", d)
		return nil
	}}}
	if r := b.runtime("runc"); r != nil {
		cid := b.id("runc-deb")
		bundle, berr := b.bundle(cid, fs, []string{"/sbin/init"})
		vs = append(vs, &variant{name: "runc run -d / kill (Debian)", pass: func(p int, rec recorder) error {
			if berr != nil {
				return berr
			}
			prepCgroup(cid)
			defer dropCgroup(cid)
			defer b.sh(r.argv("delete", "-f", cid)...)
			d, err := b.runcBoot(r, cid, bundle)
			if err != nil {
				return err
			}
			rec(key+"/runc", d)
			if d, err = b.runcShutdown(r, cid); err != nil {
				return err
			}
			rec("shut"+key+"/runc", d)
			return nil
		}})
	}
	b.interleave(b.costly(15), vs...)
	b.compare(cmp{group: "debian", name: "Debian" + label + " systemd VE boot to running", key: key + "/vectl",
		command: "vectl start --wait", peerKey: key + "/runc", peer: "runc run -d + poll systemctl",
		target: target})
	b.compare(cmp{group: "debian", name: "Debian" + label + " systemd VE graceful shutdown", key: "shut" + key + "/vectl",
		command: "vectl stop", peerKey: "shut" + key + "/runc", peer: "runc kill RTMIN+3, wait, delete"})
	return nil
}

// setupDebian13 imports the newest Debian 13 template the integration tests cached, or
// builds one, and returns a copy of its tree for the peers.
func (b *bench) setupDebian13() (string, error) {
	cached, _ := filepath.Glob("/var/cache/vectl-test/" + debian13Name + "-*.tar.zst")
	sort.Slice(cached, func(i, j int) bool { return mtime(cached[i]).After(mtime(cached[j])) })
	if len(cached) > 0 {
		if _, err := b.v.do("template", "import", cached[0], "--name", debian13Name); err != nil {
			return "", err
		}
	} else {
		b.progress("debian 13 template: building with debootstrap (a minute or two, needs the Debian mirror)")
		if _, err := b.v.do("template", "build", debian13Name, "--from", "debootstrap", "--suite", "trixie"); err != nil {
			return "", err
		}
	}
	fs := filepath.Join(b.work, "rootfs", "debian13")
	if _, err := b.sh("cp", "-a", filepath.Join(b.v.tmpl, debian13Name), fs); err != nil {
		return "", err
	}
	return fs, nil
}

// benchDownload times template download of a template of about 100 MB from a loopback
// server (OpenVZ's pattern, with its .sha256) against curl fetching the same file.
func (b *bench) benchDownload() error {
	const name = "bigdeb-12-x86_64"
	dir := filepath.Join(b.work, "mirror")
	if err := os.MkdirAll(filepath.Join(dir, "fill"), 0o755); err != nil {
		return err
	}
	// The Debian tree plus 48 MB that does not compress: a real template of ~100 MB.
	if _, err := b.sh("dd", "if=/dev/urandom", "of="+filepath.Join(dir, "fill", "random.bin"), "bs=1M", "count=48", "status=none"); err != nil {
		return err
	}
	arc := filepath.Join(dir, name+".tar.zst")
	if _, err := b.sh("tar", "--zstd", "--numeric-owner", "-cf", arc, "-C", b.debianFS, ".", "-C", filepath.Join(dir, "fill"), "."); err != nil {
		return err
	}
	os.RemoveAll(filepath.Join(dir, "fill"))
	sum, err := b.stdout("sha256sum", arc)
	if err != nil {
		return err
	}
	if err := os.WriteFile(arc+".sha256", []byte(sum), 0o644); err != nil {
		return err
	}
	fi, err := os.Stat(arc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/"
	out := filepath.Join(b.work, "curl.out")
	// Every pass writes and removes 100 MB or more: the writeback and discards of the pass
	// before (this disk is mounted with discard) would otherwise land on whichever
	// contender runs next. Each pass starts on a settled disk.
	settle := func() { unix.Sync() }
	vs := []*variant{
		{name: "vectl template download", vectl: true, pass: func(p int, rec recorder) error {
			settle()
			d, err := b.v.timed("template", "download", name, "--server", base)
			if err != nil {
				return err
			}
			rec("download/vectl", d)
			// The first VE made from a downloaded template unpacks it.
			id := b.id("dlfirst")
			c, err := b.v.timed("create", id, "--ostemplate", name)
			if err != nil {
				return err
			}
			rec("download/vectl-create", d+c)
			if _, err := b.v.do("destroy", id); err != nil {
				return err
			}
			_, err = b.v.do("template", "remove", name)
			return err
		}},
		{name: "curl", pass: func(p int, rec recorder) error {
			settle()
			d, err := b.timed("curl", "-sSf", "-o", out, base+name+".tar.zst")
			if err != nil {
				return err
			}
			rec("download/curl", d)
			return os.Remove(out)
		}},
		{name: "curl + tar -x", pass: func(p int, rec recorder) error {
			untar := filepath.Join(b.work, "curl-untar")
			if err := os.MkdirAll(untar, 0o755); err != nil {
				return err
			}
			settle()
			start := time.Now()
			if _, err := b.timed("curl", "-sSf", "-o", out, base+name+".tar.zst"); err != nil {
				return err
			}
			if _, err := b.timed("tar", "--zstd", "--numeric-owner", "-xpf", out, "-C", untar); err != nil {
				return err
			}
			rec("download/curl-tar", time.Since(start))
			os.Remove(out)
			return os.RemoveAll(untar)
		}},
	}
	b.interleave(b.costly(5), vs...)
	b.compare(cmp{group: "download", name: fmt.Sprintf("template download of a %d MB template from a loopback server", fi.Size()>>20),
		key: "download/vectl", command: "vectl template download (fetch, sha256; the first create unpacks)",
		peerKey: "download/curl", peer: "curl -o (fetch only)", target: ratioMax(1 / 0.9).as("download"),
		note: "vectl hashes the stream (sha256) while it arrives, which curl does not do"})
	b.compare(cmp{group: "download", name: fmt.Sprintf("template download of a %d MB template and a first VE from it, against fetching and unpacking it", fi.Size()>>20),
		key: "download/vectl-create", command: "vectl template download, then vectl create (unpacks)", peerKey: "download/curl-tar", peer: "curl -o, then tar -x"})
	return nil
}

// runcBoot starts a systemd container and polls, as vectl start --wait does, until systemctl
// is-system-running --wait says running or degraded.
func (b *bench) runcBoot(r *ociRuntime, cid, bundle string) (time.Duration, error) {
	defer b.span()()
	start := time.Now()
	if _, err := b.timed(r.argv("run", "-d", "-b", bundle, cid)...); err != nil {
		return 0, err
	}
	for {
		out, err := b.stdout(r.argv("exec", cid, "systemctl", "is-system-running", "--wait")...)
		state := strings.TrimSpace(out)
		if state == "running" || state == "degraded" {
			return time.Since(start), nil
		}
		if time.Since(start) > 120*time.Second {
			return 0, fmt.Errorf("%s container did not boot in 120 s (systemd says %q, %v)", r.label, state, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runcShutdown asks systemd to power off (SIGRTMIN+3, 37 on Linux), waits for the init to
// exit and deletes the container: what vectl stop does, minus vectl's own teardown.
func (b *bench) runcShutdown(r *ociRuntime, cid string) (time.Duration, error) {
	pid, err := b.initPid(r, cid)
	if err != nil {
		return 0, err
	}
	defer b.span()()
	start := time.Now()
	if _, err := b.timed(r.argv("kill", cid, "37")...); err != nil {
		return 0, err
	}
	if !waitGone(pid, 120*time.Second) {
		return 0, fmt.Errorf("%s container %s did not shut down in 120 s", r.label, cid)
	}
	if _, err := b.timed(r.argv("delete", cid)...); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// benchCreate: a VE's private area from the Debian template with each layout, against LXC's
// copy of a dir container and an untar of the template archive as OpenVZ did.
func (b *bench) benchCreate() error {
	id := b.id("create")
	layout := func(name string, passes int, args ...string) *variant {
		return &variant{name: "vectl create --layout " + name, vectl: true, passes: passes,
			pass: func(p int, rec recorder) error {
				d, err := b.v.timed(append([]string{"create", id, "--ostemplate", debianName, "--layout", name}, args...)...)
				if err != nil {
					return err
				}
				rec("create-"+name+"/vectl", d)
				_, err = b.v.do("destroy", id)
				return err
			}}
	}
	heavy := b.costly(3)
	// New VEs get a user namespace of their own by default; the overlay layout is also
	// timed for a privileged VE, to show what the idmapped lower layer costs.
	priv := &variant{name: "vectl create --layout overlay --userns no", vectl: true, pass: func(p int, rec recorder) error {
		d, err := b.v.timed("create", id, "--ostemplate", debianName, "--layout", "overlay", "--userns", "no")
		if err != nil {
			return err
		}
		rec("create-overlay/priv", d)
		_, err = b.v.do("destroy", id)
		return err
	}}
	vs := []*variant{layout("overlay", 0, "--userns", "yes"), priv, layout("copy", heavy), layout("image", heavy, "--diskspace", "2G")}
	if b.lxc != nil {
		// LXC copies only a rootfs whose path holds the container's name: name the source
		// container after vectl's unpacked template.
		src, dst := filepath.Base(b.debianTmpl), b.id("lxc-copy")
		if err := b.lxc.define(src, b.debianTmpl); err != nil {
			return err
		}
		vs = append(vs, &variant{name: "lxc-copy (dir)", passes: heavy, pass: func(p int, rec recorder) error {
			d, err := b.timed(b.lxc.argv("lxc-copy", src, "-N", dst, "-o", b.lxc.log, "-l", "ERROR")...)
			if err != nil {
				log, _ := os.ReadFile(b.lxc.log)
				return fmt.Errorf("%w: %s", err, lastLines(string(log), 2))
			}
			for _, k := range []string{"overlay", "copy", "image"} {
				rec("create-"+k+"/lxc", d)
			}
			return os.RemoveAll(filepath.Join(b.lxc.path, dst))
		}})
	}
	untar := filepath.Join(b.work, "untar")
	vs = append(vs, &variant{name: "tar -x (as OpenVZ)", passes: heavy, pass: func(p int, rec recorder) error {
		if err := os.MkdirAll(untar, 0o755); err != nil {
			return err
		}
		args := []string{"tar", "--numeric-owner", "-xpf", b.debianArc, "-C", untar}
		if strings.HasSuffix(b.debianArc, ".zst") {
			args = append(args, "--zstd")
		}
		d, err := b.timed(args...)
		if err != nil {
			return err
		}
		for _, k := range []string{"overlay", "copy", "image"} {
			rec("create-"+k+"/untar", d)
		}
		return os.RemoveAll(untar)
	}})
	cpDst := filepath.Join(b.work, "cp-a")
	vs = append(vs, &variant{name: "cp -a", passes: heavy, pass: func(p int, rec recorder) error {
		d, err := b.timed("cp", "-a", b.debianTmpl, cpDst)
		if err != nil {
			return err
		}
		rec("create-copy/cp", d)
		return os.RemoveAll(cpDst)
	}})
	b.interleave(b.passes(20), vs...)
	for _, l := range []struct {
		name   string
		target *Target
	}{{"overlay", valueMax(20, "ms").as("create overlay, own user namespace")}, {"copy", nil}, {"image", nil}} {
		peers := [][2]string{{"untar", "untar (OpenVZ)"}, {"lxc", "lxc-copy (dir)"}, {"cp", "cp -a"}}
		name := "create from the Debian template, " + l.name + " layout"
		if l.name == "overlay" {
			name += ", own user namespace"
			peers = append(peers, [2]string{"priv", "vectl create --userns no"})
		}
		b.peerRows(cmp{group: "create", name: name,
			command: "vectl create --layout " + l.name}, "create-"+l.name, peers,
			map[string]*Target{"untar": l.target})
	}
	return nil
}

// iperfRate reads the receiver's rate in bits per second from iperf3 -J output.
func iperfRate(out string) (float64, error) {
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return 0, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.BitsPerSecond <= 0 {
		return 0, fmt.Errorf("iperf3 reported no rate")
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

// criuBin is CRIU as make criu installs it; vectl finds it there too.
const criuBin = "/usr/local/lib/vectl/criu/criu"

// benchCheckpoint: checkpoint and restore of a running busybox VE (own user namespace, and
// privileged) against runc checkpoint and runc restore -d of a container from the same
// rootfs and spec, with the same criu and the same options (TCP connections, file locks).
func (b *bench) benchCheckpoint() error {
	if _, err := os.Stat(criuBin); err != nil {
		b.note("checkpoint: no criu in %s (make criu); not measured", criuBin)
		return nil
	}
	idu, idp := b.id("ckpt"), b.id("ckptpriv")
	if err := b.create(idu, busyboxName); err != nil {
		return err
	}
	if err := b.create(idp, busyboxName, "--userns", "no"); err != nil {
		return err
	}
	defer b.destroy(idu, idp)
	for _, id := range []string{idu, idp} {
		if _, err := b.v.do("start", id, "--wait"); err != nil {
			return err
		}
	}
	// vectl probes once per boot whether criu must trace system calls instead of setting
	// hardware breakpoints (CRIU_FAULT=130); runc gets the same, or its dumps would hang.
	if _, err := b.v.do("chkpnt", idp, "--leave-running"); err != nil {
		return err
	}
	var probe struct {
		NoBreakpoints bool `json:"no_breakpoints"`
	}
	if data, err := os.ReadFile(filepath.Join(b.v.run, "criu.json")); err == nil && json.Unmarshal(data, &probe) == nil && probe.NoBreakpoints {
		os.Setenv("CRIU_FAULT", "130")
		defer os.Unsetenv("CRIU_FAULT")
	}
	vectl := func(id, suffix string) *variant {
		return &variant{name: "vectl chkpnt + restore" + suffix, vectl: true, pass: func(p int, rec recorder) error {
			d1, d2, err := b.chkpntRestore(id)
			if err != nil {
				return err
			}
			rec("chkpnt/vectl"+suffix, d1)
			rec("restore/vectl"+suffix, d2)
			rec("ckpt/vectl"+suffix, d1+d2)
			return nil
		}}
	}
	vs := []*variant{vectl(idu, ""), vectl(idp, "-priv")}
	if r := b.runtime("runc"); r != nil {
		cid := b.id("runc-ckpt")
		// A detached runc container keeps runc's stdio, here the harness's files, which
		// criu cannot dump (files of no mount of the container); a VE's init has its
		// console or its own /dev/null. The container's init gets its own /dev/null too.
		bundle, err := b.bundle(cid, b.busyboxFS, []string{"/bin/sh", "-c", "exec </dev/null >/dev/null 2>/dev/null; exec /sbin/init"})
		if err != nil {
			return err
		}
		prepCgroup(cid)
		defer dropCgroup(cid)
		if _, err := b.sh(r.argv("run", "-d", "-b", bundle, cid)...); err != nil {
			return err
		}
		defer b.sh(r.argv("delete", "-f", cid)...)
		images := filepath.Join(b.work, "runc-ckpt")
		vs = append(vs, &variant{name: "runc checkpoint + restore -d", pass: func(p int, rec recorder) error {
			os.RemoveAll(images)
			d1, err := b.timed(r.argv("--criu", criuBin, "checkpoint", "--tcp-established", "--file-locks",
				"--image-path", images, cid)...)
			if err != nil {
				return fmt.Errorf("%w (criu: %s)", err, criuErrors(filepath.Join(images, "dump.log")))
			}
			prepCgroup(cid) // the source of the container's name=systemd bind, which checkpoint removed
			d2, err := b.timed(r.argv("--criu", criuBin, "restore", "-d", "--tcp-established", "--file-locks",
				"--image-path", images, "-b", bundle, cid)...)
			if err != nil {
				return err
			}
			rec("chkpnt/runc", d1)
			rec("restore/runc", d2)
			rec("ckpt/runc", d1+d2)
			return nil
		}})
	}
	b.interleave(b.passes(10), vs...)
	b.compare(cmp{group: "checkpoint", name: "checkpoint + restore of a running busybox VE", key: "ckpt/vectl",
		command: "vectl chkpnt + vectl restore", peerKey: "ckpt/runc", peer: "runc checkpoint + runc restore -d",
		target: ratioMax(1.0).as("chkpnt+restore")})
	b.compare(cmp{group: "checkpoint", name: "checkpoint + restore, privileged VE", key: "ckpt/vectl-priv",
		command: "vectl chkpnt + vectl restore", peerKey: "ckpt/runc", peer: "runc checkpoint + runc restore -d"})
	b.compare(cmp{group: "checkpoint", name: "checkpoint of a running busybox VE (dump, stop, tear down)", key: "chkpnt/vectl",
		command: "vectl chkpnt", peerKey: "chkpnt/runc", peer: "runc checkpoint"})
	b.compare(cmp{group: "checkpoint", name: "restore of a busybox VE (set up, restore, running)", key: "restore/vectl",
		command: "vectl restore", peerKey: "restore/runc", peer: "runc restore -d"})
	return b.benchCheckpointDebian()
}

// chkpntRestore times vectl chkpnt and then vectl restore of a running VE.
func (b *bench) chkpntRestore(id string) (chkpnt, restore time.Duration, err error) {
	if chkpnt, err = b.v.timed("chkpnt", id); err != nil {
		return 0, 0, err
	}
	restore, err = b.v.timed("restore", id)
	return chkpnt, restore, err
}

// benchCheckpointDebian: checkpoint and restore of a booted Debian 12 systemd VE against runc
// checkpoint and runc restore -d of a container running systemd from a copy of the same tree
// (the debian group's peer), with the same criu and options.
func (b *bench) benchCheckpointDebian() error {
	id := b.id("ckptdeb")
	defer b.destroy(id) // destroy tolerates a VE that was never made
	if err := b.create(id, debianName); err != nil {
		return err
	}
	if _, err := b.v.do("start", id, "--wait", "--timeout", "120"); err != nil {
		return err
	}
	vs := []*variant{{name: "vectl chkpnt + restore (Debian)", vectl: true, pass: func(p int, rec recorder) error {
		d1, d2, err := b.chkpntRestore(id)
		if err == nil {
			rec("ckptdeb/vectl", d1+d2)
		}
		return err
	}}}
	if r := b.runtime("runc"); r != nil {
		cid := b.id("runc-ckptdeb")
		bundle, err := b.bundle(cid, b.debianFS, []string{"/sbin/init"})
		if err != nil {
			return err
		}
		prepCgroup(cid)
		defer dropCgroup(cid)
		if _, err := b.runcBoot(r, cid, bundle); err != nil {
			return err
		}
		defer b.sh(r.argv("delete", "-f", cid)...)
		images := filepath.Join(b.work, "runc-ckptdeb")
		failed := ""
		vs = append(vs, &variant{name: "runc checkpoint + restore -d (Debian)", pass: func(p int, rec recorder) error {
			if failed != "" {
				return nil
			}
			os.RemoveAll(images)
			d1, err := b.timed(r.argv("--criu", criuBin, "checkpoint", "--tcp-established", "--file-locks",
				"--image-path", images, cid)...)
			if err != nil {
				failed = fmt.Sprintf("%v (criu: %s)", err, criuErrors(filepath.Join(images, "dump.log")))
				return nil
			}
			prepCgroup(cid)
			d2, err := b.timed(r.argv("--criu", criuBin, "restore", "-d", "--tcp-established", "--file-locks",
				"--image-path", images, "-b", bundle, cid)...)
			if err != nil {
				failed = fmt.Sprintf("restore: %v (criu: %s)", err, criuErrors(filepath.Join(images, "restore.log")))
				return nil
			}
			rec("ckptdeb/runc", d1+d2)
			return nil
		}})
		defer func() {
			if failed != "" {
				b.note("checkpoint: runc could not checkpoint and restore the Debian systemd container: %s", failed)
			}
		}()
	}
	b.interleave(b.costly(10), vs...)
	b.compare(cmp{group: "checkpoint", name: "checkpoint + restore of a running Debian 12 systemd VE", key: "ckptdeb/vectl",
		command: "vectl chkpnt + vectl restore", peerKey: "ckptdeb/runc", peer: "runc checkpoint + runc restore -d",
		target: ratioMax(1.0).as("chkpnt+restore Debian")})
	return nil
}

// criuErrors returns the error lines of a criu log, joined.
func criuErrors(log string) string {
	data, _ := os.ReadFile(log)
	var errs []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "Error (") {
			errs = append(errs, strings.TrimSpace(l))
		}
	}
	return strings.Join(errs, "; ")
}

// benchMigrate: online migration of a Debian systemd VE running sshd, back and forth between
// two vectl nodes on this machine (the second a state root of its own with its own cgroup
// parent, reached by ssh to an sshd on 127.0.0.1 with throwaway keys): the frozen time
// (target 600 ms) and the whole migration's time. No peer: runc and LXC have no migration,
// and Incus documents that a systemd container with a network device cannot be migrated.
func (b *bench) benchMigrate() error {
	if _, err := os.Stat(criuBin); err != nil {
		b.note("migrate: no criu in %s (make criu); not measured", criuBin)
		return nil
	}
	if _, err := os.Stat(filepath.Join(b.debianTmpl, "usr", "sbin", "sshd")); err != nil {
		b.note("migrate: the Debian template has no sshd (make check builds one with it); not measured")
		return nil
	}
	ssh, stop, err := b.loopbackSSHD()
	if err != nil {
		return err
	}
	defer stop()
	n2 := b.newVectlEnv("n2", b.v.tmpl)
	n2.cgroupParent = "/vectl-bench-n2"
	defer func() {
		n2.removeAll()
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + n2.cgroupParent)
		more, _ := filepath.Glob("/sys/fs/cgroup/*/*" + n2.cgroupParent)
		for _, d := range append(dirs, more...) {
			os.Remove(d)
		}
	}()
	id := b.id("mig")
	if err := b.create(id, debianName, "--ipadd", "10.195.1.30"); err != nil {
		return err
	}
	defer b.destroy(id)
	if _, err := b.v.do("start", id, "--wait", "--timeout", "120"); err != nil {
		return err
	}
	nodes, at := [2]*vectlEnv{b.v, n2}, 0
	defer func() {
		if at == 1 { // bring it home, for b.destroy
			n2.do("migrate", id, "root@127.0.0.1", "--ssh", ssh, "--remote-vectl", strings.Join(b.v.argv(), " "))
		}
	}()
	v := &variant{name: "vectl migrate --online (Debian, sshd)", vectl: true, pass: func(p int, rec recorder) error {
		from, to := nodes[at], nodes[1-at]
		start := time.Now()
		out, err := b.stdout(from.argv("migrate", id, "root@127.0.0.1", "--online", "--json", "--ssh", ssh,
			"--remote-vectl", strings.Join(to.argv(), " "))...)
		total := time.Since(start)
		if err != nil {
			return err
		}
		at = 1 - at
		var rep struct {
			FrozenMs int64 `json:"frozen_ms"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return fmt.Errorf("migrate --json: %w", err)
		}
		rec("migrate-frozen/vectl", time.Duration(rep.FrozenMs)*time.Millisecond)
		rec("migrate-total/vectl", total)
		return nil
	}}
	b.interleave(b.costly(10), v)
	b.compare(cmp{group: "migrate", name: "frozen time of an online migration (Debian systemd VE with sshd)",
		key: "migrate-frozen/vectl", command: "vectl migrate ID HOST --online (frozen_ms)",
		target: valueMax(600, "ms").as("migrate frozen")})
	b.compare(cmp{group: "migrate", name: "whole online migration between two local nodes", key: "migrate-total/vectl",
		command: "vectl migrate ID HOST --online"})
	return b.benchMigrateLazy(nodes, ssh)
}

// benchMigrateLazy: post-copy migration (--online --lazy) of a privileged busybox VE whose
// process holds 1 GiB of anonymous memory it wrote (integration/testdata/memhog.c), back and
// forth between the same two nodes: the frozen time (target 800 ms) and how long the memory
// took after the VE ran on the destination.
func (b *bench) benchMigrateLazy(nodes [2]*vectlEnv, ssh string) error {
	hog := filepath.Join(b.work, "memhog")
	if out, err := b.sh("gcc", "-static", "-O2", "-o", hog, "integration/testdata/memhog.c"); err != nil {
		return fmt.Errorf("build memhog: %v: %s", err, out)
	}
	id := b.id("lazy")
	if err := b.create(id, busyboxName, "--userns", "no", "--ram", "2G", "--ipadd", "10.195.1.31"); err != nil {
		return err
	}
	defer b.destroy(id)
	if _, err := b.v.do("start", id, "--wait", "--timeout", "60"); err != nil {
		return err
	}
	f, err := os.Open(hog)
	if err != nil {
		return err
	}
	cp := command(b.v.argv("exec", id, "sh", "-c", "cat > /memhog && chmod 755 /memhog && (/memhog 1024 /tmp/memhog.state </dev/null >/dev/null 2>&1 &)"))
	cp.Stdin = f
	out, err := cp.CombinedOutput()
	f.Close()
	if err != nil {
		return fmt.Errorf("start memhog in %s: %v: %s", id, err, out)
	}
	for i := 0; ; i++ {
		if out, _ := b.v.do("exec", id, "cat", "/tmp/memhog.state"); strings.HasPrefix(out, "ready") {
			break
		}
		if i == 600 {
			return errors.New("memhog: no 1 GiB ready after 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	at := 0
	defer func() {
		if at == 1 { // bring it home, for b.destroy
			nodes[1].do("migrate", id, "root@127.0.0.1", "--ssh", ssh, "--remote-vectl", strings.Join(b.v.argv(), " "))
		}
	}()
	v := &variant{name: "vectl migrate --online --lazy (busybox, 1 GiB)", vectl: true, pass: func(p int, rec recorder) error {
		from, to := nodes[at], nodes[1-at]
		out, err := b.stdout(from.argv("migrate", id, "root@127.0.0.1", "--online", "--lazy", "--json", "--ssh", ssh,
			"--remote-vectl", strings.Join(to.argv(), " "))...)
		if err != nil {
			return err
		}
		at = 1 - at
		var rep struct {
			FrozenMs int64 `json:"frozen_ms"`
			PagesMs  int64 `json:"pages_ms"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return fmt.Errorf("migrate --json: %w", err)
		}
		rec("migrate-lazy-frozen/vectl", time.Duration(rep.FrozenMs)*time.Millisecond)
		rec("migrate-lazy-pages/vectl", time.Duration(rep.PagesMs)*time.Millisecond)
		return nil
	}}
	b.interleave(b.costly(6), v)
	b.compare(cmp{group: "migrate", name: "frozen time of a lazy migration (busybox VE, 1 GiB of touched memory)",
		key: "migrate-lazy-frozen/vectl", command: "vectl migrate ID HOST --online --lazy (frozen_ms)",
		target: valueMax(800, "ms").as("migrate --lazy frozen")})
	b.compare(cmp{group: "migrate", name: "memory of that VE moved after it ran on the destination", key: "migrate-lazy-pages/vectl",
		command: "vectl migrate ID HOST --online --lazy (pages_ms)"})
	return nil
}

// loopbackSSHD starts an sshd on a free port of 127.0.0.1 that lets root in with a key made
// for it; it returns the ssh options for vectl migrate --ssh and its stop. Its sessions start
// with SHLVL=1: bash then skips ~/.bashrc for ssh commands, which on this machine runs
// pyenv init for root and costs 430 ms per command (23 ms without), more than anything
// vectl does; a node's root account usually has no such start-up.
func (b *bench) loopbackSSHD() (string, func(), error) {
	dir := filepath.Join(b.work, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	for _, k := range []string{"host", "client"} {
		os.Remove(filepath.Join(dir, k))
		if _, err := b.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)); err != nil {
			return "", nil, err
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "client.pub"))
	if err != nil {
		return "", nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := fmt.Sprintf("Port %d\nListenAddress 127.0.0.1\nHostKey %s/host\nAuthorizedKeysFile %s/authorized_keys\n"+
		"PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"+
		"UsePAM no\nStrictModes no\nPidFile none\nSetEnv SHLVL=1\n", port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return "", nil, err
	}
	madeRun := false
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil {
			return "", nil, err
		}
		madeRun = true
	}
	cmd := command([]string{"/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config")})
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
		if madeRun {
			os.Remove("/run/sshd")
		}
	}
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			stop()
			return "", nil, fmt.Errorf("sshd on port %d: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	opts := fmt.Sprintf("-p %d -i %s/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR", port, dir)
	return opts, stop, nil
}
