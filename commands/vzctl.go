package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/resources"
	"github.com/vectl/vectl/template"
)

// This file is the vzctl personality: vectl run under the name vzctl (make install links
// it) parses vzctl 4.11's command line (global --quiet/--verbose/--skiplock, getopt-style
// options), prints vzctl's messages and exits with vzctl's statuses (vzerror.h). The work
// is done by vectl's own commands; what differs from the vectl personality is listed in the
// README's compatibility table.

// VzctlVersion is the vzctl release whose behaviour the personality follows.
const VzctlVersion = "4.11.1"

// vzctl's exit statuses (vzerror.h) that the personality returns itself.
const (
	vzExecError      = 8
	vzNoVEConfig     = 14
	vzSyntax         = 20
	vzInvalidValue   = 21
	vzNotRunning     = 31
	vzRunning        = 32
	vzFSNotMounted   = 40
	vzFSMounted      = 41
	vzDQOn, vzDQOff  = 60, 66
	vzDQInit         = 61
	vzCreateSnapshot = 156
)

func vzctlUsage(w io.Writer) {
	fmt.Fprintf(w, `vzctl version %s
Copyright (C) 2000-2013, Parallels, Inc.
This program may be distributed under the terms of the GNU GPL License.
(vectl %s: vzctl's command line on a stock kernel; see vectl(8) for the differences)

Usage: vzctl [options] <command> <ctid> [parameters]

vzctl create <ctid> [--ostemplate <name>] [--config <name>]
   [--layout overlay|copy|image] [--hostname <name>] [--name <name>] [--ipadd <addr>]
   [--diskspace <kbytes>] [--diskinodes <NUM>]
vzctl start <ctid> [--force] [--wait]
vzctl destroy | mount | umount | stop | restart | status <ctid>
vzctl console <ctid> [ttyno]
vzctl enter <ctid> [--exec <command> [arg ...]]
vzctl exec | exec2 | exec3 <ctid> <command> [arg ...]
vzctl runscript <ctid> <script>
vzctl suspend | resume <ctid> [--dumpfile <name>]
vzctl chkpnt <ctid> [--suspend | --resume | --dump | --kill] [--dumpfile <name>]
vzctl restore <ctid> [--dumpfile <name>]
vzctl set <ctid> [--save] [--force] [--setmode restart|ignore]
   [--ram <bytes>[KMGTPB]] [--swap <bytes>[KMGTPB]]
   [--ipadd <addr>] [--ipdel <addr>|all] [--hostname <name>]
   [--nameserver <addr>] [--searchdomain <name>]
   [--onboot yes|no] [--bootorder <N>]
   [--cpuunits <N>] [--cpulimit <N>] [--cpus <N>]
   [--cpumask <cpus>] [--nodemask <nodes>]
   [--diskspace <soft>[:<hard>]] [--diskinodes <soft>[:<hard>]]
   [--netif_add <ifname[,mac,host_ifname,host_mac,bridge]]>]
   [--netif_del <ifname>]
   [--applyconfig <name>] [--name <vename>] [--description <text>]
   [--ioprio <N>] [--iolimit <N>] [--iopslimit <N>]
   [--stop-timeout <seconds>]
   [--numproc N[:N]] [--numfile N[:N]] [--physpages P[:P]] [--swappages P[:P]]
`, VzctlVersion, Version)
}

// vzctlRun is one vzctl invocation.
type vzctlRun struct {
	s       Streams
	quiet   bool
	private string // the VE's private area
	cmd     string
	id      string
	args    []string
}

func (r *vzctlRun) say(format string, a ...any) {
	if !r.quiet {
		fmt.Fprintf(r.s.Out, format+"\n", a...)
	}
}

func (r *vzctlRun) fail(code int, format string, a ...any) int {
	fmt.Fprintf(r.s.Err, format+"\n", a...)
	return code
}

// vectl runs one of vectl's own commands and returns its exit status, printing its error
// as vzctl would (the message alone, no "vectl:" prefix).
func (r *vzctlRun) vectl(args ...string) int {
	s := r.s
	if args[0] != "console" && args[0] != "enter" {
		// vzctl prints its own progress lines instead of vectl's.
		s.Out = io.Discard
	}
	code, msg := runApp(append([]string{"vectl"}, args...), s)
	if msg != "" {
		fmt.Fprintln(r.s.Err, msg)
	}
	return code
}

var vzctlCommands = map[string]bool{
	"create": true, "destroy": true, "delete": true, "mount": true, "umount": true,
	"start": true, "stop": true, "restart": true, "status": true, "set": true,
	"exec": true, "exec2": true, "exec3": true, "enter": true, "console": true,
	"runscript": true, "suspend": true, "chkpnt": true, "resume": true, "restore": true,
	"quotaon": true, "quotaoff": true, "quotainit": true,
	"snapshot": true, "snapshot-switch": true, "snapshot-delete": true, "snapshot-list": true,
	"snapshot-mount": true, "snapshot-umount": true, "convert": true, "compact": true,
}

