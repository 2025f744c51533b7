// Package commands is vectl's command line: a urfave/cli/v2 app whose commands parse their
// arguments, make one call into the container package, and render the result as a table or
// as JSON. It never imports libcontainer, libcni or netlink.
package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container"
)

// Version is set at build time with -ldflags "-X github.com/vectl/vectl/commands.Version=...".
var Version = "dev"

// Streams are the standard streams a command reads and writes.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// geteuid is replaced by unit tests, which run unprivileged.
var geteuid = os.Geteuid

// Main runs vectl with args (args[0] is the program name) and returns the exit status.
func Main(args []string, s Streams) int {
	switch filepath.Base(args[0]) {
	case "vzctl":
		return VzctlMain(args, s)
	case "vzlist":
		return VzlistMain(args, s)
	}
	code, msg := runApp(args, s)
	if msg != "" {
		fmt.Fprintf(s.Err, "vectl: %s\n", msg)
	}
	return code
}

// runApp runs vectl's own command line and returns the exit status and the one-line error
// message to print ("" when none).
func runApp(args []string, s Streams) (int, string) {
	app := appFor(s, args)
	streamline(app, args)
	reading := readOnly(app.Flags, args)
	args, err := reorderArgs(app, args)
	if err == nil {
		ctx, stop := context.Background(), context.CancelFunc(func() {})
		if !reading {
			ctx, stop = signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
		}
		err = app.RunContext(ctx, args)
		stop()
	}
	if err == nil {
		return 0, ""
	}
	return exitStatus(err)
}

// withManager runs fn with the manager the global flags' environment variables and defaults
// describe (VECTL_ROOT, VECTL_RUN_DIR, ...): the personalities have no global flags of
// vectl's own, so they share vectl's settings through the environment.
func withManager(s Streams, fn func(context.Context, *container.Manager) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	return runManager(ctx, s, fn)
}

// readingManager is withManager for what only reads (vzlist): it catches no signal, as
// vectl's reading commands do not (readOnly).
func readingManager(s Streams, fn func(context.Context, *container.Manager) error) error {
	return runManager(context.Background(), s, fn)
}

func runManager(ctx context.Context, s Streams, fn func(context.Context, *container.Manager) error) error {
	app := newApp(s, nil)
	app.Action = func(c *cli.Context) error {
		m, err := manager(c)
		if err != nil {
			return err
		}
		return fn(c.Context, m)
	}
	return app.RunContext(ctx, []string{"vectl"})
}

// readOnlyCommands only read vectl's state and the host's, and return at once. They do not
// catch SIGINT and SIGTERM, which end them as they end any reader (a shell sees status 130
// for SIGINT, as for the others' "interrupted"); every other command, stats too (its
// --interval waits), turns them into the cancellation of what it does and exits 130. Catching the two costs each process a thread for os/signal's signal masks and
// four round trips to it (two to take them, two to give them back): 1.8 ms of the 24 ms of
// CPU of a short command on the PVM machine of 2026-12-06 (400 interleaved runs).
var readOnlyCommands = map[string]bool{
	"status": true, "list": true, "ls": true, "ubc": true, "snapshot-list": true,
	"unit": true, "exit-codes": true, "completion": true, "man": true, "help": true, "h": true,
}

// readOnly tells whether args run one of readOnlyCommands, or no command at all (help,
// --version). globals are the app's own flags.
func readOnly(globals []cli.Flag, args []string) bool {
	i := commandIndex(globals, args)
	return i >= len(args) || readOnlyCommands[args[i]]
}

// commandIndex is the index in args (args[0] being the program) of the command's name, after
// the global flags and their values; len(args) when there is none.
func commandIndex(globals []cli.Flag, args []string) int {
	i := 1
	for i < len(args) && isFlag(args[i]) {
		if takesValue(globals, args[i]) {
			i++
		}
		i++
	}
	return min(i, len(args))
}

// NewApp builds a fresh app for every run: urfave/cli/v2 mutates flag values while parsing,
// so reusing one between runs (as tests do) would leak state.
func NewApp(s Streams) *cli.App { return newApp(s, allCommands()) }

// appFor builds the app for one run with args: with only the command that args name, unless
// they ask for help, name no command or name one that reads the whole app. Building every
// command with its flags and help text cost each run about half a millisecond, and every
// start runs vectl twice (the command and the VE's monitor).
func appFor(s Streams, args []string) *cli.App {
	globals := globalFlags()
	if i := commandIndex(globals, args); i < len(args) && !slices.ContainsFunc(args, helpArg) {
		for _, e := range commandTable() {
			if slices.Contains(e.names, args[i]) && !e.wholeApp {
				return newApp(s, e.build(), globals...)
			}
		}
	}
	return newApp(s, allCommands(), globals...)
}

