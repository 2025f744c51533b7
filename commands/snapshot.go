package commands

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
)

func snapshotCommands() []*cli.Command {
	idFlag := &cli.StringFlag{Name: "id", Usage: "the snapshot's `UUID` (as snapshot-list shows it; braces allowed)"}
	return []*cli.Command{
		{
			Name:      "snapshot",
			Usage:     "take a snapshot of a VE's files and config (and a running VE's memory)",
			ArgsUsage: "ID",
			Description: `Keeps the VE's files as they are now, and its config (unless --skip-config), under a
UUID (printed; --id chooses it). A stopped VE's snapshot costs a rename whatever its size: its
private upper directory becomes a read-only layer and the VE goes on from a new, empty one. A
running VE is copied with rsync while it runs, then once more while it is frozen (only what
changed meanwhile), so the snapshot is consistent; with criu (make criu) its memory is
dumped in the same frozen moment, so that snapshot-switch resumes its processes as they were
(--skip-suspend: no memory dump; a VE criu cannot dump gets a files-only snapshot and a
warning). A copy or image VE's snapshot is a whole copy of its rootfs or disk image (a running
image VE's filesystem is frozen for the copy).

EXAMPLES:
   vectl snapshot 101 --name before-upgrade
   vectl snapshot-list 101
   vectl snapshot-switch 101 --id 2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d

EXIT STATUS:
   0 taken; 14 no such VE; 21 bad value; 44 that UUID exists; 156 the snapshot failed (nothing
   of it is left); 9 locked`,
			Flags: []cli.Flag{
				idFlag,
				&cli.StringFlag{Name: "name", Usage: "a `NAME` for snapshot-list"},
				&cli.StringFlag{Name: "description", Usage: "a `TEXT` for snapshot-list -o desc"},
				&cli.BoolFlag{Name: "skip-suspend", Usage: "no memory dump of a running VE (files and config only)"},
				&cli.BoolFlag{Name: "skip-config", Usage: "do not keep the VE's config in the snapshot"},
				&cli.BoolFlag{Name: "json", Usage: "print {\"id\", \"uuid\"} as JSON"},
			},
			Action: func(c *cli.Context) error {
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				uuid, err := m.Snapshot(c.Context, id, container.SnapshotOptions{UUID: c.String("id"), Name: c.String("name"),
					Description: c.String("description"), SkipSuspend: c.Bool("skip-suspend"), SkipConfig: c.Bool("skip-config")})
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, map[string]string{"id": id, "uuid": uuid})
				}
				fmt.Fprintln(c.App.Writer, uuid)
				return nil
			},
		},
		{
			Name:      "snapshot-list",
			Usage:     "list a VE's snapshots",
			ArgsUsage: "ID",
			Description: `Lists the snapshots in the order they were taken: the snapshot each one was taken
from (PARENT_UUID), C (* marks the one the VE's current state descends from), UUID, DATE,
SIZE (what its own layer takes on disk) and NAME. Fields (-o): ` + strings.Join(snapshotFieldNames(), ", ") + `.

EXIT STATUS:
   0 listed; 14 no such VE; 20 unknown field; 160 --id names no snapshot`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "comma-separated `FIELDS`"},
				&cli.BoolFlag{Name: "no-header", Aliases: []string{"H"}, Usage: "no header line"},
				&cli.BoolFlag{Name: "json", Usage: "JSON output"},
				&cli.BoolFlag{Name: "list", Aliases: []string{"L"}, Usage: "list the fields and their headers"},
				idFlag,
			},
			Action: func(c *cli.Context) error {
				if c.Bool("list") {
					listSnapshotFields(c.App.Writer)
					return nil
				}
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				fields := "parent_uuid,current,uuid,date,size,name"
				if c.IsSet("output") {
					fields = c.String("output")
				}
				return listSnapshots(c.App.Writer, m, id, c.String("id"), fields, c.Bool("no-header"), c.Bool("json"), false)
			},
		},
		{
			Name:      "snapshot-switch",
			Usage:     "put a VE back to a snapshot (its current files are lost)",
			ArgsUsage: "ID",
			Description: `Replaces the VE's files, and its config unless --skip-config, with the snapshot's.
The current state is lost (snapshot it first to keep it). A running VE is stopped first. A
snapshot with a memory dump (taken from a running VE with criu) resumes the VE's processes as
they were, unless --skip-resume; a failed resume is a warning (the VE ends stopped), or an
error with --must-resume, which also fails for a snapshot without a dump. The VE's id, name and
range of ids stay its own; addresses from the snapshot's config must be free.

EXIT STATUS:
   0 switched; 14 no such VE; 21 bad UUID; 78 the snapshot's address is taken; 159 no such
   snapshot, or the switch failed (the VE is as it was); 9 locked`,
			Flags: []cli.Flag{
				idFlag,
				&cli.BoolFlag{Name: "skip-config", Usage: "keep the VE's current config"},
				&cli.BoolFlag{Name: "skip-resume", Usage: "ignore the snapshot's memory dump: the VE ends stopped"},
				&cli.BoolFlag{Name: "must-resume", Usage: "fail unless the VE's processes are resumed from the snapshot's dump"},
			},
			Action: func(c *cli.Context) error {
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				if !c.IsSet("id") {
					return usageErrorf("snapshot-switch: --id UUID is needed (see vectl snapshot-list %s)", id)
				}
				if c.Bool("skip-resume") && c.Bool("must-resume") {
					return usageErrorf("snapshot-switch: --skip-resume and --must-resume exclude each other")
				}
				if err := m.SnapshotSwitch(c.Context, id, container.SwitchOptions{UUID: c.String("id"),
					SkipConfig: c.Bool("skip-config"), SkipResume: c.Bool("skip-resume"), MustResume: c.Bool("must-resume"),
					MonitorArgs: monitorArgs(c)}); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "VE %s switched to snapshot %s\n", id, c.String("id"))
				return nil
			},
		},
		{
			Name:      "snapshot-delete",
			Usage:     "delete a snapshot",
			ArgsUsage: "ID",
			Description: `Forgets the snapshot. Its files stay while later snapshots, clones or the VE's current
state build on them; a layer nothing needs is removed, and one only a single later layer (or
the stopped VE itself) builds on is merged into it (renames, no copy).

EXIT STATUS:
   0 deleted; 14 no such VE; 21 bad UUID; 158 no such snapshot, it is mounted, or the delete
   failed; 9 locked`,
			Flags: []cli.Flag{idFlag},
			Action: func(c *cli.Context) error {
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				if !c.IsSet("id") {
					return usageErrorf("snapshot-delete: --id UUID is needed (see vectl snapshot-list %s)", id)
				}
				if err := m.SnapshotDelete(id, c.String("id")); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "snapshot %s of VE %s deleted\n", c.String("id"), id)
				return nil
			},
		},
		{
			Name:      "snapshot-mount",
			Usage:     "mount a snapshot's files read-only on a directory",
			ArgsUsage: "ID",
			Description: `EXAMPLES:
   vectl snapshot-mount 101 --id UUID --target /mnt/snap && diff -r /mnt/snap/etc /var/lib/vectl/root/101/etc

EXIT STATUS:
   0 mounted; 14 no such VE; 21 bad UUID or target; 50 mount failed; 160 no such snapshot`,
			Flags: []cli.Flag{idFlag, &cli.StringFlag{Name: "target", Usage: "the `DIR` to mount it on"}},
			Action: func(c *cli.Context) error {
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				if !c.IsSet("id") || !c.IsSet("target") {
					return usageErrorf("snapshot-mount: --id UUID and --target DIR are needed")
				}
				return m.SnapshotMount(id, c.String("id"), c.String("target"))
			},
		},
		{
			Name:      "snapshot-umount",
			Usage:     "unmount what snapshot-mount mounted",
			ArgsUsage: "ID",
			Description: `EXIT STATUS:
   0 unmounted; 14 no such VE; 21 not mounted; 160 no such snapshot`,
			Flags: []cli.Flag{idFlag},
			Action: func(c *cli.Context) error {
				id, m, err := veManager(c)
				if err != nil {
					return err
				}
				if !c.IsSet("id") {
					return usageErrorf("snapshot-umount: --id UUID is needed")
				}
				return m.SnapshotUmount(id, c.String("id"))
			},
		},
		{
			Name:      "clone",
			Usage:     "make a new VE from a stopped VE or one of its snapshots",
			ArgsUsage: "SRC NEWID",
			Description: `On the overlay layout the clone shares the source's files as read-only layers: the
stopped source's upper directory becomes a layer both go on from, so a clone costs about as
much as a create whatever the data size; copy and image VEs are copied. --snapshot clones a
snapshot instead (the source may then run). The clone has the source's config and limits,
but its own id, name (--name, none by default), host name (--hostname, its id by default),
addresses (--ipadd, none by default), MACs, machine-id and SSH host keys (made anew), and range
of ids for a user-namespace VE. It is created stopped.

EXAMPLES:
   vectl clone 101 102 --hostname web2 --ipadd 10.199.0.12
   vectl clone 101 103 --snapshot 2f9a52ad-4b17-4c3e-9a5d-0e2f1c3b4a5d

EXIT STATUS:
   0 cloned; 14 no such source VE; 21 bad value; 32 the source runs (clone a snapshot); 44
   NEWID or the name exists; 78 address in use; 156 the copy failed; 160 no such snapshot`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "snapshot", Usage: "clone the snapshot `UUID` of SRC"},
				&cli.StringFlag{Name: "name", Usage: "the clone's `NAME`"},
				&cli.StringFlag{Name: "hostname", Usage: "the clone's host `NAME` (default: its id)"},
				&cli.StringSliceFlag{Name: "ipadd", Usage: "an address `ADDR[/PREFIX]` of the clone (repeatable)"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return usageErrorf("clone: expected SRC and NEWID, got %d arguments", c.NArg())
				}
				m, err := manager(c)
				if err != nil {
					return err
				}
				cfg, err := m.Clone(c.Context, container.CloneOptions{Source: c.Args().Get(0), ID: c.Args().Get(1),
					Snapshot: c.String("snapshot"), Name: c.String("name"), Hostname: c.String("hostname"),
					IPs: splitList(c.StringSlice("ipadd"))})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "VE %s cloned from %s\n", cfg.ID, c.Args().Get(0))
				return nil
			},
		},
	}
}