// The options of vzctl's commands (getopt_long tables), shared by the parser, the shell
// completion and the man page.
var (
	vzctlCreateLongs = []longOpt{{"ostemplate", true, ""}, {"config", true, ""}, {"layout", true, ""},
		{"hostname", true, ""}, {"name", true, ""}, {"ipadd", true, ""}, {"diskspace", true, ""},
		{"diskinodes", true, ""}, {"private", true, ""}, {"root", true, ""},
		{"local_uid", true, ""}, {"local_gid", true, ""}, {"description", true, ""},
		{"userns", true, ""}, {"nesting", true, ""}}
	vzctlStartLongs = []longOpt{{"force", false, ""}, {"skip_ve_setup", false, ""}, {"wait", false, ""},
		{"skip-fsck", false, ""}, {"skip-remount", false, ""}, {"fast", false, ""}, {"skip-umount", false, ""}}
	vzctlStopLongs = []longOpt{{"fast", false, ""}, {"skip-umount", false, ""}, {"force", false, ""},
		{"wait", false, ""}, {"skip_ve_setup", false, ""}, {"skip-fsck", false, ""}, {"skip-remount", false, ""}}
	vzctlChkpntLongs = []longOpt{{"dump", false, ""}, {"suspend", false, ""}, {"resume", false, ""},
		{"kill", false, ""}, {"skip_arpdetect", false, ""}, {"flags", true, ""},
		{"context", true, ""}, {"dumpfile", true, ""}}
	vzctlRestoreLongs = []longOpt{{"undump", false, ""}, {"kill", false, ""}, {"resume", false, ""},
		{"skip_arpdetect", false, ""}, {"context", true, ""}, {"dumpfile", true, ""},
		{"skip-fsck", false, ""}, {"skip-remount", false, ""}}
)

// vzctlOptions are the options each vzctl command takes.
func vzctlOptions(cmd string) []longOpt {
	switch cmd {
	case "create":
		return vzctlCreateLongs
	case "start":
		return vzctlStartLongs
	case "stop", "restart":
		return vzctlStopLongs
	case "chkpnt", "suspend":
		return vzctlChkpntLongs
	case "restore", "resume":
		return vzctlRestoreLongs
	case "set":
		return vzctlSetLongs()
	case "enter":
		return []longOpt{{"exec", true, ""}}
	case "snapshot":
		return []longOpt{{"id", true, ""}, {"uuid", true, ""}, {"name", true, ""}, {"description", true, ""},
			{"skip-suspend", false, ""}, {"skip-config", false, ""}}
	case "snapshot-switch":
		return []longOpt{{"id", true, ""}, {"uuid", true, ""}, {"skip-resume", false, ""}, {"must-resume", false, ""},
			{"skip-config", false, ""}}
	case "snapshot-delete", "snapshot-umount":
		return []longOpt{{"id", true, ""}, {"uuid", true, ""}}
	case "snapshot-mount":
		return []longOpt{{"id", true, ""}, {"uuid", true, ""}, {"target", true, ""}}
	case "snapshot-list":
		return []longOpt{{"id", true, ""}, {"uuid", true, ""}, {"output", true, "o"}, {"no-header", false, "H"},
			{"list", false, "L"}}
	}
	return nil
}

// VzctlMain runs the vzctl personality with args (args[0] is the program name).
func VzctlMain(args []string, s Streams) int {
	r := &vzctlRun{s: s}
	a := args[1:]
loop:
	for len(a) > 0 {
		switch a[0] {
		case "--verbose", "--skiplock":
			// vectl's locks are always taken: a second vectl waits for the first
			// (--lock-timeout) instead of skipping it.
		case "--quiet":
			r.quiet = true
		case "--version":
			fmt.Fprintf(s.Out, "vzctl version %s\n", VzctlVersion)
			return 0
		default:
			break loop
		}
		a = a[1:]
	}
	if len(a) == 0 {
		vzctlUsage(s.Err)
		return vzSyntax
	}
	r.cmd = a[0]
	if r.cmd == "--help" {
		vzctlUsage(s.Out)
		return 0
	}
	if !vzctlCommands[r.cmd] {
		return r.fail(vzSyntax, "Bad command: %s", r.cmd)
	}
	if len(a) < 2 {
		return r.fail(vzInvalidValue, "CT ID missing")
	}
	if r.cmd == "start" && a[1] == "destroy" && len(a) == 3 {
		// libvirt 9.0's undefine runs "vzctl start destroy ID" (a bug of its own): taken
		// as destroy, since no VE called "destroy" could be started that way anyway.
		r.cmd, a = "destroy", a[1:]
	}
	r.id, r.args = a[1], a[2:]
	if container.ValidateID(r.id) != nil {
		return r.fail(vzInvalidValue, "Bad CT ID %s", r.id)
	}
	if geteuid() != 0 {
		return r.fail(12, "Unable to open /dev/vzctl: Permission denied (vzctl must run as root)")
	}
	var st container.Entry
	intake := 0
	err := withManager(s, func(_ context.Context, m *container.Manager) error {
		var err error
		if st, err = m.Status(r.id); err != nil {
			return err
		}
		r.private = m.PrivateDir(st.Status.ID)
		if st.Status.Exist && st.Config != nil {
			r.id = st.Status.ID
			var took bool
			if intake, took = vzConfIntake(m, s, r.id, r.quiet); took {
				st, err = m.Status(r.id) // the changes taken in
			}
		}
		return err
	})
	if err != nil {
		code, msg := exitStatus(err)
		return r.fail(code, "%s", msg)
	}
	if intake != 0 {
		return intake
	}
	if !st.Status.Exist && r.cmd != "create" && r.cmd != "status" && r.cmd != "set" {
		return r.fail(vzNoVEConfig, "Container config file does not exist")
	}
	return r.run(st)
}