func helpArg(a string) bool {
	return a == "help" || a == "h" || a == "-h" || a == "--help" || strings.HasPrefix(a, "--generate")
}

// commandEntry is one or a few of vectl's commands with every name they answer to (checked by
// a unit test), so that a run can build only the one it runs.
type commandEntry struct {
	names    []string
	build    func() []*cli.Command
	wholeApp bool // reads the other commands (completion scripts)
}

// commandTable is vectl's commands in the order of its help. (A function rather than a
// variable: man builds the whole app, which would make the variable refer to itself.)
func commandTable() []commandEntry {
	return []commandEntry{
		{[]string{"create"}, one(createCommand), false},
		{[]string{"destroy", "delete"}, one(destroyCommand), false},
		{[]string{"mount"}, one(mountCommand), false},
		{[]string{"umount"}, one(umountCommand), false},
		{[]string{"status"}, one(statusCommand), false},
		{[]string{"list", "ls"}, one(listCommand), false},
		{[]string{"set"}, one(setCommand), false},
		{[]string{"start"}, one(startCommand), false},
		{[]string{"stop"}, one(stopCommand), false},
		{[]string{"restart"}, one(restartCommand), false},
		{[]string{"exec"}, one(execCommand), false},
		{[]string{"enter"}, one(enterCommand), false},
		{[]string{"console"}, one(consoleCommand), false},
		{[]string{"chkpnt", "suspend"}, one(chkpntCommand), false},
		{[]string{"restore", "resume"}, one(restoreCommand), false},
		{[]string{"migrate"}, one(migrateCommand), false},
		{[]string{"freeze"}, func() []*cli.Command {
			return []*cli.Command{freezeCommand("freeze", "freeze every process of a running VE (no dump)", true)}
		}, false},
		{[]string{"thaw"}, func() []*cli.Command { return []*cli.Command{freezeCommand("thaw", "thaw a frozen VE", false)} }, false},
		{[]string{"stats"}, one(statsCommand), false},
		{[]string{"ubc"}, one(ubcCommand), false},
		{[]string{"boot"}, one(bootCommand), false},
		{[]string{"host"}, one(hostCommand), false},
		{[]string{"unit"}, one(unitCommand), false},
		{[]string{"template"}, one(templateCommand), false},
		{[]string{"exit-codes"}, one(exitCodesCommand), false},
		{[]string{"completion"}, one(completionCommand), true},
		{[]string{"man"}, one(manCommand), false},
		{[]string{"__monitor"}, one(monitorCommand), false},
		{[]string{"migrate-in"}, one(migrateInCommand), false},
		{[]string{"migrate-guard"}, one(migrateGuardCommand), false},
		{[]string{"snapshot", "snapshot-list", "snapshot-switch", "snapshot-delete", "snapshot-mount", "snapshot-umount", "clone"},
			snapshotCommands, false},
		{[]string{"backup", "backup-restore"}, backupCommands, false},
	}
}

func one(build func() *cli.Command) func() []*cli.Command {
	return func() []*cli.Command { return []*cli.Command{build()} }
}

// allCommands builds every command, in the order of vectl --help.
func allCommands() []*cli.Command {
	var out []*cli.Command
	for _, e := range commandTable() {
		out = append(out, e.build()...)
	}
	return out
}