// snapshotFields are snapshot-list's columns: vzctl's names (and their aliases) and vectl's.
var snapshotFields = []struct {
	name, header string
	value        func(s container.SnapshotInfo, braces bool) string
}{
	{"parent_uuid", "PARENT_UUID", func(s container.SnapshotInfo, b bool) string { return braced(s.Parent, b) }},
	{"current", "C", func(s container.SnapshotInfo, _ bool) string {
		if s.Current {
			return "*"
		}
		return ""
	}},
	{"uuid", "UUID", func(s container.SnapshotInfo, b bool) string { return braced(s.UUID, b) }},
	{"date", "DATE", func(s container.SnapshotInfo, _ bool) string { return s.Created.Local().Format("2006-01-02 15:04:05") }},
	{"size", "SIZE", func(s container.SnapshotInfo, _ bool) string { return humanSize(s.Size) }},
	{"name", "NAME", func(s container.SnapshotInfo, _ bool) string { return s.Name }},
	{"desc", "DESC", func(s container.SnapshotInfo, _ bool) string { return s.Description }},
	{"running", "RUNNING", func(s container.SnapshotInfo, _ bool) string {
		return map[bool]string{true: "yes", false: "no"}[s.Running]
	}},
	{"frozen", "FROZEN_MS", func(s container.SnapshotInfo, _ bool) string { return fmt.Sprint(s.Frozen) }},
	{"dump", "DUMP", func(s container.SnapshotInfo, _ bool) string {
		return map[bool]string{true: "yes", false: "no"}[s.Dump]
	}},
	{"target", "TARGET", func(s container.SnapshotInfo, _ bool) string { return s.Mount }},
}

