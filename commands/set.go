package commands

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
)

func setCommand() *cli.Command {
	return &cli.Command{
		Name:      "set",
		Usage:     "change a VE's settings (live where possible, persist with --save)",
		ArgsUsage: "ID [--save] SETTINGS...",
		Description: `As vzctl set: settings that can change on a running VE apply at once; --save also
stores them in the VE's config. Settings that only take effect at the next start need --save
(without it vectl refuses rather than lose the change).

Settings applied at once to a running VE (and at every start once saved):
   --hostname H         host name; also written to /etc/hostname and the /etc/hosts line
   --ipadd ADDR[/P]     add an address (repeatable; the pool's prefix length by default).
                        An address of a routed pool goes on eth0, one of a bridged pool on the
                        VE's interface on that bridge. Used by another VE: exit 78.
   --ipdel ADDR|all     remove an address (repeatable)
   --nameserver A|inherit, --searchdomain D|inherit
                        written to /etc/resolv.conf (repeatable; inherit copies the host's)
   --netif_add IF[,bridge=BR][,mac=MAC][,host_ifname=NAME][,router=yes|no]
                        add a bridged interface (like vzctl's veth); its addresses are the
                        VE's addresses in that bridge's pool. router=yes lets the VE send
                        router advertisements, redirects and DHCP server replies there
                        (it is the bridge's router or DHCP server); they are dropped otherwise
   --netif_del IF|all   remove a bridged interface

Resources, applied at once to a running VE through its cgroups (vzctl's names, units and
suffixes; see the flags below): --cpuunits --cpulimit --cpus --cpumask --nodemask --ram
--swap --numproc --ioprio --iolimit --iopslimit; --diskspace grows a running VE's disk image
online (shrinking needs the VE stopped). --numfile takes effect at the next start.
--applyconfig NAME applies the resource settings of a profile (identity and network untouched).

Settings applied at the next start:
   --name N             alias for the id ("" removes it)
   --description D      free text
   --monitor yes|no     run with or without a resident monitor (no: no console, and an
                        in-VE reboot means stop)
   --stop-signal S      how stop asks the init to shut down: a signal (SIGRTMIN+3, SIGUSR2,
                        SIGPWR, ...) or halt (/sbin/halt inside); "" detects it from the init
   --stop-timeout S     seconds stop waits before killing (0: default 120)
   --onboot yes|no      vectl boot (the vectl-boot.service unit) starts the VE
   --bootorder N        VEs with a higher bootorder start first

Without --save, live settings change the running VE only (until it stops), and vectl says
so; on a stopped VE every setting needs --save. A set is all or nothing: if a step fails on
a running VE, the steps already applied are undone and the config is left as it was.
--json prints what was done: {"id", "live", "stored", "saved", "running"}.

EXAMPLES:
   vectl set 101 --ipadd 10.199.0.12 --save
   vectl set 101 --ipdel all --ipadd fd99:199::11 --save
   vectl set 101 --nameserver 10.199.0.1 --searchdomain example.com --save
   vectl set 101 --ram 1G --swap 512M --cpulimit 50 --save
   vectl set 101 --applyconfig vswap-2g --save
   vectl set 101 --monitor no --save

EXIT STATUS:
   0 done; 14 no such VE; 20 a next-start setting without --save (or any setting of a
   stopped VE); 21 bad value; 44 name taken; 78 address used by another VE`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "save", Usage: "persist the settings in the VE's config"},
			&cli.BoolFlag{Name: "json", Usage: "print what was done as JSON"},
			&cli.StringFlag{Name: "name", Usage: "alias `NAME` for the id"},
			&cli.StringFlag{Name: "description", Usage: "free `TEXT`"},
			&cli.StringFlag{Name: "monitor", Usage: "`yes|no`: resident monitor"},
			&cli.StringFlag{Name: "stop-signal", Usage: "`SIGNAL` or halt"},
			&cli.StringFlag{Name: "stop-timeout", Usage: "`SECONDS` for a graceful stop"},
			&cli.StringFlag{Name: "onboot", Usage: "`yes|no`: vectl boot starts the VE"},
			&cli.StringFlag{Name: "nesting", Usage: "`yes|no`: a user-namespace VE may run containers of its own, from its next start"},
			&cli.StringFlag{Name: "meminfo", Usage: "`none|privvmpages:1`: the host's /proc/meminfo, cpuinfo, loadavg, stat, swaps and diskstats inside the VE, or its own (the default), from its next start"},
			&cli.StringFlag{Name: "bootorder", Usage: "`N`: VEs with a higher bootorder start first"},
			&cli.StringFlag{Name: "hostname", Usage: "host `NAME`"},
			&cli.StringSliceFlag{Name: "ipadd", Usage: "add `ADDR[/PREFIX]`"},
			&cli.StringSliceFlag{Name: "ipdel", Usage: "remove `ADDR` (or all)"},
			&cli.StringSliceFlag{Name: "nameserver", Usage: "DNS server `ADDR` (or inherit)"},
			&cli.StringSliceFlag{Name: "searchdomain", Usage: "DNS search `DOMAIN` (or inherit)"},
			&cli.StringSliceFlag{Name: "netif_add", Usage: "add a bridged interface `IF[,bridge=BR][,mac=MAC][,host_ifname=NAME][,router=yes]`"},
			&cli.StringSliceFlag{Name: "netif_del", Usage: "remove bridged interface `IF` (or all)"},
			&cli.StringFlag{Name: "userns", Usage: "yes: a user namespace of its own; no: privileged (a stopped VE, with --save) (`yes|no`)"},
			&cli.StringFlag{Name: "applyconfig", Usage: "apply the resource settings of profile `NAME`"},
			&cli.StringFlag{Name: "disabled", Usage: "`yes|no`: yes keeps the VE from starting (start --force still does; boot skips it)"},
			&cli.StringSliceFlag{Name: "capability", Usage: "`NAME:on|off`: a capability (net_admin, sys_time, ...) on or off from the next start"},
			&cli.StringSliceFlag{Name: "devices", Usage: "`b|c:MAJOR:MINOR|all:r|w|rw|none`: the VE may use these host devices (next start)"},
			&cli.StringSliceFlag{Name: "devnodes", Usage: "`NAME:r|w|rw|none`: the VE gets the host's /dev/NAME (net/tun, fuse, ...) (next start)"},
			&cli.StringSliceFlag{Name: "features", Usage: "`NAME:on|off`: vzctl's features (ppp gives /dev/ppp; the others change nothing here)"},
		}, resourceFlags()...),
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o := container.SetOptions{Save: c.Bool("save")}
			given := givenFlags(c)
			str := func(name string) *string {
				if !given[name] {
					return nil
				}
				v := c.String(name)
				return &v
			}
			o.Name, o.Description, o.StopSignal = str("name"), str("description"), str("stop-signal")
			o.Hostname = str("hostname")
			o.IPAdd, o.IPDel = splitList(c.StringSlice("ipadd")), splitList(c.StringSlice("ipdel"))
			o.Nameservers, o.SearchDomains = splitList(c.StringSlice("nameserver")), splitList(c.StringSlice("searchdomain"))
			// netif_add values contain commas of their own: never split them.
			o.NetIfAdd, o.NetIfDel = c.StringSlice("netif_add"), splitList(c.StringSlice("netif_del"))
			o.ApplyConfig = c.String("applyconfig")
			if o.Limits, err = limitValues(c, given); err != nil {
				return err
			}
			if v := str("monitor"); v != nil {
				b, err := parseYesNo("monitor", *v)
				if err != nil {
					return err
				}
				o.Monitor = &b
			}
			if v := str("userns"); v != nil {
				b, err := parseYesNo("userns", *v)
				if err != nil {
					return err
				}
				o.UserNS = &b
			}
			if v := str("meminfo"); v != nil {
				o.Meminfo = v
			}
			if v := str("nesting"); v != nil {
				b, err := parseYesNo("nesting", *v)
				if err != nil {
					return err
				}
				o.Nesting = &b
			}
			if v := str("disabled"); v != nil {
				b, err := parseYesNo("disabled", *v)
				if err != nil {
					return err
				}
				o.Disabled = &b
			}
			o.Capabilities, o.Features = splitList(c.StringSlice("capability")), splitList(c.StringSlice("features"))
			o.Devices, o.DevNodes = splitList(c.StringSlice("devices")), splitList(c.StringSlice("devnodes"))
			if v := str("onboot"); v != nil {
				b, err := parseYesNo("onboot", *v)
				if err != nil {
					return err
				}
				o.OnBoot = &b
			}
			if v := str("bootorder"); v != nil {
				n, err := strconv.Atoi(*v)
				if err != nil {
					return fmt.Errorf("%w: bootorder %q: use a whole number", container.ErrInvalidValue, *v)
				}
				o.BootOrder = &n
			}
			if v := str("stop-timeout"); v != nil {
				n, err := strconv.Atoi(*v)
				if err != nil {
					return fmt.Errorf("%w: stop timeout %q: use whole seconds", container.ErrInvalidValue, *v)
				}
				o.StopTimeout = &n
			}
			m, err := manager(c)
			if err != nil {
				return err
			}
			res, err := m.Set(c.Context, id, o)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, res)
			}
			fmt.Fprintf(c.App.Writer, "VE %s: %s\n", id, res)
			return nil
		},
	}
}

// splitList flattens repeatable values that may also be comma- or space-separated, as
// vzctl's --ipadd "a b" and --nameserver "x,y" are written.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	return out
}

// parseYesNo accepts vzctl's yes/no (and on/off, true/false).
func parseYesNo(name, v string) (bool, error) {
	switch v {
	case "yes", "on", "true":
		return true, nil
	case "no", "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s %q: use yes or no", container.ErrInvalidValue, name, v)
}