// globalFlags are vectl's global options.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "root", Value: container.DefaultRoot, EnvVars: []string{"VECTL_ROOT"},
			Usage: "persistent state directory"},
		&cli.StringFlag{Name: "template-dir", EnvVars: []string{"VECTL_TEMPLATE_DIR"},
			Usage: "OS template cache (default: ROOT/templates)"},
		&cli.StringFlag{Name: "run-dir", Value: container.DefaultRunDir, EnvVars: []string{"VECTL_RUN_DIR"},
			Usage: "volatile state directory (cleared by a host reboot)"},
		&cli.StringFlag{Name: "log-dir", Value: container.DefaultLogDir, EnvVars: []string{"VECTL_LOG_DIR"},
			Usage: "console log directory"},
		&cli.StringFlag{Name: "network-config", Value: "/etc/vectl/network.json", EnvVars: []string{"VECTL_NETWORK_CONFIG"},
			Usage: "the node's network configuration: VE address pools, bridges, proxy ARP/NDP uplinks"},
		&cli.StringFlag{Name: "cni-path", EnvVars: []string{"VECTL_CNI_PATH"},
			Usage: "use the host's CNI plugins in `DIR` instead of the ones built into vectl"},
		&cli.StringFlag{Name: "firewall-table", Value: "vectl", EnvVars: []string{"VECTL_FIREWALL_TABLE"},
			Usage: "name of vectl's own nftables tables"},
		&cli.StringFlag{Name: "profile-dir", Value: "/etc/vectl/profiles", EnvVars: []string{"VECTL_PROFILE_DIR"},
			Usage: "resource profiles (NAME.json) for create --config and set --applyconfig"},
		&cli.StringFlag{Name: "cgroup-manager", EnvVars: []string{"VECTL_CGROUP_MANAGER"},
			Usage: "cgroup driver: fs (default) or systemd (where systemd is PID 1); also cgroup_manager in " + nodeConfigPath},
		&cli.StringFlag{Name: "cgroup-parent", Value: container.DefaultCgroupParent, EnvVars: []string{"VECTL_CGROUP_PARENT"},
			Usage: "absolute cgroup `PATH` the VEs live under (with the systemd driver one name, the slice NAME.slice); two vectl instances on one host need different ones"},
		&cli.StringFlag{Name: "vz-conf-dir", Value: container.DefaultVZConfDir, EnvVars: []string{"VECTL_VZ_CONF_DIR"},
			Usage: "where vzctl's view of the VEs' configs is kept (`DIR`/vz.conf, DIR/conf/ID.conf) for vzctl's clients; none: not kept"},
		&cli.StringFlag{Name: "lock-timeout", Value: container.DefaultLockTimeout.String(), EnvVars: []string{"VECTL_LOCK_TIMEOUT"},
			Usage: "how long to wait for a VE held by another vectl (seconds or a duration like 500ms); exit 9 after it"},
	}
}

// newApp is the app with cmds and the global flags (built anew when not given).
func newApp(s Streams, cmds []*cli.Command, globals ...cli.Flag) *cli.App {
	if globals == nil {
		globals = globalFlags()
	}
	app := &cli.App{
		Name:                   "vectl",
		Usage:                  "OpenVZ-style Virtual Environments on a stock Linux kernel",
		Version:                Version,
		Reader:                 s.In,
		Writer:                 s.Out,
		ErrWriter:              s.Err,
		HideVersion:            false,
		UseShortOptionHandling: true,
		// --netif_add values hold commas of their own; list values are split by the
		// commands that want it (splitList).
		DisableSliceFlagSeparator: true,
		ExitErrHandler:            func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageErrorf("%v", err)
		},
		Flags:    globals,
		Commands: cmds,
	}
	for _, c := range app.Commands {
		prepare(c)
	}
	return app
}

// prepare wires the conventions every command shares: usage errors map to exit 20, and the
// help text ends with the exit status table pointer.
func prepare(c *cli.Command) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		if c.Name == "migrate" {
			return &container.MigrateError{Code: container.MigrateUsage, Err: usageErrorf("%s: %v", c.Name, err)}
		}
		return usageErrorf("%s: %v", c.Name, err)
	}
	if c.Action != nil && c.Name != "exit-codes" {
		action := c.Action
		c.Action = func(ctx *cli.Context) error {
			if geteuid() != 0 {
				return fmt.Errorf("%s: %w: vectl must run as root", c.Name, container.ErrPermission)
			}
			return action(ctx)
		}
	}
	for _, sc := range c.Subcommands {
		prepare(sc)
	}
}

// manager builds the container manager from the global flags.
func manager(c *cli.Context) (*container.Manager, error) {
	timeout, err := parseTimeout(c.String("lock-timeout"))
	if err != nil {
		return nil, err
	}
	nc, err := readNodeConfig(nodeConfigPath)
	if err != nil {
		return nil, err
	}
	cgm := c.String("cgroup-manager")
	if cgm == "" {
		cgm = nc.CgroupManager
	}
	if nc.CriuLogLevel < 0 || nc.CriuLogLevel > 4 {
		return nil, fmt.Errorf("%s: %w: criu_log_level %d: use 1 (errors) to 4 (debug), or leave it out for 2", nodeConfigPath, container.ErrInvalidValue, nc.CriuLogLevel)
	}
	if cgm != "" && cgm != container.CgroupFS && cgm != container.CgroupSystemd {
		return nil, fmt.Errorf("%w: cgroup manager %q: use fs or systemd", container.ErrInvalidValue, cgm)
	}
	if err := container.ValidateCgroupParent(c.String("cgroup-parent"), cgm); err != nil {
		return nil, err
	}
	vzConfDir := c.String("vz-conf-dir")
	switch {
	case vzConfDir == "none":
		vzConfDir = ""
	case !filepath.IsAbs(vzConfDir):
		return nil, fmt.Errorf("%w: --vz-conf-dir %q: use an absolute path or none", container.ErrInvalidValue, vzConfDir)
	}
	return container.New(container.Options{
		CgroupManager: cgm,
		CgroupParent:  c.String("cgroup-parent"),
		Root:          c.String("root"),
		RunDir:        c.String("run-dir"),
		LogDir:        c.String("log-dir"),
		TemplateDir:   c.String("template-dir"),
		LockTimeout:   timeout,
		NetworkConfig: c.String("network-config"),
		CNIPath:       c.String("cni-path"),
		FirewallTable: c.String("firewall-table"),
		ProfileDir:    c.String("profile-dir"),
		VZConfDir:     vzConfDir,
		CriuLogLevel:  nc.CriuLogLevel,
		Warn: func(msg string) {
			fmt.Fprintf(c.App.ErrWriter, "%s: warning: %s\n", c.App.Name, msg)
		},
	}), nil
}

