package commands

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/container/monitor"
	"github.com/vectl/vectl/container/prefault"
)

// startHeap is what a start's process populates of its heap up front (package prefault).
const startHeap = 3 << 19

// monitorArgs is the command line of this binary's hidden monitor command with the same
// global options as this invocation.
func monitorArgs(c *cli.Context) []string { return append(selfArgs(c), monitorCommandName) }

// selfArgs runs this binary with the global options of this invocation (argv without a
// command).
func selfArgs(c *cli.Context) []string {
	args := []string{"/proc/self/exe", "--root", c.String("root"), "--run-dir", c.String("run-dir"),
		"--log-dir", c.String("log-dir"), "--network-config", c.String("network-config"),
		"--firewall-table", c.String("firewall-table"), "--cgroup-parent", c.String("cgroup-parent")}
	if cgm := c.String("cgroup-manager"); cgm != "" {
		args = append(args, "--cgroup-manager", cgm)
	}
	if p := c.String("cni-path"); p != "" {
		args = append(args, "--cni-path", p)
	}
	if t := c.String("template-dir"); t != "" {
		args = append(args, "--template-dir", t)
	}
	return args
}

// monitorCommandName is the hidden command of the per-VE monitor.
const monitorCommandName = "__monitor"

func fileOf(v any, name string) (*os.File, error) {
	if f, ok := v.(*os.File); ok {
		return f, nil
	}
	return nil, fmt.Errorf("%s is not a file", name)
}

func startCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start a VE: its /sbin/init runs as PID 1",
		ArgsUsage: "ID",
		Description: `Mounts the VE's root, gives it new mount, pid, uts, ipc, cgroup and network namespaces
and runs the template's /sbin/init as PID 1 under a small per-VE monitor (this binary, no
central daemon) that holds the console and turns an in-VE reboot into a restart and a
poweroff or halt into a clean stop.

--no-monitor (or set --monitor no --save) runs the VE with no resident process at all: no
console, and an in-VE reboot then means stop.
--foreground runs the monitor in this process until the VE ends (for systemd units): the
console is on the terminal when there is one; SIGTERM, SIGINT and SIGHUP stop the VE through
its own shutdown, other signals go to its init. Its exit status tells how the VE ended:
0 shut down (poweroff, halt, stop), 1 could not start, 2 the init died on its own.
A suspended VE (vectl chkpnt) is restored from its dump, as vzctl does; --skip-restore
drops the dump and boots it afresh.
--wait returns once the VE has booted: systemd guests when systemctl is-system-running
says running or degraded; other inits when /run/vectl-booted exists inside the VE (the
busybox template's rcS creates it last).

EXAMPLES:
   vectl start 101
   vectl start 101 --wait --timeout 60
   vectl start 101 --foreground

EXIT STATUS:
   0 started; 14 no such VE; 32 already running; 43 incomplete VE; 47 no /sbin/init;
   50 mount failed; 133 --wait timed out; 9 locked; 16/17 as vectl restore (a suspended VE);
   105 the VE is disabled (set --disabled yes; --force starts it)`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "return once the VE has booted"},
			&cli.StringFlag{Name: "timeout", Value: "120", Usage: "for --wait: `SECONDS` (or a duration)"},
			&cli.BoolFlag{Name: "no-monitor", Usage: "run without a resident monitor (no console; reboot means stop)"},
			&cli.BoolFlag{Name: "foreground", Aliases: []string{"F"}, Usage: "run the monitor in the foreground until the VE ends"},
			&cli.BoolFlag{Name: "skip-restore", Usage: "a suspended VE: drop its dump and boot it afresh"},
			&cli.BoolFlag{Name: "force", Usage: "start a VE set --disabled yes"},
			// The idle loop's hand-back to a foreground vectl (container/idle's Resume).
			&cli.StringFlag{Name: "resume", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			// A start's process allocates about 1.5 MiB more from here on (2026-12-05).
			prefault.Heap(startHeap)
			id, err := oneID(c)
			if err != nil {
				return err
			}
			timeout, err := parseTimeout(c.String("timeout"))
			if err != nil {
				return err
			}
			if c.String("resume") != "" && !c.Bool("foreground") {
				return usageErrorf("start: --resume is the idle loop's, with --foreground")
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			if c.String("resume") != "" {
				return foreground(c, m, id, timeout)
			}
			if c.Bool("skip-restore") {
				if err := m.DropDump(id); err != nil {
					return err
				}
			} else if m.RestoresAtStart(id) {
				// As vzctl: a start of a checkpointed VE restores it.
				if c.Bool("foreground") || c.Bool("no-monitor") {
					return fmt.Errorf("start %s: %w: the VE is suspended: restore it (vectl restore), or start it afresh with --skip-restore",
						id, container.ErrRestore)
				}
				return restoreVE(c, m, id, container.RestoreOptions{})
			}
			if c.Bool("foreground") {
				return foreground(c, m, id, timeout)
			}
			started := false
			if err := m.Start(c.Context, id, container.StartOptions{
				NoMonitor:   c.Bool("no-monitor"),
				Wait:        c.Bool("wait"),
				WaitTimeout: timeout,
				MonitorArgs: monitorArgs(c),
				Force:       c.Bool("force"),
				// This process stays as the VE's monitor when its constructor forked.
				Become: monitor.Forked(),
				Started: func() {
					started = true
					fmt.Fprintf(c.App.Writer, "VE %s started\n", id)
				},
			}); err != nil {
				return err
			}
			if !started {
				fmt.Fprintf(c.App.Writer, "VE %s started\n", id)
			}
			return nil
		},
	}
}