func (r *vzctlRun) run(st container.Entry) int {
	s := st.Status
	switch r.cmd {
	case "create":
		return r.create()
	case "destroy", "delete":
		if len(r.args) > 0 {
			return r.extra()
		}
		switch {
		case s.Running:
			r.say("Container is currently running. Stop it first.")
			return vzRunning
		case s.Mounted:
			r.say("Container is currently mounted (umount first)")
			return vzFSMounted
		}
		r.say("Destroying container private area: %s", r.private)
		if code := r.vectl("destroy", "--force", r.id); code != 0 { // vzctl destroys a CT with its snapshots
			return code
		}
		r.say("Container private area was destroyed")
		return 0
	case "mount":
		if len(r.args) > 0 {
			return r.extra()
		}
		if s.Mounted {
			return r.fail(0, "Container is already mounted")
		}
		if code := r.vectl("mount", r.id); code != 0 {
			return code
		}
		r.say("Container is mounted")
		return 0
	case "umount":
		if len(r.args) > 0 {
			return r.extra()
		}
		switch {
		case s.Running:
			return r.fail(vzRunning, "Container is running -- stop it first")
		case !s.Mounted:
			return r.fail(vzFSNotMounted, "CT is not mounted")
		}
		if code := r.vectl("umount", r.id); code != 0 {
			return code
		}
		r.say("Container is unmounted")
		return 0
	case "start":
		return r.start(st)
	case "stop":
		return r.stop(s)
	case "restart":
		r.say("Restarting container")
		if s.Running && (st.Config == nil || !st.Config.Disabled) {
			return r.restart()
		}
		if s.Running {
			if code := r.stop(s); code != 0 {
				return code
			}
			st.Status.Running = false
		}
		return r.start(st)
	case "status":
		if len(r.args) > 0 {
			return r.extra()
		}
		return r.status(s)
	case "set":
		return r.set(st)
	case "exec", "exec2", "exec3":
		return r.exec(s)
	case "enter":
		return r.enter(s)
	case "console":
		if len(r.args) > 1 {
			return r.fail(vzSyntax, "Invalid syntax: too many parameters!")
		}
		if len(r.args) == 1 {
			if n, err := strconv.Atoi(r.args[0]); err != nil || n < 0 {
				return r.fail(vzInvalidValue, "Invalid tty number: %s", r.args[0])
			}
		}
		return r.vectl("console", r.id)
	case "runscript":
		return r.runscript(s)
	case "suspend", "chkpnt":
		return r.chkpnt()
	case "resume", "restore":
		return r.restore()
	case "quotaon", "quotaoff", "quotainit":
		// vectl enforces disk limits through the image layout, never through quota.
		r.say("Disk quota is not enabled, skipping operation")
		return map[string]int{"quotaon": vzDQOn, "quotaoff": vzDQOff, "quotainit": vzDQInit}[r.cmd]
	}
	if strings.HasPrefix(r.cmd, "snapshot") {
		return r.snapshot()
	}
	return r.fail(vzCreateSnapshot, "%s: not supported by vectl (no ploop, no layout conversion)", r.cmd)
}

// snapshot runs vzctl's snapshot commands with vzctl's messages; UUIDs are printed in
// braces, as vzctl prints them.
func (r *vzctlRun) snapshot() int {
	var opts []option
	var rest []string
	var code int
	if r.cmd == "snapshot-list" {
		opts, rest, code = r.parseShort("Ho:L", vzctlOptions(r.cmd))
	} else {
		opts, rest, code = r.parse(vzctlOptions(r.cmd))
	}
	if code != 0 {
		return code
	}
	if len(rest) > 0 {
		r.args = rest
		return r.extra()
	}
	args := []string{r.cmd}
	uuid, fields, noHeader := "", "", false
	for _, o := range opts {
		if o.long == "" {
			o.long = map[string]string{"o": "output", "H": "no-header", "L": "list-fields"}[o.key]
		}
		if o.long == "list-fields" {
			listSnapshotFields(r.s.Out)
			return 0
		}
		switch o.long {
		case "id", "uuid":
			uuid = o.arg
			args = append(args, "--id", o.arg)
		case "output":
			fields = o.arg
		case "no-header":
			noHeader = true
		case "name", "description", "target":
			args = append(args, "--"+o.long, o.arg)
		default:
			args = append(args, "--"+o.long)
		}
	}
	switch r.cmd {
	case "snapshot-list":
		if fields == "" {
			fields = "parent_uuid,current,uuid,date,name"
		}
		err := withManager(r.s, func(_ context.Context, m *container.Manager) error {
			return listSnapshots(r.s.Out, m, r.id, uuid, fields, noHeader, false, true)
		})
		if err != nil {
			c, msg := exitStatus(err)
			return r.fail(c, "%s", msg)
		}
		return 0
	case "snapshot":
		if uuid == "" {
			uuid = container.NewUUID()
			args = append(args, "--id", uuid)
		}
		u, _ := container.NormalizeUUID(uuid)
		r.say("Creating snapshot {%s}", u)
		if code := r.vectl(append(args, r.id)...); code != 0 {
			return code
		}
		r.say("Snapshot {%s} has been successfully created", u)
		return 0
	case "snapshot-switch", "snapshot-delete", "snapshot-mount", "snapshot-umount":
		if uuid == "" {
			return r.fail(vzSyntax, "Invalid syntax: snapshot uuid is not specified (--id)")
		}
		u, _ := container.NormalizeUUID(uuid)
		verb := map[string]string{"snapshot-switch": "Switching to", "snapshot-delete": "Deleting",
			"snapshot-mount": "Mounting", "snapshot-umount": "Unmounting"}[r.cmd]
		r.say("%s snapshot {%s}", verb, u)
		return r.vectl(append(args, r.id)...)
	}
	return r.fail(vzSyntax, "Invalid command %s", r.cmd)
}

// options parses the command's options and refuses words left over.
func (r *vzctlRun) options(longs []longOpt) ([]option, int) {
	opts, rest, code := r.parse(longs)
	if code == 0 && len(rest) > 0 {
		r.args = rest
		code = r.extra()
	}
	return opts, code
}

