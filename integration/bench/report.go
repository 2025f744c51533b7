package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// results is what results.json holds.
type results struct {
	Machine  machineInfo          `json:"machine"`
	Duration float64              `json:"duration_seconds"`
	Options  map[string]any       `json:"options"`
	Rows     []Row                `json:"rows"`
	Memory   []memRow             `json:"memory_per_ve,omitempty"`
	Notes    []string             `json:"notes,omitempty"`
	Samples  map[string][]float64 `json:"samples"`
	// Costs holds, per sample key, the cost of each sample (acct.go).
	Costs map[string][]cost `json:"costs,omitempty"`
}

func (b *bench) writeResults() error {
	// JSON cannot hold an infinite score.
	for i := range b.rows {
		if math.IsInf(b.rows[i].Score, 0) || math.IsNaN(b.rows[i].Score) {
			b.rows[i].Score = 0
		}
	}
	b.machine.LoadAfter = loadavg()
	res := results{Machine: b.machine, Duration: math.Round(time.Since(b.started).Seconds()),
		Options: map[string]any{"load": b.opts.load, "passes": b.opts.passes, "density": b.opts.density, "quick": b.opts.quick,
			"only": keys(b.opts.only)},
		Rows: b.rows, Memory: b.memory, Notes: b.notes, Samples: b.samples, Costs: b.costs}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	out := b.opts.out
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(b.markdown()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "README-section.md"), []byte(b.readmeSection()), 0o644); err != nil {
		return err
	}
	// The command log is not a result: keep it out of commits.
	os.WriteFile(filepath.Join(out, ".gitignore"), []byte("commands.log\n"), 0o644)
	b.wroteResults = true
	if err := b.chart(filepath.Join(out, "chart.png")); err != nil {
		b.note("chart: %v", err)
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (b *bench) machineLine() string {
	m := b.machine
	return fmt.Sprintf("%s, %d cores, %s RAM, %s, kernel %s, cgroup %s", m.CPU, m.Cores, m.RAM, m.OS, m.Kernel, m.Cgroups)
}

func (b *bench) peersLine() string {
	var parts []string
	for _, k := range []string{"runc", "crun", "lxc", "systemd-nspawn", "iperf3"} {
		if v := b.machine.Versions[k]; v != "" {
			parts = append(parts, v)
		}
	}
	return strings.Join(parts, "; ")
}

// targetTable is the Markdown table of the rows that have a target.
func (b *bench) targetTable() string {
	var sb strings.Builder
	sb.WriteString("| Benchmark | vectl median (p25–p75) | Peer | Peer median (p25–p75) | Ratio | Target | Result | CPU ms vectl / peer | CPU ratio | CPU result |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range b.rows {
		if r.Target != nil {
			line := strings.TrimSuffix(r.markdownRow(), "\n")
			cpu, ratio, result := "—", "—", "—"
			if r.Cost != nil {
				cpu = fmtVal(r.Cost.CPU.Median, "ms")
				if r.PeerCost != nil {
					cpu += " / " + fmtVal(r.PeerCost.CPU.Median, "ms")
				}
			}
			if r.CPURatio != 0 {
				ratio = fmtRatio(r.CPURatio)
			}
			if r.CPUStatus != "" {
				result = "**" + r.CPUStatus + "**"
			}
			fmt.Fprintf(&sb, "%s %s | %s | %s |\n", line, cpu, ratio, result)
		}
	}
	return sb.String()
}

// costTable is the Markdown table of what every row's operation cost, from the kernel's
// accounting (acct.go), medians per sample.
func (b *bench) costTable() string {
	var sb strings.Builder
	sb.WriteString("| Benchmark | Peer | CPU ms vectl (user + sys) | CPU ms peer | CPU ratio | page faults vectl / peer | programs executed vectl / peer | forks vectl / peer |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|\n")
	n := 0
	for _, r := range b.rows {
		if r.Cost == nil {
			continue
		}
		n++
		peer, peerCPU, ratio := "—", "—", "—"
		pf, pe, pk := "—", "—", "—"
		if r.Peer != "" {
			peer = r.Peer
		}
		if p := r.PeerCost; p != nil {
			peerCPU = fmtDist(p.CPU, "ms")
			pf, pe, pk = fmtCount(p.Faults), fmtCount(p.Execs), fmtCount(p.Forks)
		}
		if r.CPURatio != 0 {
			ratio = fmtRatio(r.CPURatio)
		}
		c := r.Cost
		fmt.Fprintf(&sb, "| %s | %s | %s (%s + %s) | %s | %s | %s / %s | %s / %s | %s / %s |\n", mdEscape(r.Name), mdEscape(peer),
			fmtDist(c.CPU, "ms"), fmtVal(c.User.Median, "ms"), fmtVal(c.Sys.Median, "ms"), peerCPU, ratio,
			fmtCount(c.Faults), pf, fmtCount(c.Execs), pe, fmtCount(c.Forks), pk)
	}
	if n == 0 {
		return ""
	}
	return sb.String()
}

// fmtCount is a count's median.
func fmtCount(d *Dist) string {
	if d == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f", d.Median)
}

func (r Row) markdownRow() string {
	peer, peerVal, ratio := "—", "—", "—"
	if r.Peer != "" {
		peer, peerVal = r.Peer, fmtDist(r.PeerVal, r.Unit)
	}
	if r.Ratio != 0 {
		ratio = fmtRatio(r.Ratio)
	}
	if r.Target != nil && r.Target.Kind == "delta<=" && r.Value != nil && r.PeerVal != nil {
		ratio += fmt.Sprintf(" (%+.1f %s)", r.Delta, r.Unit)
	}
	target, result := "—", "—"
	if r.Target != nil {
		target = r.Target.Text
		if r.Target.Kind == "ratio<=" || r.Target.Kind == "ratio>=" {
			target += " " + r.Peer
		}
		if r.Target.CPULimit != 0 {
			target += " (CPU time ≤ " + ratioText(r.Target.CPULimit) + ")"
		}
		result = "**" + r.Status + "**"
	}
	name := r.Name
	if r.Note != "" {
		name += " (" + r.Note + ")"
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(name), fmtDist(r.Value, r.Unit),
		mdEscape(peer), peerVal, ratio, mdEscape(target), result)
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func (b *bench) markdown() string {
	var sb strings.Builder
	m := b.machine
	fmt.Fprintf(&sb, "# vectl benchmark results\n\n")
	fmt.Fprintf(&sb, "- date: %s (run took %v)\n", m.Date, time.Since(b.started).Round(time.Second))
	fmt.Fprintf(&sb, "- machine: %s\n", b.machineLine())
	fmt.Fprintf(&sb, "- vectl: %s\n", m.Vectl)
	for _, k := range []string{"runc", "crun", "lxc", "systemd-nspawn", "iperf3", "busybox", "gnuplot"} {
		if v := m.Versions[k]; v != "" {
			fmt.Fprintf(&sb, "- %s: %s\n", k, v)
		}
	}
	mode := "full run"
	if b.opts.quick {
		mode = "quick smoke run (-quick): few passes, small counts; not representative"
	}
	if b.opts.load {
		mode += ", loaded (-load: every CPU busy with background work at normal priority)"
	}
	fmt.Fprintf(&sb, "- mode: %s; density %d VEs\n", mode, b.opts.density)
	fmt.Fprintf(&sb, "- load average (1, 5, 15 min) before: %s; after: %s (the host is shared: a high load means noisy numbers)\n\n",
		m.LoadBefore, m.LoadAfter)
	sb.WriteString("Each benchmark runs its contenders interleaved (A B A B ...) after one unrecorded warm-up pass. " +
		"Values are medians with the interquartile range (p25–p75), in milliseconds unless stated; " +
		"ratio = vectl median / peer median (for throughput, higher is better). Preparation and cleanup " +
		"steps (create, destroy, delete) are not timed unless they are the benchmark.\n\n")
	sb.WriteString("![vectl against its targets](chart.png)\n\n")
	sb.WriteString("## Targets\n\n")
	sb.WriteString(b.targetTable())
	sb.WriteString("\n## All measurements\n\n")
	sb.WriteString("| Benchmark | vectl median (p25–p75) | Peer | Peer median (p25–p75) | Ratio | Target | Result |\n")
	sb.WriteString("|---|---|---|---|---|---|---|\n")
	for i, r := range b.rows {
		line := r.markdownRow()
		if i > 0 && b.rows[i-1].Name == r.Name && b.rows[i-1].Value == r.Value {
			// The same vectl measurement against another peer: show only what differs.
			cells := strings.SplitN(line, " | ", 3)
			line = "| ″ | ″ | " + cells[2]
		}
		sb.WriteString(line)
	}
	if t := b.costTable(); t != "" {
		sb.WriteString("\n## Cost: CPU time, page faults and processes (kernel accounting)\n\n")
		sb.WriteString("Summed over every process below the bench's cgroup during each timed operation: the command, " +
			"its children, and the monitors, daemons and containers it starts or talks to (cgroup2 cpu.stat; perf counters " +
			"in cgroup mode for page faults and the sched_process_exec and sched_process_fork tracepoints). " +
			"Medians per operation; a row that times several commands sums them.\n\n")
		sb.WriteString(t)
	}
	if len(b.memory) > 0 {
		sb.WriteString("\n## Host memory per idle busybox VE (MiB)\n\n")
		sb.WriteString("| Mode | VEs | VE processes PSS | monitor PSS | slab Δ | page tables Δ | kernel stacks Δ | total | MemAvailable drop |\n")
		sb.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range b.memory {
			fmt.Fprintf(&sb, "| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | **%.3f** | %.3f |\n", r.Mode, r.VEs,
				r.VEPss, r.MonitorPss, r.Slab, r.PageTables, r.KernelStack, r.Total, r.Available)
		}
		sb.WriteString("\nKernel deltas are /proc/meminfo before the starts and after them, divided by the VE count; " +
			"MemAvailable also moves with anything else on the host.\n")
	}
	sb.WriteString("\n## Method and notes\n\n")
	for _, n := range methodNotes {
		sb.WriteString("- " + n + "\n")
	}
	for _, n := range b.notes {
		sb.WriteString("- " + mdEscape(n) + "\n")
	}
	return sb.String()
}

// methodNotes explain how each comparison is made.
var methodNotes = []string{
	"Root filesystems are identical: the peers run copies of the trees vectl's `template build` / `template import` unpacked; runc and crun use the OCI spec vectl itself generated for a busybox VE (`ROOT/ve/ID/oci.json`), with a new network namespace instead of vectl's pinned one, a cgroup under /vectl-bench, no terminal and ociVersion 1.0.2.",
	"crun 1.8 refuses this host's hybrid cgroup layout when /sys/fs/cgroup/unified lists a controller, so crun runs in a private mount namespace with an empty file bound over that list (`unshare -m sh -c 'mount --bind EMPTY .../cgroup.controllers && exec crun ...'`); `runc (unshare)` runs runc the same way as a control for what the wrapper costs.",
	"Run-to-exit: vectl has no run command; it is timed as `vectl start --foreground` of a VE whose /sbin/init is a `#!/bin/true` script (the start returns when the init has exited and the VE is torn down).",
	"Debian boot: `vectl start --wait` against `runc run -d` followed by `runc exec ID systemctl is-system-running --wait` retried every 50 ms until it says running or degraded, which is what `vectl start --wait` does inside. Graceful shutdown: `vectl stop` against `runc kill ID 37` (SIGRTMIN+3), waiting for the init to exit, and `runc delete`.",
	"Monitor memory: the sum of Pss in /proc/PID/smaps_rollup of the process `vectl __monitor-idle ...` that is the parent of a running busybox VE's init, alone on the host (vectl's binary pages are shared with any other vectl running).",
	"Throughput: iperf3 -s inside a Debian VE (routed veth made by vectl's CNI ptp plugin), iperf3 -c on the host; the peer is a veth pair made by hand into a network namespace in the same run, addresses from the bench pool 10.195.0.0/16.",
	"CPU: a busybox awk loop through `vectl exec` against the template's own busybox binary run on the host.",
}

func (b *bench) readmeSection() string {
	var sb strings.Builder
	m := b.machine
	sb.WriteString("## Performance\n\n")
	fmt.Fprintf(&sb, "`make bench` (as root; about 10 minutes on 2 cores, plus `make deps` installing the peers; not part of `.ci/run`) times vectl against runc, crun, "+
		"LXC and systemd-nspawn on identical root filesystems and writes `integration/bench/results/`: "+
		"`results.md` (every measurement, with spread), `results.json` and `chart.png`. Latest run: **%s** on %s; "+
		"vectl %s; %s.", m.Date, b.machineLine(), m.Vectl, b.peersLine())
	if b.opts.quick {
		sb.WriteString(" This was a quick smoke run (`-quick`), not representative.")
	}
	sb.WriteString("\n\nMedians of interleaved passes; ratio = vectl / peer.\n\n")
	sb.WriteString(b.targetTable())
	sb.WriteString("\n![vectl against its targets](integration/bench/results/chart.png)\n")
	return sb.String()
}

// chart draws one PNG with gnuplot: for every row with a target, how much of the target the
// measurement uses (measured / target; for throughput target / measured), so that every bar
// at or below 1 meets its target.
func (b *bench) chart(path string) error {
	gp, err := exec.LookPath("gnuplot")
	if err != nil {
		return err
	}
	var data strings.Builder
	i := 0
	for _, r := range b.rows {
		if r.Target == nil || r.Status == "N/A" {
			continue
		}
		score := math.Max(0.01, math.Min(r.Score, 20))
		color := 0x2e8b57
		if r.Status == "MISS" {
			color = 0xcc3333
		}
		label := r.Target.Label
		if label == "" {
			label = r.Name
		}
		val := fmtVal(r.Value.Median, r.Unit)
		if r.Target.Kind == "ratio<=" || r.Target.Kind == "ratio>=" {
			val = fmtRatio(r.Ratio)
		} else if r.Target.Kind == "delta<=" {
			val = fmt.Sprintf("%+.1f %s", r.Delta, r.Unit)
		}
		fmt.Fprintf(&data, "%d\t%s\t%.4f\t%d\t%s\n", i, label, score, color, val+" / "+r.Target.Text)
		i++
	}
	if i == 0 {
		return nil
	}
	dat := filepath.Join(b.work, "chart.dat")
	if err := os.WriteFile(dat, []byte(data.String()), 0o644); err != nil {
		return err
	}
	term := "pngcairo size 1400,750 font 'sans,10'"
	if exec.Command(gp, "-e", "set terminal pngcairo").Run() != nil {
		term = "png size 1400,750"
	}
	title := fmt.Sprintf("vectl against its targets — %s, %s, %d cores", b.machine.Date, b.machine.CPU, b.machine.Cores)
	if b.opts.quick {
		title += " (quick smoke run)"
	}
	script := fmt.Sprintf(`set terminal %s
set output %q
set datafile separator "\t"
set title %q
set style fill solid 0.85 border -1
set boxwidth 0.6
set logscale y
set yrange [0.01:20]
set ylabel "measured / target  (at or below 1 meets the target)"
set xtics rotate by -30 left nomirror
set xrange [-0.7:%d]
set grid ytics
set bmargin 8
set rmargin 12
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linewidth 2 linecolor rgb "black"
plot %q using 1:3:4:xtic(2) with boxes linecolor rgb variable notitle, \
     '' using 1:3:5 with labels rotate by 90 left offset 0,0.6 font ',8' notitle
`, term, path, title, i, dat)
	c := exec.Command(gp)
	c.Stdin = strings.NewReader(script)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %v: %s", err, out)
	}
	return nil
}

func (b *bench) printSummary(w io.Writer) {
	fmt.Fprintln(w, "== results")
	for _, r := range b.rows {
		fmt.Fprintln(w, r.summary())
	}
	for _, m := range b.memory {
		fmt.Fprintf(w, "memory per VE %s (%d VEs): %.3f MiB (VE PSS %.3f, monitor %.3f, slab %.3f, page tables %.3f, kernel stacks %.3f)\n",
			m.Mode, m.VEs, m.Total, m.VEPss, m.MonitorPss, m.Slab, m.PageTables, m.KernelStack)
	}
}