// foreground runs start --foreground (or goes on with one the idle loop hands back): the
// VE's monitor in this process, whose exit status says how the VE ended.
func foreground(c *cli.Context, m *container.Manager, id string, timeout time.Duration) error {
	in, err := fileOf(c.App.Reader, "stdin")
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, monitor.ForegroundSignals()...)
	defer signal.Stop(sigs)
	o := container.ForegroundOptions{In: in, Signals: sigs, Force: c.Bool("force"), Resume: c.String("resume"),
		Self: append(selfArgs(c), "start", "--foreground"), Stop: append(selfArgs(c), "stop")}
	if c.IsSet("timeout") {
		o.Self = append(o.Self, "--timeout", c.String("timeout"))
	}
	if c.Bool("wait") {
		o.Wait = timeout
		o.Self = append(o.Self, "--wait")
	}
	if o.Force {
		o.Self = append(o.Self, "--force")
	}
	end, err := m.StartForeground(c.Context, id, o)
	switch end {
	case monitor.EndShutdown:
		return nil
	case monitor.EndCrashed:
		fmt.Fprintf(c.App.ErrWriter, "vectl: %v\n", err)
		return statusError{2}
	}
	return err
}

func stopFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "fast", Usage: "kill the VE at once instead of asking its init to shut down"},
		&cli.StringFlag{Name: "timeout", Usage: "graceful shutdown limit in `SECONDS` (default: the VE's stop_timeout, else 120)"},
	}
}

func stopOptions(c *cli.Context) (container.StopOptions, error) {
	o := container.StopOptions{Fast: c.Bool("fast")}
	if t := c.String("timeout"); t != "" {
		d, err := parseTimeout(t)
		if err != nil {
			return o, err
		}
		o.Timeout = d
	}
	return o, nil
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "shut a VE down through its own init, then tear it down",
		ArgsUsage: "ID",
		Description: `Sends the shutdown request the VE's init expects (systemd: SIGRTMIN+3, busybox:
SIGUSR2, sysvinit and others: /sbin/halt inside the VE; override per VE with
set --stop-signal), waits up to the stop timeout (default 120 s, as vzctl), then kills what is
left in the VE's cgroup and tears everything down: cgroups, network namespace, mounts. Stop
after a crash of vectl or of the monitor finishes the teardown.

EXAMPLES:
   vectl stop 101
   vectl stop 101 --fast
   vectl stop 101 --timeout 30

EXIT STATUS:
   0 stopped; 14 no such VE; 31 not running; 33 unable to stop; 9 locked`,
		Flags: stopFlags(),
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o, err := stopOptions(c)
			if err != nil {
				return err
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			if err := m.Stop(c.Context, id, o); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s stopped\n", id)
			return nil
		},
	}
}