func (r *vzctlRun) extra() int {
	return r.fail(vzSyntax, "Invalid non-option argument(s): %s", strings.Join(r.args, " "))
}

// parseShort is parse with short options too (snapshot-list -H -o).
func (r *vzctlRun) parseShort(short string, longs []longOpt) ([]option, []string, int) {
	opts, rest, err := getoptLong("vzctl", r.args, short, longs)
	if err != nil {
		return nil, nil, r.fail(vzSyntax, "%v", err)
	}
	return opts, rest, 0
}

// parse reads a command's options with getopt_long. A bad option is vzctl's exit 20, but
// 21 for set and create, whose parser vzctl shares with the config file's.
func (r *vzctlRun) parse(longs []longOpt) ([]option, []string, int) {
	opts, rest, err := getoptLong("vzctl", r.args, "", longs)
	if err != nil {
		code := vzSyntax
		if r.cmd == "set" || r.cmd == "create" {
			code = vzInvalidValue
		}
		return nil, nil, r.fail(code, "%v", err)
	}
	return opts, rest, 0
}

func (r *vzctlRun) create() int {
	longs := vzctlCreateLongs
	opts, code := r.options(longs)
	if code != 0 {
		return code
	}
	args := []string{"create", r.id}
	var resArgs []string
	tmpl := ""
	for _, o := range opts {
		switch o.long {
		case "private", "root":
			return r.fail(vzInvalidValue, "--%s: vectl keeps VE_%s under its root (see vzlist -o %s); a path of your own is not supported",
				o.long, strings.ToUpper(o.long), o.long)
		case "local_uid", "local_gid":
			// vectl gives every VE its own id range (create --userns); the
			// host uid/gid of a VE's root is not chosen here.
		case "layout":
			l := o.arg
			switch l {
			case "simfs":
				l = container.LayoutOverlay
			case "ploop":
				l = "image"
			}
			if i := strings.IndexByte(l, ':'); i > 0 {
				l = l[:i]
			}
			args = append(args, "--layout", l)
		case "diskspace", "diskinodes":
			v, err := vzctlLimit(o.long, o.arg)
			if err != nil {
				return r.fail(vzInvalidValue, "Bad parameter for --%s: %s", o.long, o.arg)
			}
			resArgs = append(resArgs, "--"+o.long, v)
		case "ostemplate":
			tmpl = o.arg
		case "name":
			// A name equal to the id adds nothing (libvirt passes --name ID).
			if o.arg != r.id {
				args = append(args, "--name", o.arg)
			}
		default:
			args = append(args, "--"+o.long, o.arg)
		}
	}
	def, fallback := "", false
	if invalid := template.ValidateName(tmpl) != nil; invalid || libvirtPointer(tmpl) {
		withManager(r.s, func(_ context.Context, m *container.Manager) error {
			if !invalid {
				if _, err := m.Template(tmpl); err == nil {
					return nil // a cached template has that name
				}
			}
			def, fallback = m.VZGlobal("DEF_OSTEMPLATE"), true
			return nil
		})
	}
	if fallback {
		// No template, or none that could be one (libvirt 9.0 passes the bytes of a
		// pointer): vz.conf's DEF_OSTEMPLATE, as vzctl does without --ostemplate.
		if tmpl != "" {
			fmt.Fprintf(r.s.Err, "Warning: --ostemplate %q is not a template name; using DEF_OSTEMPLATE %q\n", tmpl, def)
		}
		tmpl = def
	}
	if tmpl != "" {
		args = append(args, "--ostemplate", tmpl)
	}
	r.say("Creating container private area (%s)", tmpl)
	if code := r.vectl(args...); code != 0 {
		return code
	}
	if len(resArgs) > 0 {
		if code := r.vectl(append([]string{"set", r.id, "--save"}, resArgs...)...); code != 0 {
			return code
		}
	}
	r.say("Container private area was created")
	return 0
}

func (r *vzctlRun) start(st container.Entry) int {
	opts, code := r.options(vzctlStartLongs)
	if code != 0 {
		return code
	}
	args := []string{"start", r.id}
	for _, o := range opts {
		switch {
		case vzctlNotFor("start", o.long):
			return r.fail(vzSyntax, "Option --%s is not applicable to start command", o.long)
		case o.long == "wait", o.long == "force":
			args = append(args, "--"+o.long)
		}
	}
	if st.Status.Running {
		return r.fail(vzRunning, "Container is already running")
	}
	if !slices.Contains(args, "--force") && st.Config != nil && st.Config.Disabled {
		return r.fail(vzStartDisabled, "Container start disabled")
	}
	r.say("Starting container...")
	if code := r.vectl(args...); code != 0 {
		return code
	}
	r.say("Container start in progress...")
	return 0
}

func (r *vzctlRun) stop(s container.Status) int {
	opts, code := r.options(vzctlStopLongs)
	if code != 0 {
		return code
	}
	args := []string{"stop", r.id}
	for _, o := range opts {
		switch {
		case r.cmd == "stop" && vzctlNotFor("stop", o.long):
			return r.fail(vzSyntax, "Option --%s is not applicable to stop command", o.long)
		case o.long == "fast":
			args = append(args, "--fast")
		}
	}
	if !s.Running {
		// vzctl: stopping a stopped container is not an error.
		fmt.Fprintln(r.s.Err, "Unable to stop: container is not running")
		return 0
	}
	r.say("Stopping container ...")
	if code := r.vectl(args...); code != 0 {
		return code
	}
	r.say("Container was stopped")
	r.say("Container is unmounted")
	return 0
}

