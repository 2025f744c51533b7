package commands

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/template"
)

func templateCommand() *cli.Command {
	return &cli.Command{
		Name:  "template",
		Usage: "manage the OS template cache (list, import, build, verify, remove)",
		Description: `OS templates are root filesystem archives named like OpenVZ's precreated caches:
dist-version-arch[-variant], e.g. debian-12-x86_64-minimal. Each is unpacked once into the
cache; overlay VEs share that tree read-only.`,
		Subcommands: []*cli.Command{
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list cached OS templates",
				Description: `EXAMPLES:
   vectl template list
   vectl template list --json

EXIT STATUS:
   0 listed (--json prints [] when the cache is empty)`,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					m, err := manager(c)
					if err != nil {
						return err
					}
					infos, err := m.Templates()
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writeJSON(c.App.Writer, infos)
					}
					t := &table{header: []string{"NAME", "DIST", "VERSION", "INIT", "FORMAT", "SIZE", "SHA256", "CREATED", "SOURCE"},
						right: []bool{false, false, false, false, false, true}}
					for _, i := range infos {
						t.add(i.Name, dash(i.Distribution), dash(i.Version), dash(i.Init), i.Format, humanSize(i.Size),
							i.SHA256[:min(12, len(i.SHA256))], i.Created.Local().Format("2006-01-02 15:04"), i.Source)
					}
					return t.write(c.App.Writer, false)
				},
			},
			{
				Name:      "import",
				Usage:     "add a root filesystem archive (.tar, .tar.gz, .tar.xz, .tar.zst) to the cache",
				ArgsUsage: "FILE",
				Description: `The archive is checked entry by entry while it is unpacked: absolute paths, "..",
writes through symlinks and hardlinks leaving the tree are refused with an error naming the
entry, and nothing is left behind. Device nodes (debootstrap, OpenVZ's precreated caches and
image servers ship some in /dev) are skipped, as a VE gets its own /dev: one line says how
many were in /dev, and one names each found elsewhere. The name defaults to the file name
without its .tar.* suffix.

EXAMPLES:
   vectl template import /srv/debian-12-x86_64-minimal.tar.zst
   vectl template import rootfs.tar.gz --name alpine-3.20-x86_64

EXIT STATUS:
   0 imported; 21 bad name or unsafe archive entry; 44 a template of that name exists`,
				Flags: []cli.Flag{&cli.StringFlag{Name: "name", Usage: "template `NAME` (default: from the file name)"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("template import: expected one FILE")
					}
					m, err := manager(c)
					if err != nil {
						return err
					}
					info, err := m.ImportTemplate(c.Context, c.Args().First(), c.String("name"))
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "template %s imported (%s, sha256 %s)\n", info.Name, humanSize(info.Size), info.SHA256)
					for _, note := range info.Skipped {
						fmt.Fprintf(c.App.Writer, "template %s: %s\n", info.Name, note)
					}
					return nil
				},
			},
			{
				Name:      "build",
				Usage:     "build a template from the host's busybox or with debootstrap",
				ArgsUsage: "NAME --from busybox|debootstrap",
				Description: `--from busybox   a tiny template from the host's static busybox (Debian's busybox-static),
                 with an inittab and rcS; works offline.
--from debootstrap
                 a Debian template (--suite bullseye, bookworm, trixie, ...) booting the init
                 --init names: systemd (systemd-sysv, the default), sysvinit (sysvinit-core),
                 openrc (openrc under sysvinit-core) or runit (runit-init); with iproute2,
                 procps, iptables, iputils-ping, plus --include; made with Debian's
                 debootstrap; needs network. What cannot work in a VE is turned off in the
                 init's own configuration (udev and kernel-module units masked, no gettys on
                 virtual terminals: one on the console).

EXAMPLES:
   vectl template build busybox-1.35-x86_64 --from busybox
   vectl template build debian-12-x86_64-minimal --from debootstrap --suite bookworm
   vectl template build debian-13-x86_64-minimal --from debootstrap --suite trixie
   vectl template build debian-12-x86_64-runit --from debootstrap --init runit
   vectl template build debian-12-x86_64-ssh --from debootstrap --include openssh-server

EXIT STATUS:
   0 built; 20 bad syntax; 21 bad name or option; 44 template exists`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "from", Usage: "`SOURCE`: busybox or debootstrap"},
					&cli.StringFlag{Name: "suite", Value: "bookworm", Usage: "Debian suite (debootstrap)"},
					&cli.StringFlag{Name: "init", Value: "systemd", Usage: "`INIT`: systemd, sysvinit, openrc or runit (debootstrap)"},
					&cli.StringFlag{Name: "mirror", Value: "http://deb.debian.org/debian", Usage: "Debian mirror `URL` (debootstrap)"},
					&cli.StringFlag{Name: "include", Usage: "extra packages, comma-separated (debootstrap)"},
					&cli.StringFlag{Name: "busybox", Value: "/bin/busybox", Usage: "static busybox `PATH` (busybox)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("template build: expected one NAME")
					}
					from := c.String("from")
					if from != "busybox" && from != "debootstrap" {
						return usageErrorf("template build: --from must be busybox or debootstrap")
					}
					var include []string
					for _, p := range strings.Split(c.String("include"), ",") {
						if p = strings.TrimSpace(p); p != "" {
							include = append(include, p)
						}
					}
					m, err := manager(c)
					if err != nil {
						return err
					}
					info, err := m.BuildTemplate(c.Context, c.Args().First(), template.BuildOptions{
						From:    from,
						Busybox: c.String("busybox"),
						Suite:   c.String("suite"),
						Init:    c.String("init"),
						Mirror:  c.String("mirror"),
						Include: include,
						Log:     c.App.ErrWriter,
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "template %s built (%s, init %s)\n", info.Name, humanSize(info.Size), dash(info.Init))
					return nil
				},
			},
			{
				Name:      "verify",
				Usage:     "re-check a template's archive and unpacked tree",
				ArgsUsage: "NAME",
				Description: `Checks the cached archive against the sha256 recorded when it entered the cache, then
every entry of the archive against the unpacked tree that VEs share (type, permission bits,
owner, content, symlink targets, hard links), and the tree for entries the archive does not
have; device nodes, which import skips, are not expected. Prints one line per difference.

EXAMPLES:
   vectl template verify debian-12-x86_64-minimal
   vectl template verify debian-12-x86_64-minimal --json

EXIT STATUS:
   0 as installed; 91 no such template; 94 the archive or the tree differs`,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("template verify: expected one NAME")
					}
					m, err := manager(c)
					if err != nil {
						return err
					}
					v, err := m.VerifyTemplate(c.Context, c.Args().First())
					if err != nil {
						return err
					}
					if c.Bool("json") {
						if err := writeJSON(c.App.Writer, v); err != nil {
							return err
						}
					} else {
						if !v.ArchiveOK {
							fmt.Fprintf(c.App.Writer, "archive: sha256 differs from the one recorded at import\n")
						}
						for _, d := range v.Differences {
							fmt.Fprintln(c.App.Writer, d)
						}
					}
					if !v.OK() {
						return fmt.Errorf("template %s: %w: %d differences listed above", v.Name, template.ErrModified, len(v.Differences))
					}
					if !c.Bool("json") {
						fmt.Fprintf(c.App.Writer, "template %s: archive and %d entries as installed\n", v.Name, v.Entries)
					}
					return nil
				},
			},
			{
				Name:      "remove",
				Aliases:   []string{"rm"},
				Usage:     "remove a template no VE uses",
				ArgsUsage: "NAME",
				Description: `EXIT STATUS:
   0 removed; 91 no such template; 93 VEs were created from it (destroy them first)`,
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("template remove: expected one NAME")
					}
					m, err := manager(c)
					if err != nil {
						return err
					}
					if err := m.RemoveTemplate(c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "template %s removed\n", c.Args().First())
					return nil
				},
			},
		},
	}
}