var snapshotFieldAliases = map[string]string{"id": "uuid", "parent_id": "parent_uuid"}

// listSnapshotFields prints the fields of snapshot-list and their headers (-L).
func listSnapshotFields(w io.Writer) {
	for _, f := range snapshotFields {
		fmt.Fprintf(w, "%-15s %-15s\n", f.name, f.header)
	}
	fmt.Fprintf(w, "%-15s %-15s\n%-15s %-15s\n", "id", "UUID", "parent_id", "PARENT_UUID")
}

func snapshotFieldNames() []string {
	var out []string
	for _, f := range snapshotFields {
		out = append(out, f.name)
	}
	return append(out, "id", "parent_id")
}

func braced(u string, b bool) string {
	if u == "" || !b {
		return u
	}
	return "{" + u + "}"
}

// listSnapshots prints a VE's snapshots (one, with uuid) as snapshot-list does; braces
// prints UUIDs as vzctl does ({...}).
func listSnapshots(w io.Writer, m *container.Manager, id, uuid, fields string, noHeader, asJSON, braces bool) error {
	snaps, err := m.Snapshots(id)
	if err != nil {
		return err
	}
	if uuid != "" {
		u, err := container.NormalizeUUID(uuid)
		if err != nil {
			return err
		}
		var one []container.SnapshotInfo
		for _, s := range snaps {
			if s.UUID == u {
				one = append(one, s)
			}
		}
		if len(one) == 0 {
			return fmt.Errorf("snapshot-list %s: %w %s", id, container.ErrNoSnapshot, u)
		}
		snaps = one
	}
	if asJSON {
		if snaps == nil {
			snaps = []container.SnapshotInfo{}
		}
		return writeJSON(w, snaps)
	}
	var cols []int
	for _, f := range strings.Split(fields, ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		if a, ok := snapshotFieldAliases[f]; ok {
			f = a
		}
		i := -1
		for j, sf := range snapshotFields {
			if sf.name == f {
				i = j
			}
		}
		if i < 0 {
			return usageErrorf("snapshot-list: unknown field %q (fields: %s)", f, strings.Join(snapshotFieldNames(), ", "))
		}
		cols = append(cols, i)
	}
	t := &table{}
	for _, i := range cols {
		t.header = append(t.header, snapshotFields[i].header)
	}
	for _, s := range snaps {
		var row []string
		for _, i := range cols {
			row = append(row, snapshotFields[i].value(s, braces))
		}
		t.add(row...)
	}
	return t.write(w, noHeader)
}