// restart is vzctl restart of a running VE: one vectl restart, so that a VE run by a
// foreground vectl (a systemd unit's) is started again by that vectl and stays in its unit.
// The messages are vzctl's for a stop and a start.
func (r *vzctlRun) restart() int {
	opts, code := r.options(vzctlStopLongs)
	if code != 0 {
		return code
	}
	args := []string{"restart", r.id}
	for _, o := range opts {
		if o.long == "fast" || o.long == "wait" || o.long == "force" {
			args = append(args, "--"+o.long)
		}
	}
	r.say("Stopping container ...")
	if code := r.vectl(args...); code != 0 {
		return code
	}
	r.say("Container was stopped")
	r.say("Container is unmounted")
	r.say("Starting container...")
	r.say("Container start in progress...")
	return 0
}

func (r *vzctlRun) status(s container.Status) int {
	suspended := ""
	if s.Exist && !s.Running && s.Suspended {
		suspended = " suspended"
	}
	fmt.Fprintf(r.s.Out, "CTID %s %s%s\n", r.id, statusWords(s), suspended)
	return 0
}

// vzctlShell runs vzctl exec's command line as vzctl does: bash -c, or sh -c where the VE
// has no bash.
const vzctlShell = `if [ -x /bin/bash ]; then exec /bin/bash "$@"; fi; exec /bin/sh "$@"`

func (r *vzctlRun) exec(s container.Status) int {
	var argv []string
	switch {
	case r.cmd == "exec3":
		if len(r.args) == 0 {
			return r.fail(vzSyntax, "No command specified")
		}
		argv = r.args
	case len(r.args) == 0 || r.args[0] == "-":
		// The commands come on standard input.
		argv = []string{"/bin/sh", "-c", vzctlShell, "vzctl"}
	default:
		var b strings.Builder
		for _, a := range r.args {
			if a == "" {
				a = "''"
			}
			b.WriteString(a + " ")
		}
		argv = []string{"/bin/sh", "-c", vzctlShell, "vzctl", "-c", b.String()}
	}
	code := vzNotRunning
	if s.Running {
		code = r.execIn(argv, nil)
	} else {
		fmt.Fprintln(r.s.Err, "Container is not running")
	}
	if r.cmd == "exec" && code != 0 {
		return vzExecError
	}
	return code
}

// execIn runs argv in the VE with vzctl's environment; stdin replaces the standard input
// when it is not nil.
func (r *vzctlRun) execIn(argv []string, stdin *os.File) int {
	code := 0
	err := withManager(r.s, func(ctx context.Context, m *container.Manager) error {
		o, err := streamsOf(r.s)
		if err != nil {
			return err
		}
		if stdin != nil {
			o.Stdin = stdin
		}
		o.Args = argv
		o.Env = []string{"HOME=/", "TERM=linux"}
		code, err = m.Exec(ctx, r.id, o)
		return err
	})
	if err != nil {
		c, msg := exitStatus(err)
		return r.fail(c, "%s", msg)
	}
	return code
}

func (r *vzctlRun) enter(s container.Status) int {
	if len(r.args) > 0 && r.args[0] != "--exec" {
		return r.fail(vzSyntax, "Invalid syntax: enter takes --exec <command> [arg ...]")
	}
	if !s.Running {
		return r.fail(vzNotRunning, "Container is not running")
	}
	code := 0
	err := withManager(r.s, func(ctx context.Context, m *container.Manager) error {
		o, err := streamsOf(r.s)
		if err != nil {
			return err
		}
		if len(r.args) > 0 {
			// enter --exec CMD [ARG...]: CMD runs in the shell's terminal, then the shell
			// stays, as vzctl's enter does.
			o.Args = r.args[1:]
			if len(o.Args) == 0 {
				return fmt.Errorf("%w: enter --exec needs a command", errUsage)
			}
		}
		code, err = m.Enter(ctx, r.id, o)
		return err
	})
	if err != nil {
		c, msg := exitStatus(err)
		return r.fail(c, "%s", msg)
	}
	return code
}

func (r *vzctlRun) runscript(s container.Status) int {
	if len(r.args) != 1 {
		return r.fail(vzSyntax, "Invalid syntax: runscript takes one script file")
	}
	f, err := os.Open(r.args[0])
	if err != nil {
		return r.fail(11, "Script %s not found: %v", r.args[0], errors.Unwrap(err))
	}
	defer f.Close()
	if s.Running {
		return r.execIn([]string{"/bin/sh", "-c", vzctlShell, "vzctl", "-s"}, f)
	}
	// A stopped VE: its root is set up without its init, the script runs, and it is torn
	// down again.
	code := 0
	err = withManager(r.s, func(ctx context.Context, m *container.Manager) error {
		o, err := streamsOf(r.s)
		if err != nil {
			return err
		}
		code, err = m.RunScript(ctx, r.id, f, o.Stdout, o.Stderr)
		return err
	})
	if err != nil {
		c, msg := exitStatus(err)
		return r.fail(c, "%s", msg)
	}
	return code
}

func (r *vzctlRun) chkpnt() int {
	longs := vzctlChkpntLongs
	opts, code := r.options(longs)
	if code != 0 {
		return code
	}
	args, sub := []string{"chkpnt", r.id}, ""
	for _, o := range opts {
		switch o.long {
		case "dump", "suspend", "resume", "kill":
			if sub != "" {
				return r.fail(vzSyntax, "Invalid syntax: only one sub command may be used")
			}
			sub = o.long
		case "dumpfile":
			args = append(args, "--dumpfile", o.arg)
		}
	}
	switch sub {
	case "suspend":
		r.say("Setting up checkpoint...")
		r.say("\tsuspend...")
		return r.vectl("freeze", r.id)
	case "resume":
		r.say("Resuming...")
		return r.vectl("thaw", r.id)
	case "dump":
		args = append(args, "--leave-running")
	case "kill":
		r.say("Killing...")
		return r.vectl("stop", "--fast", r.id)
	}
	r.say("Setting up checkpoint...")
	if code := r.vectl(args...); code != 0 {
		return code
	}
	r.say("Checkpointing completed successfully")
	return 0
}

