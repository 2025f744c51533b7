package commands

import (
	"fmt"
	"strconv"

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

Settings applied at the next start:
   --name N             alias for the id ("" removes it)
   --description D      free text
   --monitor yes|no     run with or without a resident monitor (no: no console, and an
                        in-VE reboot means stop)
   --stop-signal S      how stop asks the init to shut down: a signal (SIGRTMIN+3, SIGUSR2,
                        SIGPWR, ...) or halt (/sbin/halt inside); "" detects it from the init
   --stop-timeout S     seconds stop waits before killing (0: default 120)

EXAMPLES:
   vectl set 101 --monitor no --save
   vectl set 101 --stop-timeout 30 --save

EXIT STATUS:
   0 done; 14 no such VE; 20 a next-start setting without --save; 21 bad value; 44 name taken`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "save", Usage: "persist the settings in the VE's config"},
			&cli.StringFlag{Name: "name", Usage: "alias `NAME` for the id"},
			&cli.StringFlag{Name: "description", Usage: "free `TEXT`"},
			&cli.StringFlag{Name: "monitor", Usage: "`yes|no`: resident monitor"},
			&cli.StringFlag{Name: "stop-signal", Usage: "`SIGNAL` or halt"},
			&cli.StringFlag{Name: "stop-timeout", Usage: "`SECONDS` for a graceful stop"},
		},
		Action: func(c *cli.Context) error {
			id, err := oneID(c)
			if err != nil {
				return err
			}
			o := container.SetOptions{Save: c.Bool("save")}
			str := func(name string) *string {
				if !c.IsSet(name) {
					return nil
				}
				v := c.String(name)
				return &v
			}
			o.Name, o.Description, o.StopSignal = str("name"), str("description"), str("stop-signal")
			if v := str("monitor"); v != nil {
				b, err := parseYesNo("monitor", *v)
				if err != nil {
					return err
				}
				o.Monitor = &b
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
			msg, err := m.Set(id, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "VE %s: %s\n", id, msg)
			return nil
		},
	}
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
