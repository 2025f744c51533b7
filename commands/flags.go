package commands

import (
	"slices"

	"github.com/urfave/cli/v2"
)

// Flag handling in urfave/cli v2 costs more than vectl's own work on a short command such as
// `set --ipadd`: each IsSet of a flag that was not given walks every flag of the command
// calling Names(), which runs a regular expression per name, and urfave/cli asks that of
// every flag after parsing (runFlagActions), so `set` with its 60 flags made thousands of
// regexp calls per run; App.Setup also renders the help line of every categorised flag of
// every command. streamline takes both out of runs that print no help.

// The flag types vectl uses, each with its names computed once.
type (
	namedString struct {
		*cli.StringFlag
		names []string
	}
	namedStringSlice struct {
		*cli.StringSliceFlag
		names []string
	}
	namedBool struct {
		*cli.BoolFlag
		names []string
	}
	namedInt struct {
		*cli.IntFlag
		names []string
	}
)

func (f namedString) Names() []string      { return f.names }
func (f namedStringSlice) Names() []string { return f.names }
func (f namedBool) Names() []string        { return f.names }
func (f namedInt) Names() []string         { return f.names }

// cacheNames wraps a flag of a known type so that Names() returns a slice made once; other
// flags are returned as they are. The names are the flag's Name and Aliases: what urfave/cli's
// FlagNames makes of them for names without commas or spaces, which vectl's never have
// (TestStreamline checks).
func cacheNames(f cli.Flag) cli.Flag {
	names := func(name string, aliases []string) []string {
		return append([]string{name}, aliases...)
	}
	switch f := f.(type) {
	case *cli.StringFlag:
		return namedString{f, names(f.Name, f.Aliases)}
	case *cli.StringSliceFlag:
		return namedStringSlice{f, names(f.Name, f.Aliases)}
	case *cli.BoolFlag:
		return namedBool{f, names(f.Name, f.Aliases)}
	case *cli.IntFlag:
		return namedInt{f, names(f.Name, f.Aliases)}
	}
	return f
}

// helpOnly completes the descriptions of commands whose help text takes work to make; it
// runs only when help is asked for.
var helpOnly = map[string]func(c *cli.Command){
	"exit-codes": func(c *cli.Command) { c.Description += "\n\n" + exitCodesText() },
}

// streamline prepares app for one run with args: unless args ask for help, flag categories
// (which only group the help output) are dropped; with help, the descriptions of helpOnly are
// completed. The names of the app's flags and of the flags of the commands named in args
// are cached (other commands do not run).
func streamline(app *cli.App, args []string) {
	help := slices.ContainsFunc(args, func(a string) bool {
		return a == "help" || a == "h" || a == "-h" || a == "--help"
	})
	var walk func(fs []cli.Flag, cmds []*cli.Command, run bool)
	walk = func(fs []cli.Flag, cmds []*cli.Command, run bool) {
		for i, f := range fs {
			if sf, ok := f.(*cli.StringFlag); ok && !help {
				sf.Category = ""
			}
			if run {
				fs[i] = cacheNames(f)
			}
		}
		for _, c := range cmds {
			if complete := helpOnly[c.Name]; help && complete != nil {
				complete(c)
			}
			walk(c.Flags, c.Subcommands, slices.ContainsFunc(args, c.HasName))
		}
	}
	walk(app.Flags, app.Commands, true)
}