func backupCommands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "backup",
			Usage:     "write a VE's backup: one self-checking archive",
			ArgsUsage: "ID FILE|DIR",
			Description: `Writes one archive (zstd-compressed tar; --compress none: plain tar) holding a manifest,
the VE's config and its private data (an overlay VE's layers and upper directory, a copy VE's
rootfs, an image VE's disk image), each part with its sha256 in the manifest, and with
--with-template the template's archive. Owners, modes, ACLs, xattrs, hard links and holes are
kept. Given a directory, the file is DIR/vectl-backup-ID-DATE.tar.zst. The archive appears
under its name only once complete; an interrupted backup leaves nothing under it.
--with-snapshots keeps the VE's snapshots too (records and files, not their memory dumps).
A running VE: --mode snapshot or suspend (the default is snapshot) copies its data while it
runs, then once more frozen (only what changed); an image VE is frozen for the copy of its
disk. suspend, with criu, also dumps its memory in that frozen moment: restored under its own
id, the VE comes back suspended and vectl restore (or start) resumes it where it was. --mode
stop stops it for the backup and starts it again. Progress on a terminal.

EXAMPLES:
   vectl backup 101 /srv/backup
   vectl backup 101 /srv/backup/101.tar.zst --mode stop --with-template
   vectl backup-restore /srv/backup/101.tar.zst 201

EXIT STATUS:
   0 written; 14 no such VE; 21 bad mode, compression or FILE exists; 91 the VE's template is
   gone; 163 the backup failed (nothing is left under FILE); 9 locked`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "mode", Value: "snapshot", Usage: "for a running VE: `MODE` stop, suspend or snapshot"},
				&cli.StringFlag{Name: "compress", Value: "zstd", Usage: "zstd or none"},
				&cli.BoolFlag{Name: "with-template", Usage: "embed the template's archive (restores on a node without it)"},
				&cli.BoolFlag{Name: "with-snapshots", Usage: "keep the VE's snapshots (records and files, not their memory dumps)"},
				&cli.BoolFlag{Name: "json", Usage: "print what was written as JSON"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() != 2 {
					return usageErrorf("backup: expected ID and FILE (or DIR), got %d arguments", c.NArg())
				}
				m, err := manager(c)
				if err != nil {
					return err
				}
				o := container.BackupOptions{File: c.Args().Get(1), Mode: c.String("mode"), Compress: c.String("compress"),
					WithTemplate: c.Bool("with-template"), WithSnapshots: c.Bool("with-snapshots"),
					Start: container.StartOptions{MonitorArgs: monitorArgs(c)}}
				if isTerminal(c.App.ErrWriter) && !c.Bool("json") {
					o.Progress = progressBar(c.App.ErrWriter, "backup "+c.Args().First())
				}
				rep, err := m.Backup(c.Context, c.Args().First(), o)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, rep)
				}
				fmt.Fprintf(c.App.Writer, "VE %s backed up to %s (%s", c.Args().First(), rep.File, humanSize(rep.Size))
				if rep.FrozenMs > 0 {
					fmt.Fprintf(c.App.Writer, ", frozen %d ms", rep.FrozenMs)
				}
				fmt.Fprintln(c.App.Writer, ")")
				return nil
			},
		},
		{
			Name:      "backup-restore",
			Usage:     "make a VE from a backup",
			ArgsUsage: "FILE [NEWID]",
			Description: `Checks every part of the archive against the sha256 in its manifest before anything is
made, then creates the VE (stopped) under its old id or NEWID. The template must be on this
node with the sha256 the backup names, or be embedded in it (backup --with-template; it is then
imported). Under a new id the VE gets neither the name nor the addresses of the original, and a
user-namespace VE gets a range of ids of its own (its files are shifted to it).

EXIT STATUS:
   0 restored; 21 bad id; 44 the VE exists; 91 the template is not on this node; 94 the
   template here differs from the backup's; 163 not a sound backup (cut short, altered, sha256
   mismatch) or the restore failed (nothing of it is left)`,
			Action: func(c *cli.Context) error {
				if c.NArg() < 1 || c.NArg() > 2 {
					return usageErrorf("backup-restore: expected FILE [NEWID], got %d arguments", c.NArg())
				}
				m, err := manager(c)
				if err != nil {
					return err
				}
				cfg, err := m.RestoreBackup(c.Context, container.RestoreBackupOptions{File: c.Args().Get(0), ID: c.Args().Get(1)})
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "VE %s restored from %s\n", cfg.ID, c.Args().Get(0))
				return nil
			},
		},
	}
}
