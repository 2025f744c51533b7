package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/resources"
)

func createCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a VE from an OS template (not started)",
		ArgsUsage: "ID --ostemplate NAME",
		Description: `Creates the VE's private area from an OS template of the cache (vectl template list).
The overlay layout (default) shares the template's unpacked tree read-only and gives the VE
its own upper directory, so create takes milliseconds whatever the template's size; the
copy layout makes a full private copy; the image layout an ext4 disk image of --diskspace
(and --diskinodes) that is the VE's hard disk limit. Resource limits (see vectl set --help)
come from a --config profile and the flags over it. ID is a number (101) or a name; --name adds an alias
that every command accepts in place of the id.

EXAMPLES:
   vectl create 101 --ostemplate debian-12-x86_64-minimal --hostname web1 --ipadd 10.199.0.11
   vectl create 102 --ostemplate busybox-1.35-x86_64 --layout copy --name cache
   vectl create 103 --ostemplate debian-12-x86_64-minimal --config vswap-1g --layout image

EXIT STATUS:
   0 created; 20 bad syntax; 21 bad value; 29 no --ostemplate; 44 id or name exists;
   78 an address is used by another VE; 91 template not found; 9 locked; see vectl help exit-codes`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "ostemplate", Usage: "OS template `NAME` (see vectl template list)"},
			&cli.StringFlag{Name: "layout", Value: container.LayoutOverlay, Usage: "private area layout: overlay or copy"},
			&cli.StringFlag{Name: "hostname", Usage: "the VE's host name"},
			&cli.StringFlag{Name: "name", Usage: "a name to use in place of the id"},
			&cli.StringFlag{Name: "description", Usage: "free text shown by list -o description"},
			&cli.StringFlag{Name: "userns", Usage: "yes (default): the VE gets a user namespace of its own, its root an unprivileged host uid; no: a privileged VE, whose root is host root; unset: the --config profile's userns, else userns in " + nodeConfigPath + ", else yes (`yes|no`)"},
			&cli.StringFlag{Name: "nesting", Value: "no", Usage: "yes: a user-namespace VE may run containers of its own (on cgroup v1 its controllers are delegated and writable) (`yes|no`)"},
			&cli.StringSliceFlag{Name: "ipadd", Usage: "an address `ADDR[/PREFIX]` of the VE (repeatable)"},
			&cli.StringSliceFlag{Name: "nameserver", Usage: "DNS server `ADDR` for the VE's resolv.conf, or inherit (repeatable)"},
			&cli.StringSliceFlag{Name: "searchdomain", Usage: "DNS search `DOMAIN`, or inherit (repeatable)"},
			&cli.StringFlag{Name: "config", Usage: "resource profile `NAME` (vswap-256m ... vswap-4g, unlimited, or PROFILE_DIR/NAME.json)"},
		}, resourceFlags()...),
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			limits, err := limitValues(c, givenFlags(c))
			if err != nil {
				return err
			}
			userns, err := createUserNS(c)
			if err != nil {
				return err
			}
			nesting, err := parseYesNo("nesting", c.String("nesting"))
			if err != nil {
				return err
			}
			cfg, err := m.Create(c.Context, container.CreateOptions{
				ID:            id,
				OSTemplate:    c.String("ostemplate"),
				Layout:        c.String("layout"),
				Hostname:      c.String("hostname"),
				Name:          c.String("name"),
				Description:   c.String("description"),
				IPs:           splitList(c.StringSlice("ipadd")),
				Nameservers:   splitList(c.StringSlice("nameserver")),
				SearchDomains: splitList(c.StringSlice("searchdomain")),
				Config:        c.String("config"),
				Limits:        limits,
				UserNS:        userns,
				Nesting:       nesting,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s created from %s (%s layout)\n", cfg.ID, cfg.OSTemplate, cfg.Layout)
			return nil
		},
	}
}

func destroyCommand() *cli.Command {
	return &cli.Command{
		Name:      "destroy",
		Aliases:   []string{"delete"},
		Usage:     "remove a stopped VE and its private area",
		ArgsUsage: "ID",
		Description: `Removes the VE's private area, mount point, config and console log. It also
finishes the job after a create, start or destroy that was killed midway.

EXAMPLES:
   vectl destroy 101

A VE with snapshots is refused (exit 161) unless --force, which removes them with it; layers
a clone of the VE builds on stay until that clone is gone too.

EXIT STATUS:
   0 destroyed; 14 no such VE; 32 the VE is running (stop it first); 161 the VE has
   snapshots (--force); 9 locked`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "force", Usage: "remove the VE's snapshots with it"},
		},
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			if err := m.Destroy(c.Context, id, c.Bool("force")); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s destroyed\n", id)
			return nil
		},
	}
}

func mountCommand() *cli.Command {
	return &cli.Command{
		Name:      "mount",
		Usage:     "mount a VE's root filesystem on the host (ROOT/root/ID)",
		ArgsUsage: "ID",
		Description: `EXAMPLES:
   vectl mount 101 && ls /var/lib/vectl/root/101

EXIT STATUS:
   0 mounted (or already mounted); 14 no such VE; 43 incomplete VE; 50 mount failed`,
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			return m.Mount(id)
		},
	}
}

func umountCommand() *cli.Command {
	return &cli.Command{
		Name:      "umount",
		Usage:     "unmount a stopped VE's root filesystem",
		ArgsUsage: "ID",
		Description: `EXIT STATUS:
   0 unmounted (or was not mounted); 14 no such VE; 32 the VE is running`,
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			return m.Umount(id)
		},
	}
}

// createUserNS decides whether a new VE gets a user namespace of its own: --userns, else the
// --config profile's "userns", else the node's default ("userns" in /etc/vectl/vectl.json),
// else yes.
func createUserNS(c *cli.Context) (bool, error) {
	if c.IsSet("userns") {
		return parseYesNo("userns", c.String("userns"))
	}
	if name := c.String("config"); name != "" {
		v, err := resources.ProfileUserNS(c.String("profile-dir"), name)
		if err != nil {
			return false, err
		}
		if v != "" {
			return v == "yes", nil
		}
	}
	nc, err := readNodeConfig(nodeConfigPath)
	if err != nil {
		return false, err
	}
	if nc.UserNS == "" {
		return true, nil
	}
	b, err := parseYesNo("userns", nc.UserNS)
	if err != nil {
		return false, fmt.Errorf("%s: %w", nodeConfigPath, err)
	}
	return b, nil
}