// nodeConfigPath holds node-wide settings that are not per VE.
const nodeConfigPath = "/etc/vectl/vectl.json"

// nodeConfig is /etc/vectl/vectl.json.
type nodeConfig struct {
	CgroupManager string `json:"cgroup_manager"`
	// UserNS is the node's default for create --userns ("yes" or "no"; "" is yes).
	UserNS string `json:"userns"`
	// StopMode is what boot --stop does to running VEs: "stop" (default) or "suspend".
	StopMode string `json:"stop_mode"`
	// CriuLogLevel is the level of CRIU's logs (container.Options.CriuLogLevel).
	CriuLogLevel int `json:"criu_log_level"`
}

// readNodeConfig reads the node's settings; a missing file means the defaults.
func readNodeConfig(path string) (nodeConfig, error) {
	var nc nodeConfig
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nc, nil
	}
	if err != nil {
		return nc, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&nc); err != nil {
		return nc, fmt.Errorf("%s: %w", path, err)
	}
	return nc, nil
}

// parseTimeout accepts whole seconds ("30", as vzctl does) or a Go duration ("500ms").
func parseTimeout(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: lock timeout %q: use seconds (30) or a duration (500ms)", container.ErrInvalidValue, s)
	}
	return d, nil
}

// veManager is the start of most command bodies: exactly one VE id, and the manager.
func veManager(c *cli.Context) (string, *container.Manager, error) {
	id, err := oneID(c)
	if err != nil {
		return "", nil, err
	}
	m, err := manager(c)
	return id, m, err
}

// oneID checks that a command got exactly one VE id and returns it.
func oneID(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", usageErrorf("%s: expected one VE id, got %d arguments (see vectl %s --help)", c.Command.Name, c.NArg(), c.Command.Name)
	}
	return c.Args().First(), nil
}

// reorderArgs moves a command's flags in front of its positional arguments, so that
// vzctl-style command lines (vectl set 101 --ram 1G --save) parse: urfave/cli/v2 stops
// parsing flags at the first positional argument. Commands listed in passThrough keep
// everything after their first N positional arguments verbatim (exec ID CMD...).
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	out := []string{args[0]}
	i := 1
	for i < len(args) && isFlag(args[i]) {
		out = append(out, args[i])
		if takesValue(app.Flags, args[i]) && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
		i++
	}
	cmds := app.Commands
	for i < len(args) {
		name := args[i]
		if name == "help" || name == "h" {
			return append(out, args[i:]...), nil
		}
		cmd := findCommand(cmds, name)
		if cmd == nil {
			return nil, usageErrorf("unknown command %q (see vectl --help)", name)
		}
		out = append(out, name)
		i++
		if len(cmd.Subcommands) > 0 {
			if i < len(args) && !isFlag(args[i]) {
				cmds = cmd.Subcommands
				continue
			}
			return append(out, args[i:]...), nil
		}
		keep := passThrough[cmd.Name]
		var flags, pos []string
		for ; i < len(args); i++ {
			a := args[i]
			if keep > 0 && len(pos) >= keep {
				pos = append(pos, args[i:]...)
				break
			}
			if a == "--" {
				pos = append(pos, args[i+1:]...)
				break
			}
			if isFlag(a) {
				flags = append(flags, a)
				if takesValue(cmd.Flags, a) && i+1 < len(args) {
					flags = append(flags, args[i+1])
					i++
				}
				continue
			}
			pos = append(pos, a)
		}
		out = append(out, flags...)
		if len(pos) > 0 {
			out = append(out, "--")
			out = append(out, pos...)
		}
		return out, nil
	}
	return out, nil
}

// passThrough names commands whose arguments after the first N positional ones belong to
// another program.
var passThrough = map[string]int{"exec": 1}

func isFlag(a string) bool { return len(a) > 1 && a[0] == '-' }

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether the flag in arg ("--ram", "-o") consumes the next argument.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				tv, ok := f.(cli.DocGenerationFlag)
				return ok && tv.TakesValue()
			}
		}
	}
	return false
}
