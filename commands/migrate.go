package commands

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/vectl/vectl/container"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate",
		Usage:     "move a VE to another node over ssh (vzmigrate; --online: live, with CRIU)",
		ArgsUsage: "ID [user@]HOST",
		Description: `Moves VE ID to the node HOST, reached with ssh as root without a password or a
question (keys, a known host key), where vectl (--remote-vectl) and rsync are installed.

Preflight on both nodes: ssh works; the destination's vectl speaks the same migration
protocol; the id, name, addresses and (for a user-namespace VE) id range are free there; the
VE's template is there with the same sha256, or it is copied over and imported; for --online
also a usable criu there, the same kernel, and a CPU with every feature the VE may use (criu
cpuinfo). Then the private area is copied with rsync (-aHAX --numeric-ids --sparse) while the
VE runs.

--online: the VE is checkpointed (frozen from here), the private area synced once more, the
dump copied, the network set up on the destination with the same addresses and the VE
restored there (frozen until here): processes, open TCP connections, console and uptime go
on. Without --online a running VE is stopped, synced and started on the destination; a
stopped VE is copied and stays stopped. Then the VE is removed from this node (--keep-src:
kept here, stopped).

--lazy (with --online; post-copy, privileged VEs): the VE is restored on the destination
before its memory has moved. The source keeps the VE's tasks frozen and serves their pages
(CRIU's page server, on 127.0.0.1, relayed over the ssh connection); the destination's
lazy-pages daemon hands each page to the VE as it touches it and fetches the rest at once,
as fast as the link allows. The frozen time does not grow with the VE's memory. The
trade-off is QEMU's post-copy one: until the last page has moved the VE needs both nodes,
and losing the source or the link then loses it (if the pages stop moving while the source
is up, the VE goes on here and its copy there is removed). Plain --online keeps the source
intact until the destination has everything. A VE in its own user namespace cannot be
migrated with --lazy (its restored tasks may not make a userfaultfd): exit 8.

Each phase's time is printed as it ends, and the time the VE ran nowhere ("frozen");
--json prints them as numbers (milliseconds; frozen_ms, total_ms). Any failure before the
destination runs the VE removes what was made there and brings the VE back here (restored
from its dump with its connections, or started); so does a guard process if this vectl is
killed (its log: RUNDIR/migrate/ID.log). --dry-run stops after the preflight.

EXAMPLES:
   vectl migrate 101 node2.example.net --online
   vectl migrate 101 root@10.0.0.2 --ssh "-p 2222 -i /root/.ssh/migrate" --online --json
   vectl migrate 101 node2 --remote-vectl "/usr/local/sbin/vectl --root /srv/vectl"

EXIT STATUS (vzmigrate's):
   0 migrated; 1 bad command line; 4 can't connect to the destination; 6 copying the private
   area, the dump or the template failed; 7 can't restore or start the VE on the
   destination; 8 can't checkpoint or stop the VE here; 9 the VE exists on the destination;
   10 no such VE here; 12 an address of the VE is in use there; 14 no usable criu there;
   15 the VE's settings (name, template, id range) do not fit there; 17 another kernel,
   an older criu or another vectl there; 18 the CPU there lacks features; 20 locked`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "online", Aliases: []string{"live"}, Usage: "live migration: checkpoint here, restore there (CRIU)"},
			&cli.StringFlag{Name: "ssh", Usage: "extra ssh `OPTIONS` (split at spaces), e.g. \"-p 2222 -i KEY\""},
			&cli.StringFlag{Name: "remote-vectl", Value: "vectl", Usage: "the destination's vectl `COMMAND`, with its global options"},
			&cli.BoolFlag{Name: "lazy", Usage: "with --online: post-copy, the memory follows after the restore (see above)"},
			&cli.BoolFlag{Name: "keep-src", Usage: "keep the VE here (stopped) after the migration"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"check-only"}, Usage: "only run the preflight checks"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return &container.MigrateError{Code: container.MigrateUsage,
					Err: usageErrorf("migrate: expected ID and [user@]HOST, got %d arguments (see vectl migrate --help)", c.NArg())}
			}
			id, host := c.Args().Get(0), c.Args().Get(1)
			if host == "" || strings.HasPrefix(host, "-") {
				return &container.MigrateError{Code: container.MigrateUsage, Err: usageErrorf("migrate: bad destination %q", host)}
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			var progress io.Writer = c.App.Writer
			if c.Bool("json") {
				progress = nil
			}
			rep, err := m.Migrate(c.Context, id, container.MigrateOptions{Host: host, SSH: strings.Fields(c.String("ssh")),
				RemoteVectl: c.String("remote-vectl"), Online: c.Bool("online"), Lazy: c.Bool("lazy"), KeepSrc: c.Bool("keep-src"),
				DryRun: c.Bool("dry-run"), Self: selfArgs(c), MonitorArgs: monitorArgs(c), Progress: progress})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, rep)
			}
			switch {
			case rep.DryRun:
				fmt.Fprintf(c.App.Writer, "VE %s can be migrated to %s\n", rep.ID, host)
			case rep.Lazy:
				fmt.Fprintf(c.App.Writer, "VE %s migrated to %s online (lazy): frozen %d ms, memory %d ms after, total %d ms\n",
					rep.ID, host, rep.FrozenMs, rep.PagesMs, rep.TotalMs)
			case rep.Online:
				fmt.Fprintf(c.App.Writer, "VE %s migrated to %s online: frozen %d ms, total %d ms\n", rep.ID, host, rep.FrozenMs, rep.TotalMs)
			default:
				fmt.Fprintf(c.App.Writer, "VE %s migrated to %s: down %d ms, total %d ms\n", rep.ID, host, rep.FrozenMs, rep.TotalMs)
			}
			return nil
		},
	}
}

