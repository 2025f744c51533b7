package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/container/monitor"
)

func chkpntCommand() *cli.Command {
	return &cli.Command{
		Name:      "chkpnt",
		Aliases:   []string{"suspend"},
		Usage:     "checkpoint a running VE to a dump (CRIU) and stop it",
		ArgsUsage: "ID",
		Description: `Freezes the VE, dumps it with CRIU (processes, memory, open files, established TCP
connections, timers, its console), kills it and tears it down except its private area. status
then says "down suspended" and list shows "suspended"; vectl restore (or vectl start) brings
it back where it was. The dump goes to ROOT/dump/ID unless --dumpfile names a directory; a
dump that fails leaves the VE running, no dump under that name, and CRIU's log in DIR.failed.
--leave-running dumps and keeps the VE running.
--suspend / --resume only freeze and thaw the VE's processes (as vectl freeze / thaw).

CRIU 4.1 or later is needed: make criu (vectl's source tree) installs one in
/usr/local/lib/vectl/criu; VECTL_CRIU names another.

EXAMPLES:
   vectl chkpnt 101
   vectl chkpnt 101 --dumpfile /srv/dumps/101 --leave-running
   vectl chkpnt 101 --suspend

EXIT STATUS:
   0 done; 14 no such VE; 31 not running; 16 no usable criu, or the dump failed (the VE
   keeps running); 9 locked`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dumpfile", Usage: "dump `DIR` (default ROOT/dump/ID)"},
			&cli.BoolFlag{Name: "leave-running", Usage: "keep the VE running after the dump"},
			&cli.BoolFlag{Name: "suspend", Usage: "only freeze the VE (no dump)"},
			&cli.BoolFlag{Name: "resume", Usage: "only thaw a frozen VE"},
		},
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			switch {
			case c.Bool("suspend") && c.Bool("resume"):
				return usageErrorf("chkpnt: --suspend and --resume exclude each other")
			case c.Bool("suspend"):
				return freezeThaw(c, m, id, true)
			case c.Bool("resume"):
				return freezeThaw(c, m, id, false)
			}
			if err := m.Checkpoint(c.Context, id, container.CheckpointOptions{Dir: c.String("dumpfile"),
				LeaveRunning: c.Bool("leave-running")}); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s checkpointed\n", id)
			return nil
		},
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Aliases:   []string{"resume"},
		Usage:     "restore a checkpointed VE from its dump",
		ArgsUsage: "ID",
		Description: `Sets the VE up again as a start does (root, namespaces, network with the same
addresses) and has its monitor restore the dump instead of booting: the VE continues where it
was, with the same processes and PIDs, open connections, console and uptime. The dump is
removed once the VE runs; a failed restore keeps it and leaves the VE down.
A dump is refused when it was made on another kernel, on a CPU with features this one lacks,
or when the VE's private area changed since (--force restores it anyway).

EXAMPLES:
   vectl restore 101
   vectl restore 101 --dumpfile /srv/dumps/101

EXIT STATUS:
   0 restored; 14 no such VE; 32 running; 16 no usable criu; 17 no dump, a stale or foreign
   dump, or the restore failed; 9 locked`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dumpfile", Usage: "dump `DIR` (default: where chkpnt put it)"},
			&cli.BoolFlag{Name: "force", Usage: "restore although the private area changed since the dump"},
		},
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			return restoreVE(c, m, id, container.RestoreOptions{Dir: c.String("dumpfile"), Force: c.Bool("force")})
		},
	}
}

// restoreVE restores VE id and says so. This process stays as the VE's monitor when its
// constructor forked (monitor.Forked): it then reports the outcome once the VE runs and its
// dump is removed, and detaches.
func restoreVE(c *cli.Context, m *container.Manager, id string, o container.RestoreOptions) error {
	o.MonitorArgs, o.Become = monitorArgs(c), monitor.Forked()
	reported := false
	o.Started = func(err error) int {
		reported = true
		if err != nil {
			code, msg := exitStatus(fmt.Errorf("restore %s: %w", id, err))
			fmt.Fprintf(c.App.ErrWriter, "vectl: %s\n", msg)
			return code
		}
		fmt.Fprintf(c.App.Writer, "VE %s restored\n", id)
		return 0
	}
	if err := m.Restore(c.Context, id, o); err != nil {
		return err
	}
	if !reported {
		fmt.Fprintf(c.App.Writer, "VE %s restored\n", id)
	}
	return nil
}

func freezeThaw(c *cli.Context, m *container.Manager, id string, on bool) error {
	word := "thawed"
	if on {
		word = "frozen"
		if err := m.Freeze(id); err != nil {
			return err
		}
	} else if err := m.Thaw(id); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "VE %s %s\n", id, word)
	return nil
}

func freezeCommand(name, usage string, on bool) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "ID",
		Description: `Freezes (or thaws) every process of a running VE through its cgroup freezer, without
a dump: status shows "running frozen". Same as vectl chkpnt --suspend / --resume.

EXIT STATUS:
   0 done; 14 no such VE; 31 not running`,
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			return freezeThaw(c, m, id, on)
		},
	}
}