func (r *vzctlRun) restore() int {
	longs := vzctlRestoreLongs
	opts, code := r.options(longs)
	if code != 0 {
		return code
	}
	args := []string{"restore", r.id}
	for _, o := range opts {
		switch o.long {
		case "dumpfile":
			args = append(args, "--dumpfile", o.arg)
		case "resume":
			return r.vectl("thaw", r.id)
		case "kill":
			return r.vectl("stop", "--fast", r.id)
		}
	}
	r.say("Restoring container ...")
	if code := r.vectl(args...); code != 0 {
		return code
	}
	r.say("Restoring completed successfully")
	return 0
}

// vzctlSetLongs are vzctl set's options that the personality takes.
var vzctlSetLongs = sync.OnceValue(func() []longOpt {
	withArg := []string{"applyconfig", "ipadd", "ip", "ipdel", "hostname", "nameserver",
		"searchdomain", "cpuunits", "cpuweight", "cpulimit", "cpus", "cpumask", "nodemask", "onboot",
		"setmode", "diskspace", "diskinodes", "netif_add", "netif_del", "name", "ioprio",
		"iolimit", "iopslimit", "description", "bootorder", "ram", "swap", "stop-timeout",
		"numproc", "numfile", "physpages", "swappages", "userns", "nesting", "disabled", "capability",
		"meminfo", "devices", "devnodes", "features", "userpasswd"}
	withArg = append(withArg, resources.UBCNames...)
	out := []longOpt{{"save", false, ""}, {"force", false, ""}}
	for _, n := range withArg {
		out = append(out, longOpt{n, true, ""})
	}
	return out
})

func (r *vzctlRun) set(st container.Entry) int {
	opts, code := r.options(vzctlSetLongs())
	if code != 0 {
		return code
	}
	if !st.Status.Exist {
		return r.fail(vzNoVEConfig, "Container config file does not exist")
	}
	args := []string{"set", r.id}
	save, restart := false, false
	var passwords [][2]string
	for _, o := range opts {
		name := o.long
		switch name {
		case "userpasswd":
			user, pass, ok := strings.Cut(o.arg, ":")
			if !ok || !userNameRE().MatchString(user) || strings.ContainsAny(pass, "\n\x00") {
				return r.fail(vzInvalidValue, "Bad parameter for --userpasswd: use USER:PASSWORD (USER as useradd takes it)")
			}
			passwords = append(passwords, [2]string{user, pass})
		case "save":
			save = true
			args = append(args, "--save")
		case "force":
		case "setmode":
			switch o.arg {
			case "restart":
				restart = true
			case "ignore":
			default:
				return r.fail(vzInvalidValue, "Bad parameter for --setmode: %s", o.arg)
			}
		case "ip":
			args = append(args, "--ipadd", o.arg)
		case "cpuweight":
			args = append(args, "--cpuunits", o.arg)
		case "netif_add":
			args = append(args, "--netif_add", vzctlNetif(o.arg))
		case "ram", "swap", "diskspace", "diskinodes", "numproc", "numfile", "physpages", "swappages":
			v, err := vzctlLimit(name, o.arg)
			if err != nil {
				return r.fail(vzInvalidValue, "Bad parameter for --%s: %s", name, o.arg)
			}
			switch name {
			case "physpages":
				name = "ram"
			case "swappages":
				name = "swap"
			}
			args = append(args, "--"+name, v)
		default:
			args = append(args, "--"+name, o.arg)
		}
	}
	if len(passwords) > 0 {
		if code := r.userPasswords(st.Status, passwords); code != 0 || len(args) == 2 {
			return code
		}
		st, _ = r.statusOf()
	}
	switch {
	case len(args) == 2:
		return r.fail(vzNotEnoughParams, "Nothing to set")
	case save && len(args) == 3:
		// vzctl set --save alone writes the config file as it is.
		if err := withManager(r.s, func(_ context.Context, m *container.Manager) error {
			return m.SyncVZConf(r.id, func(w string) { fmt.Fprintln(r.s.Err, "Warning: "+w) })
		}); err != nil {
			c, msg := exitStatus(err)
			return r.fail(c, "%s", msg)
		}
		r.say("Saved parameters for CT %s", r.id)
		return 0
	}
	code, msg := runApp(append([]string{"vectl"}, args...), Streams{In: r.s.In, Out: io.Discard, Err: r.s.Err})
	switch {
	case code == 20 && strings.Contains(msg, "--save"):
		// A setting for the next start without --save: vzctl applies nothing and
		// warns; the settings are not kept.
		r.say("WARNING: Settings were not saved to config (use --save flag)")
		return 0
	case code != 0:
		fmt.Fprintln(r.s.Err, msg)
		return code
	}
	if restart && st.Status.Running {
		r.say("Restarting container")
		if c := r.vectl("restart", r.id); c != 0 {
			return c
		}
	}
	if save {
		r.say("Saved parameters for CT %s", r.id)
	} else {
		r.say("WARNING: Settings were not saved to config and will be lost after CT restart (use --save flag)")
	}
	return 0
}

const (
	vzNotEnoughParams = 27
	vzChangePass      = 74
	vzStartDisabled   = 105
)

