// Command bench is vectl's benchmark suite (make bench). As root, with the peers (runc, crun,
// LXC, systemd-nspawn) and tools that make deps installs from Debian's packages, it builds
// identical root filesystems with vectl's own template build, times vectl and its peers interleaved over
// several passes, and writes results.json, results.md, chart.png and README-section.md.
//
// Everything it makes lives under one scratch directory and a few host objects named after
// it (cgroups under /vectl-bench, the nftables tables vectl-bench and vectl-bench-guard, one
// network namespace and veth pair, the bench pool's unreachable routes); all of it is
// removed at the end, also after a failure or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	vectl   string
	out     string
	passes  int // 0: each benchmark's default
	density int
	quick   bool
	only    map[string]bool // benchmark groups to run; empty: all
	timeout time.Duration
	load    bool // run with background load on every CPU
	// check and against: compare two results.json files (make bench-check) instead of running.
	check, against string
}

// groups are the benchmark groups in the order they run; -only selects some of them.
var groups = []struct {
	name string
	run  func(*bench) error
	help string
}{
	{"runexit", (*bench).benchRunToExit, "run-to-exit of /bin/true in a fresh environment"},
	{"start", (*bench).benchStartStop, "busybox start until init runs, stop (kill path)"},
	{"exec", (*bench).benchExec, "exec /bin/true, set --ram, CPU inside vs outside, monitor memory"},
	{"seq", (*bench).benchSequential, "sequential start of 20 VEs"},
	{"net", (*bench).benchNetwork, "start with addresses, set --ipadd, TCP throughput"},
	{"debian", (*bench).benchDebian, "Debian 12 and 13 systemd boot to running, graceful shutdown"},
	{"download", (*bench).benchDownload, "template download of ~100 MB from a loopback server vs curl"},
	{"create", (*bench).benchCreate, "create from a template: overlay, copy, image, LXC, untar"},
	{"density", (*bench).benchDensity, "list -a, stats --json, memory per VE at density"},
	{"debian-density", (*bench).benchDebianDensity, "memory per idle Debian VE, 20 VEs: own user namespace vs privileged"},
	{"checkpoint", (*bench).benchCheckpoint, "checkpoint + restore of a running busybox VE vs runc checkpoint/restore, same criu"},
	{"snapshot", (*bench).benchSnapshot, "snapshot and clone of a stopped Debian VE with 1 GiB vs lxc-copy -s; frozen time of snapshot and backup --mode suspend"},
	{"migrate", (*bench).benchMigrate, "online migration of a Debian VE with sshd between two local nodes: frozen and total time"},
}

func main() {
	if os.Getenv(loadWorkerEnv) != "" {
		loadWorker()
	}
	os.Exit(run())
}

func run() int {
	opts, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	if opts.check != "" {
		return checkResults(opts.against, opts.check, os.Stdout)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (run make bench as root)")
		return 1
	}
	// A Ctrl-C or SIGTERM ends the current measurement, then the cleanup runs. Commands run
	// in their own process groups, so the terminal's SIGINT reaches only this process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()

	b, err := newBench(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil {
				fmt.Fprintf(os.Stderr, "bench: panic: %v\n", r)
				code = 1
			}
		}()
		if err := b.runAll(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}()
	// The cleanup must finish even if the user presses Ctrl-C again.
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if err := b.cleanup(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: cleanup:", err)
		code = 1
	}
	if b.wroteResults {
		b.printSummary(os.Stdout)
		fmt.Printf("results: %s (took %v)\n", opts.out, time.Since(b.started).Round(time.Second))
	}
	if code == 0 && b.failed {
		code = 1
	}
	if errors.Is(ctx.Err(), context.Canceled) && code == 0 {
		code = 130
	}
	return code
}

func parseFlags() (options, error) {
	repo := findRepo()
	var o options
	var only string
	flag.StringVar(&o.vectl, "vectl", filepath.Join(repo, "bin", "vectl"), "vectl binary to measure")
	flag.StringVar(&o.out, "out", filepath.Join(repo, "integration", "bench", "results"), "directory for the results")
	flag.IntVar(&o.passes, "passes", 0, "measured passes per benchmark (0: each benchmark's default; costly ones use at most their default)")
	flag.IntVar(&o.density, "density", 500, "idle busybox VEs started for the density benchmark")
	flag.BoolVar(&o.quick, "quick", false, "small counts for a smoke run (3 passes, 20 VEs for density)")
	flag.StringVar(&only, "only", "", "comma-separated benchmark groups to run (default all): "+groupNames())
	flag.BoolVar(&o.load, "load", false, "run with background load on every CPU at normal priority (make bench LOAD=1)")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Minute, "time budget: groups that do not fit are skipped")
	flag.StringVar(&o.check, "check", "", "compare this results.json with -against instead of running: name the rows whose CPU time grew by more than 10%")
	flag.StringVar(&o.against, "against", "", "the results.json -check compares with")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if (o.check == "") != (o.against == "") {
		return o, errors.New("-check and -against go together")
	}
	if o.check != "" {
		return o, nil
	}
	if o.quick {
		if !flagSet("density") {
			o.density = 20
		}
		if !flagSet("passes") {
			o.passes = 3
		}
	}
	if o.density < 1 || o.passes < 0 {
		return o, errors.New("-density must be at least 1 and -passes at least 0")
	}
	o.only = map[string]bool{}
	for _, g := range strings.Split(only, ",") {
		if g = strings.TrimSpace(g); g == "" {
			continue
		}
		known := false
		for _, k := range groups {
			known = known || k.name == g
		}
		if !known {
			return o, fmt.Errorf("-only: unknown group %q (have %s)", g, groupNames())
		}
		o.only[g] = true
	}
	var err error
	if o.vectl, err = filepath.Abs(o.vectl); err != nil {
		return o, err
	}
	if o.out, err = filepath.Abs(o.out); err != nil {
		return o, err
	}
	if _, err := os.Stat(o.vectl); err != nil {
		return o, fmt.Errorf("vectl binary: %w (run make first or pass -vectl)", err)
	}
	return o, nil
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func groupNames() string {
	var n []string
	for _, g := range groups {
		n = append(n, g.name)
	}
	return strings.Join(n, ",")
}

// findRepo returns the root of the vectl checkout holding the working directory (where
// go.mod names the module), or the working directory itself.
func findRepo() string {
	wd, _ := os.Getwd()
	for d := wd; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.HasPrefix(string(data), "module github.com/vectl/vectl\n") {
			return d
		}
		if d == filepath.Dir(d) {
			return wd
		}
	}
}