// migrateInCommand is the destination's side of migrate, run by the source over ssh.
func migrateInCommand() *cli.Command {
	return &cli.Command{
		Name:   "migrate-in",
		Hidden: true,
		Usage:  "internal: the destination's side of vectl migrate (prepare, commit, pages, abort)",
		Subcommands: []*cli.Command{
			{
				Name: "prepare", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					id, m, err := veManager(c)
					if err != nil {
						return err
					}
					out, err := m.PrepareMigration(c.Context, id, os.Stdin)
					if err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "%s\n", out)
					return err
				},
			},
			{
				Name: "commit", ArgsUsage: "ID",
				Flags: []cli.Flag{&cli.StringFlag{Name: "restore"}, &cli.BoolFlag{Name: "dump-stdin"}, &cli.BoolFlag{Name: "start"}},
				Action: func(c *cli.Context) error {
					// A source that goes away mid-commit must not cut the restore short: its
					// guard asks abort, which waits for this to end.
					signal.Ignore(unix.SIGHUP, unix.SIGPIPE)
					id, m, err := veManager(c)
					if err != nil {
						return err
					}
					var dump io.Reader
					if c.Bool("dump-stdin") {
						dump = os.Stdin
					}
					if err := m.CommitMigration(c.Context, id, c.String("restore"), dump, c.Bool("start"), monitorArgs(c)); err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, "committed")
					return nil
				},
			},
			{
				// The destination's lazy-pages daemon, its page-server connection on stdin
				// and stdout (migrate --lazy).
				Name: "pages", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					signal.Ignore(unix.SIGHUP, unix.SIGPIPE)
					id, m, err := veManager(c)
					if err != nil {
						return err
					}
					return m.ServeLazyPages(c.Context, id, os.Stdin, os.Stdout)
				},
			},
			{
				Name: "abort", ArgsUsage: "ID",
				Action: func(c *cli.Context) error {
					signal.Ignore(unix.SIGHUP, unix.SIGPIPE)
					id, m, err := veManager(c)
					if err != nil {
						return err
					}
					what, err := m.AbortMigration(id)
					if err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, what)
					return nil
				},
			},
		},
	}
}

// migrateGuardCommand undoes a migration whose vectl died (see container.GuardMigration).
func migrateGuardCommand() *cli.Command {
	return &cli.Command{
		Name:      "migrate-guard",
		Hidden:    true,
		Usage:     "internal: undoes a migration its vectl did not finish",
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGTERM, unix.SIGPIPE)
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			return m.GuardMigration(c.Context, id, os.Stdin)
		},
	}
}