// userNameRE is what useradd takes as a user name.
var userNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,30}\$?$`) })

// setPasswordScript runs in the VE as sh -c SCRIPT vzctl USER with the password on its
// standard input (never in an argv that ps shows): it adds the user when it does not exist
// (useradd, or busybox's adduser) and sets the password through the VE's own chpasswd, which
// hashes it as the VE's system is configured to.
const setPasswordScript = `u=$1
IFS= read -r p
tool() { if command -v "$1" >/dev/null 2>&1; then "$@"; else busybox "$@"; fi; }
if command -v chpasswd >/dev/null 2>&1; then
	if ! grep -q "^$u:" /etc/passwd; then
		if command -v useradd >/dev/null 2>&1; then useradd -m -s /bin/sh "$u"; else adduser -D "$u"; fi || exit 1
	fi
	printf '%s:%s\n' "$u" "$p" | chpasswd
	exit
fi
# No chpasswd (a busybox system): hash with mkpasswd and write passwd and shadow.
h=$(printf '%s\n' "$p" | tool mkpasswd -m sha512 -P 0) && [ -n "$h" ] || exit 1
if ! grep -q "^$u:" /etc/passwd; then
	id=$(awk -F: 'BEGIN{m=999} $3>m && $3<60000 {m=$3} END{print m+1}' /etc/passwd /etc/group)
	echo "$u:x:$id:$id::/home/$u:/bin/sh" >>/etc/passwd &&
	echo "$u:x:$id:" >>/etc/group && mkdir -p "/home/$u" && chown "$id:$id" "/home/$u" || exit 1
fi
set_field() { # FILE: the user's second field becomes the hash
	awk -F: -v OFS=: -v u="$u" -v h="$h" '$1==u {$2=h; f=1} {print} END{exit !f}' "$1" >"$1.vzctl" &&
	cat "$1.vzctl" >"$1" && rm -f "$1.vzctl"
}
if [ -f /etc/shadow ]; then
	grep -q "^$u:" /etc/shadow || echo "$u:!:$(($(date +%s)/86400)):0:99999:7:::" >>/etc/shadow
	set_field /etc/shadow && awk -F: -v OFS=: -v u="$u" '$1==u && $2!="x" {$2="x"} {print}' /etc/passwd >/etc/passwd.vzctl &&
	cat /etc/passwd.vzctl >/etc/passwd && rm -f /etc/passwd.vzctl
else
	set_field /etc/passwd
