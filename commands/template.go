package commands

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/template"
)

func templateCommand() *cli.Command {
	return &cli.Command{
		Name:  "template",
		Usage: "manage the OS template cache (list, import, build, download, verify, remove)",
		Description: `OS templates are root filesystem archives named like OpenVZ's precreated caches:
dist-version-arch[-variant], e.g. debian-12-x86_64-minimal. Each is unpacked once into the
cache; overlay VEs share that tree read-only. A downloaded template stays packed until the
first VE is created from it.`,
		Subcommands: []*cli.Command{
			{
				Name:    "list",
				Aliases: []string{"ls"},
				Usage:   "list cached OS templates",
				Description: `INIT is - for a downloaded template no VE was created from yet: it is still packed
("packed": true in --json), and the first create unpacks it and fills in what the tree says.

EXAMPLES:
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
					&cli.StringFlag{Name: "cache-dir", Value: "/var/cache/vectl/debootstrap", EnvVars: []string{"VECTL_DEBOOTSTRAP_CACHE"},
						Usage: "keep debootstrap's downloaded packages in `DIR` for the next build (\"\": none)"},
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
						From:     from,
						Busybox:  c.String("busybox"),
						Suite:    c.String("suite"),
						Init:     c.String("init"),
						CacheDir: c.String("cache-dir"),
						Mirror:   c.String("mirror"),
						Include:  include,
						Log:      c.App.ErrWriter,
					})
					if err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "template %s built (%s, init %s)\n", info.Name, humanSize(info.Size), dash(info.Init))
					return nil
				},
			},
			{
				Name:      "download",
				Usage:     "fetch a template from an image server",
				ArgsUsage: "NAME | --list",
				Description: `Fetches a root filesystem archive from an image server and adds it to the cache as
import does. Three server formats are understood, tried in this order at --server:
  simplestreams  streams/v1/index.json and its products file (LXD, Incus): the newest build
                 of the product with a root tarball (ftype root.tar.xz), checked against the
                 sha256 the index gives
  lxc            meta/1.0/index-system (LXC's download template): DIR/rootfs.tar.xz,
                 checked against DIR/SHA256SUMS
  openvz         BASE/NAME.tar.xz, .tar.zst or .tar.gz (OpenVZ's precreated caches),
                 checked against NAME.tar.*.sha256 or BASE/SHA256SUMS
Names map between vectl's dist-version-arch[-variant] and the servers' products:
debian-13-x86_64 is debian/trixie/amd64/default, ubuntu-24.04-x86_64-cloud is
ubuntu/noble/amd64/cloud. With --keyring, the archive's detached signature (URL.asc) is
checked with gpgv too. An archive with neither a checksum nor a checked signature is
refused unless --no-verify. A failed check caches nothing. An interrupted transfer resumes
(HTTP range) when the command runs again; a download of a template another one is fetching
waits for it. HTTP(S)_PROXY and NO_PROXY from the environment are used. Progress goes to
stderr when it is a terminal; otherwise one line per download. The archive is cached as it
came, checked but not unpacked: the first VE created from it (or a VE migrated or restored
from a backup onto it) unpacks it, so a download costs what the transfer costs.

EXAMPLES:
   vectl template download --list
   vectl template download debian-13-x86_64
   vectl template download debian-12-x86_64 --server http://mirror.example.org/images
   vectl template download centos-7-x86_64 --server http://download.openvz.org/template/precreated

EXIT STATUS:
   0 downloaded (or already cached with the server's sha256); 21 bad name or server URL;
   44 a template of that name with another archive is cached; 91 the server has no such
   template; 94 checksum or signature mismatch, or nothing to check it with; 3 network`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "server", Value: template.DefaultServer, EnvVars: []string{"VECTL_TEMPLATE_SERVER"}, Usage: "image server base `URL`"},
					&cli.BoolFlag{Name: "list", Usage: "list what the server offers"},
					&cli.StringFlag{Name: "keyring", Usage: "OpenPGP keyring `FILE` to check signatures with (gpgv)"},
					&cli.BoolFlag{Name: "no-verify", Usage: "accept an archive the server gives no checksum or signature for"},
					&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"},
				},
				Action: func(c *cli.Context) error {
					opts := template.DownloadOptions{Server: c.String("server"), Keyring: c.String("keyring"), NoVerify: c.Bool("no-verify")}
					if c.Bool("list") {
						if c.NArg() != 0 {
							return usageErrorf("template download --list: takes no NAME")
						}
						offers, kind, err := template.ListServer(c.Context, opts)
						if err != nil {
							return err
						}
						if c.Bool("json") {
							return writeJSON(c.App.Writer, map[string]any{"server": opts.Server, "format": kind, "templates": offers})
						}
						t := &table{header: []string{"NAME", "PRODUCT", "BUILD"}}
						for _, o := range offers {
							t.add(o.Name, o.Product, dash(o.Version))
						}
						return t.write(c.App.Writer, false)
					}
					if c.NArg() != 1 {
						return usageErrorf("template download: expected one NAME (or --list)")
					}
					m, err := manager(c)
					if err != nil {
						return err
					}
					start := time.Now()
					if isTerminal(c.App.ErrWriter) && !c.Bool("json") {
						opts.Progress = progressBar(c.App.ErrWriter, c.Args().First())
					}
					opts.Log = func(format string, a ...any) { fmt.Fprintf(c.App.ErrWriter, "vectl: "+format+"\n", a...) }
					info, fetched, err := m.DownloadTemplate(c.Context, c.Args().First(), opts)
					if opts.Progress != nil {
						fmt.Fprintln(c.App.ErrWriter)
					}
					if err != nil {
						return err
					}
					if c.Bool("json") {
						return writeJSON(c.App.Writer, info)
					}
					if !fetched {
						fmt.Fprintf(c.App.Writer, "template %s is already in the cache (sha256 %s)\n", info.Name, info.SHA256)
						return nil
					}
					unpacked := "init " + dash(info.Init)
					if info.Packed {
						unpacked = "unpacked by the first create"
					}
					fmt.Fprintf(c.App.Writer, "template %s downloaded from %s (%s in %v, sha256 %s, %s)\n", info.Name,
						info.Source, humanSize(info.Size), time.Since(start).Round(time.Millisecond), info.SHA256, unpacked)
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
Of a downloaded template not unpacked yet, only the archive is checked.

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
					if !c.Bool("json") && v.Packed {
						fmt.Fprintf(c.App.Writer, "template %s: archive as downloaded (not unpacked yet)\n", v.Name)
					} else if !c.Bool("json") {
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
