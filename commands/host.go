package commands

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/network"
)

func hostCommand() *cli.Command {
	return &cli.Command{
		Name:  "host",
		Usage: "the host-wide set-up of this vectl instance",
		Subcommands: []*cli.Command{{
			Name:  "cleanup",
			Usage: "undo this instance's host-wide network set-up (no VE of it may run)",
			Description: `Removes what vectl put on the host for this instance (its --firewall-table,
--network-config and --root): the nftables tables "inet NAME" and "bridge NAME", the
unreachable routes of its address pools, proxy ARP/NDP entries for pool addresses on its
neighbour devices, and the pools' bridges that vectl's bridge plugin created, once they have no
ports. The sysctls vectl changed (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding,
proxy_ndp) go back to the values they had before the first vectl changed them, once no other
vectl instance's tables remain on the host, and only where they still have the value vectl
wrote. Running it again finds nothing to do. A VE started later sets everything up again.

EXAMPLES:
   vectl stop 101 && vectl host cleanup
   vectl --firewall-table vectl-test --network-config test.json host cleanup --json

EXIT STATUS:
   0 cleaned up (or nothing to do); 32 a VE of this instance is running (nothing changed);
   9 a VE is locked by another vectl; 3 a step failed (the others were still done)`,
			Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return usageErrorf("host cleanup: takes no arguments, got %d", c.NArg())
				}
				m, err := manager(c)
				if err != nil {
					return err
				}
				res, err := m.HostCleanup(c.Context)
				if res != nil {
					var werr error
					if c.Bool("json") {
						werr = writeJSON(c.App.Writer, res)
					} else {
						werr = writeHostCleanup(c, res)
					}
					if err == nil {
						err = werr
					}
				}
				return err
			},
		}},
	}
}

// writeHostCleanup prints one line per thing removed, restored or kept.
func writeHostCleanup(c *cli.Context, r *network.HostCleanup) error {
	w := c.App.Writer
	n := 0
	say := func(format string, args ...any) {
		n++
		fmt.Fprintf(w, format+"\n", args...)
	}
	for _, t := range r.Tables {
		say("removed nftables table %s", t)
	}
	for _, rt := range r.Routes {
		say("removed route %s", rt)
	}
	for _, p := range r.Proxies {
		say("removed proxy entry %s", p)
	}
	for _, b := range r.Bridges {
		say("removed bridge %s", b)
	}
	for _, s := range r.Sysctls {
		say("restored %s = %s (vectl had set %s)", s.Name, s.To, s.From)
	}
	for _, k := range r.Kept {
		say("kept %s", k)
	}
	if n == 0 {
		say("nothing to clean up")
	}
	return nil
}