fi`

// userPasswords sets passwords inside the VE as vzctl --userpasswd does: in a running VE
// at once; a stopped VE is started for it and stopped again. Nothing is saved in the config.
func (r *vzctlRun) userPasswords(s container.Status, pw [][2]string) int {
	if !s.Running {
		if code := r.vectl("start", r.id, "--force"); code != 0 {
			return code
		}
		defer r.vectl("stop", r.id)
	}
	for _, p := range pw {
		rd, wr, err := os.Pipe()
		if err != nil {
			return r.fail(vzChangePass, "Password change failed: %v", err)
		}
		go func() {
			io.WriteString(wr, p[1]+"\n")
			wr.Close()
		}()
		code := r.execIn([]string{"/bin/sh", "-c", setPasswordScript, "vzctl", p[0]}, rd)
		rd.Close()
		if code != 0 {
			return r.fail(vzChangePass, "Password change failed for user %s (exit %d)", p[0], code)
		}
	}
	return 0
}

// statusOf reads the VE's status again.
func (r *vzctlRun) statusOf() (container.Entry, error) {
	var st container.Entry
	err := withManager(r.s, func(_ context.Context, m *container.Manager) error {
		var err error
		st, err = m.Status(r.id)
		return err
	})
	return st, err
}

// libvirtPointer reports whether s looks like the template name libvirt 9.0's OpenVZ driver
// passes to vzctl create: the bytes of a heap address (its define hands vzctl a struct
// where a string belongs; the bytes seen up to the NUL are an address's), six bytes, the
// last 'U' or 'V' (0x55 or 0x56, the top of a heap address on x86_64). Most such names are
// not even template names; the rest, when no template has that name, are taken the same way.
func libvirtPointer(s string) bool {
	return len(s) == 6 && (s[5] == 'U' || s[5] == 'V')
}

// vzctlNetif turns vzctl's positional --netif_add ifname[,mac,host_ifname,host_mac,bridge]
// into vectl's keyed form; a value already keyed (bridge=...) passes as it is.
func vzctlNetif(v string) string {
	if strings.Contains(v, "=") {
		return v
	}
	parts := strings.Split(v, ",")
	out := []string{parts[0]}
	keys := []string{"", "mac", "host_ifname", "host_mac", "bridge"}
	for i := 1; i < len(parts) && i < len(keys); i++ {
		if parts[i] == "" || keys[i] == "host_mac" {
			continue
		}
		out = append(out, keys[i]+"="+parts[i])
	}
	return strings.Join(out, ",")
}

// vzctlLimit converts a vzctl value with vzctl's suffixes (K M G T; P pages, B bytes) and
// barrier:limit pairs into vectl's form for the parameter: bytes for ram and swap (and
// physpages, swappages, counted in pages), 1K blocks for diskspace, a count for the rest;
// of a pair the limit counts.
func vzctlLimit(name, v string) (string, error) {
	if _, lim, ok := strings.Cut(v, ":"); ok {
		v = lim
	}
	if v == "unlimited" {
		return v, nil
	}
	unit := map[string]int64{"ram": 1, "swap": 1, "physpages": pageSize, "swappages": pageSize,
		"diskspace": resources.KiB}[name]
	mult := int64(1)
	num := v
	if n := len(v); n > 0 {
		switch v[n-1] {
		case 'K', 'k':
			mult = resources.KiB
		case 'M', 'm':
			mult = resources.MiB
		case 'G', 'g':
			mult = resources.GiB
		case 'T', 't':
			mult = resources.TiB
		case 'P', 'p':
			mult = pageSize
		case 'B', 'b':
			mult = 1
		default:
			mult = 0
		}
		if mult != 0 {
			num = v[:n-1]
		} else {
			mult = 1
		}
	}
	n, err := strconv.ParseFloat(num, 64)
	if err != nil || n < 0 || num == "" || strings.ContainsAny(num, "eEinxX+") {
		return "", fmt.Errorf("bad number %q", v)
	}
	if num == v {
		// No suffix: the parameter's own unit.
		mult = max(unit, 1)
	}
	b := n * float64(mult)
	if b > float64(1<<62) {
		return "unlimited", nil
	}
	switch name {
	case "ram", "swap", "physpages", "swappages":
		return strconv.FormatInt(int64(b), 10), nil
	case "diskspace":
		return strconv.FormatInt(int64(b)/resources.KiB, 10), nil
	}
	if num != v && mult != 1 {
		// A count with a size suffix (vzctl allows it): bytes over the unit.
		return strconv.FormatInt(int64(b), 10), nil
	}
	return strconv.FormatInt(int64(n), 10), nil
}

// streamsOf opens the standard streams as files for exec.
func streamsOf(s Streams) (container.ExecOptions, error) {
	var o container.ExecOptions
	var err error
	if o.Stdin, err = fileOf(s.In, "stdin"); err != nil {
		return o, err
	}
	if o.Stdout, err = fileOf(s.Out, "stdout"); err != nil {
		return o, err
	}
	o.Stderr, err = fileOf(s.Err, "stderr")
	return o, err
}

// vzConfKeyOptions maps a key of a VE's vzctl config onto the option of vzctl set that
// takes it in; the keys missing here (VE_ROOT, VE_PRIVATE, VE_LAYOUT, OSTEMPLATE, NETIF,
// DISKINODES) cannot change through the file.
var vzConfKeyOptions = sync.OnceValue(func() map[string]string {
	m := map[string]string{"ONBOOT": "onboot", "BOOTORDER": "bootorder", "PHYSPAGES": "physpages",
		"SWAPPAGES": "swappages", "NUMPROC": "numproc", "NUMFILE": "numfile", "DISKSPACE": "diskspace",
		"CPUUNITS": "cpuunits", "CPULIMIT": "cpulimit", "CPUS": "cpus", "CPUMASK": "cpumask",
		"NODEMASK": "nodemask", "IOPRIO": "ioprio", "IOLIMIT": "iolimit", "IOPSLIMIT": "iopslimit",
		"HOSTNAME": "hostname", "NAME": "name", "DESCRIPTION": "description",
		"STOP_TIMEOUT": "stop-timeout", "NAMESERVER": "nameserver", "SEARCHDOMAIN": "searchdomain",
		"DISABLED": "disabled", "CAPABILITY": "capability", "DEVICES": "devices", "DEVNODES": "devnodes",
		"FEATURES":   "features",
		"IP_ADDRESS": "ipadd"}
	for _, n := range resources.UBCNames {
		m[strings.ToUpper(n)] = n
	}
	return m
})

// vzConfIntake takes in what a client changed in the VE's vzctl config since vectl wrote
// it (vzctl set --save with the new values) and reports what it cannot take in; the file is
// then rewritten from the VE's config. It returns a non-zero vzctl status when taking in
// failed.
// It also says whether the VE's config changed.
func vzConfIntake(m *container.Manager, s Streams, id string, quiet bool) (int, bool) {
	changes, path := m.VZConfChanges(id), m.VZConfPath(id)
	if len(changes) == 0 {
		return 0, false
	}
	args := []string{"--save"}
	for _, kv := range changes {
		opt, ok := vzConfKeyOptions()[kv.Key]
		switch {
		case !ok:
			fmt.Fprintf(s.Err, "Warning: %s: %s=%q was changed outside vectl and cannot be taken in; it is rewritten from the VE's config\n", path, kv.Key, kv.Value)
		case kv.Value == "" && opt != "ipadd" && opt != "nameserver" && opt != "searchdomain":
			fmt.Fprintf(s.Err, "Warning: %s: %s was removed outside vectl; the VE keeps its setting and the line is written again\n", path, kv.Key)
		case opt == "ipadd":
			args = append(args, "--ipdel", "all")
			for _, a := range strings.Fields(kv.Value) {
				args = append(args, "--ipadd", a)
			}
		case opt == "nameserver" || opt == "searchdomain":
			vals := strings.Fields(kv.Value)
			if len(vals) == 0 {
				vals = []string{"inherit"}
			}
			for _, v := range vals {
				args = append(args, "--"+opt, v)
			}
		default:
			args = append(args, "--"+opt, kv.Value)
		}
	}
	sub := &vzctlRun{s: Streams{In: s.In, Out: io.Discard, Err: s.Err}, quiet: true, cmd: "set", id: id, args: args}
	if len(args) > 1 {
		st, _ := m.Status(id)
		if code := sub.set(st); code != 0 {
			fmt.Fprintf(s.Err, "Unable to take in the changes made to %s\n", path)
			return code, false
		}
		if !quiet {
			fmt.Fprintf(s.Out, "Took in the changes made to %s\n", path)
		}
		return 0, true
	}
	m.SyncVZConf(id, nil)
	return 0, false
}