func restartCommand() *cli.Command {
	return &cli.Command{
		Name:      "restart",
		Usage:     "stop a VE (if running) and start it again",
		ArgsUsage: "ID",
		Description: `A VE run by vectl start --foreground (a systemd unit's) is started again by that
foreground vectl, which stays its monitor, so that the VE stays in its unit; restart returns
once the new boot is reported (with --wait, once it has completed), and the start's other
options are that vectl's own.

EXIT STATUS:
   as stop and start`,
		Flags: append(stopFlags(), &cli.BoolFlag{Name: "wait", Usage: "return once the VE has booted"},
			&cli.BoolFlag{Name: "force", Usage: "start it again even if it is disabled (--disabled yes)"}),
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o, err := stopOptions(c)
			if err != nil {
				return err
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			if err := m.Restart(c.Context, id, o, container.StartOptions{Wait: c.Bool("wait"), Force: c.Bool("force"), MonitorArgs: monitorArgs(c)}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s restarted\n", id)
			return nil
		},
	}
}

func execCommand() *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a running VE and return its exit status",
		ArgsUsage: "ID CMD [ARG...]",
		Description: `Runs CMD inside the VE with the VE's environment and capabilities. Standard
input, output and error are passed through, signals sent to vectl are forwarded, and vectl
exits with CMD's own status (128+N when CMD was killed by signal N). -t gives CMD a pty on
vectl's terminal. Everything after the id belongs to CMD.

EXAMPLES:
   vectl exec 101 ps ax
   echo hello | vectl exec 101 cat
   vectl exec -t 101 top

EXIT STATUS:
   CMD's exit status; 14 no such VE; 31 VE not running or frozen`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "allocate a pty"},
			&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "extra `NAME=VALUE` in the environment"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() < 2 {
				return usageErrorf("exec: expected a VE id and a command")
			}
			o, err := execStreams(c)
			if err != nil {
				return err
			}
			o.Args, o.TTY, o.Env = c.Args().Slice()[1:], c.Bool("tty"), c.StringSlice("env")
			m, err := manager(c)
			if err != nil {
				return err
			}
			code, err := m.Exec(c.Context, c.Args().First(), o)
			if err != nil {
				return err
			}
			return statusError{code}
		},
	}
}

func execStreams(c *cli.Context) (container.ExecOptions, error) {
	var o container.ExecOptions
	var err error
	if o.Stdin, err = fileOf(c.App.Reader, "stdin"); err != nil {
		return o, err
	}
	if o.Stdout, err = fileOf(c.App.Writer, "stdout"); err != nil {
		return o, err
	}
	o.Stderr, err = fileOf(c.App.ErrWriter, "stderr")
	return o, err
}

func enterCommand() *cli.Command {
	return &cli.Command{
		Name:      "enter",
		Usage:     "open an interactive root shell in a running VE",
		ArgsUsage: "ID",
		Description: `A login shell (bash if the VE has it, else sh) on a new pty, following the
terminal's window size, like vzctl enter. Exit the shell to leave; vectl exits with the
shell's status.

EXIT STATUS:
   the shell's exit status; 14 no such VE; 31 VE not running`,
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o, err := execStreams(c)
			if err != nil {
				return err
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			code, err := m.Enter(c.Context, id, o)
			if err != nil {
				return err
			}
			return statusError{code}
		},
	}
}

func consoleCommand() *cli.Command {
	return &cli.Command{
		Name:      "console",
		Usage:     "attach to a running VE's console (Esc . detaches)",
		ArgsUsage: "ID",
		Description: `The console is a pty held by the VE's monitor; everything the VE writes to it is
also appended to /var/log/vectl/ID.console (rotated at 1 MiB to ID.console.1). Type Esc
then . to detach; the VE keeps running.

EXIT STATUS:
   0 detached; 14 no such VE; 31 not running; 3 the VE has no monitor (started with --no-monitor)`,
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o, err := execStreams(c)
			if err != nil {
				return err
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			return m.Console(c.Context, id, o.Stdin, o.Stdout)
		},
	}
}

func monitorCommand() *cli.Command {
	return &cli.Command{
		Name:   monitorCommandName,
		Hidden: true,
		Usage:  "internal: the per-VE monitor started by vectl start",
		Flags: []cli.Flag{
			// The idle loop's hand-back (container/idle's Resume message).
			&cli.StringFlag{Name: "resume"},
		},
		Action: func(c *cli.Context) error {
			// SIGTERM or SIGINT would end the monitor; the VE is meant to outlive it. The
			// dispositions survive the exec into the idle loop.
			signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
			o := monitor.Options{Self: monitorArgs(c)}
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			if msg := c.String("resume"); msg != "" {
				var of string
				if of, o.Resume, err = monitor.ParseResume(msg); err != nil {
					return err
				}
				if of != id {
					return fmt.Errorf("monitor of VE %s resumed with the hand-back of VE %s", id, of)
				}
			} else {
				var goAhead *os.File
				o.Ready, o.Lock, goAhead = monitor.StartFiles()
				if o.Gate = monitor.AwaitGoAhead(goAhead); o.Gate == nil {
					return nil // the start failed or was killed while preparing the VE
				}
			}
			_, err = m.RunMonitor(c.Context, id, o)
			if err != nil && !errors.Is(err, container.ErrNotRunning) {
				return err
			}
			return nil
		},
	}
}
