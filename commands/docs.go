package commands

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion and man pages, generated from the command definitions themselves (the
// cli app for vectl, the getopt tables for vzctl and vzlist), so that they cannot drift from
// what the parsers take. `make man` writes the man pages at build time; `make install`
// installs both.

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish) for vectl, vzctl or vzlist",
		ArgsUsage: "bash|zsh|fish",
		Description: `Prints the completion script for the shell; --prog chooses the program (vectl, or the
vzctl and vzlist personalities). VE ids are completed from vectl list -a -1.

EXAMPLES:
   vectl completion bash > /etc/bash_completion.d/vectl
   vectl completion fish --prog vzctl > ~/.config/fish/completions/vzctl.fish
   source <(vectl completion zsh)

EXIT STATUS:
   0 printed; 20 unknown shell or program`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "prog", Value: "vectl", Usage: "`PROGRAM` to complete: vectl, vzctl or vzlist"},
		},
		Action: func(c *cli.Context) error {
			spec, err := completionSpec(c.App, c.String("prog"))
			if err != nil {
				return err
			}
			switch c.Args().First() {
			case "bash":
				return writeBash(c.App.Writer, spec)
			case "zsh":
				fmt.Fprintln(c.App.Writer, "# zsh completion for "+spec.prog+": the bash one through bashcompinit")
				fmt.Fprintln(c.App.Writer, "autoload -U +X bashcompinit && bashcompinit")
				return writeBash(c.App.Writer, spec)
			case "fish":
				return writeFish(c.App.Writer, spec)
			}
			return usageErrorf("completion: name a shell: bash, zsh or fish")
		},
	}
}

// compSpec is what a program's completion knows: its commands with their options, the
// global options, and the options that take a value.
type compSpec struct {
	prog     string
	commands []compCommand
	globals  []compOpt
	// ids: the command's non-option words are VE ids (vzctl, vectl), or the program takes
	// ids anywhere (vzlist: no commands).
	fields []string // vzlist: the values of -o and -s
}

type compCommand struct {
	name, usage string
	opts        []compOpt
}

type compOpt struct {
	long, short, usage string
	value              bool
}

func completionSpec(app *cli.App, prog string) (compSpec, error) {
	switch prog {
	case "vectl":
		sp := compSpec{prog: prog, globals: cliOpts(app.Flags)}
		for _, c := range app.Commands {
			if c.Hidden {
				continue
			}
			cc := compCommand{name: c.Name, usage: c.Usage, opts: cliOpts(c.Flags)}
			sp.commands = append(sp.commands, cc)
			for _, sc := range c.Subcommands {
				sp.commands = append(sp.commands, compCommand{name: c.Name + " " + sc.Name, usage: sc.Usage, opts: cliOpts(sc.Flags)})
			}
		}
		return sp, nil
	case "vzctl":
		sp := compSpec{prog: prog, globals: []compOpt{{long: "quiet"}, {long: "verbose"}, {long: "skiplock"}, {long: "help"}, {long: "version"}}}
		names := make([]string, 0, len(vzctlCommands))
		for n := range vzctlCommands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			cc := compCommand{name: n}
			for _, o := range vzctlOptions(n) {
				if vzctlNotFor(n, o.name) {
					continue
				}
				cc.opts = append(cc.opts, compOpt{long: o.name, value: o.hasArg})
			}
			sp.commands = append(sp.commands, cc)
		}
		return sp, nil
	case "vzlist":
		sp := compSpec{prog: prog}
		for _, o := range vzlistLongs {
			short := o.key
			if short == "e" {
				short = "" // --help has no short form
			}
			sp.globals = append(sp.globals, compOpt{long: o.name, short: short, value: o.hasArg})
		}
		sp.globals = append(sp.globals, compOpt{short: "1"})
		for _, f := range vzFields() {
			sp.fields = append(sp.fields, f.name)
		}
		return sp, nil
	}
	return compSpec{}, usageErrorf("completion: --prog %q: use vectl, vzctl or vzlist", prog)
}

// vzctlNotFor tells the options vzctl's start/stop table has that the other refuses.
func vzctlNotFor(cmd, opt string) bool {
	startOnly := []string{"force", "skip_ve_setup", "wait", "skip-fsck", "skip-remount"}
	switch cmd {
	case "start":
		return opt == "fast" || opt == "skip-umount"
	case "stop":
		return slices.Contains(startOnly, opt)
	}
	return false
}

// topNames are the commands without their subcommands.
func (sp compSpec) topNames() []string {
	var names []string
	for _, c := range sp.commands {
		if !strings.Contains(c.name, " ") {
			names = append(names, c.name)
		}
	}
	return names
}

func cliOpts(fs []cli.Flag) []compOpt {
	var out []compOpt
	for _, f := range fs {
		names := f.Names()
		o := compOpt{long: names[0]}
		for _, n := range names[1:] {
			if len(n) == 1 {
				o.short = n
			}
		}
		if len(o.long) == 1 {
			o.short, o.long = o.long, ""
		}
		if d, ok := f.(cli.DocGenerationFlag); ok {
			o.usage = d.GetUsage()
			o.value = d.TakesValue()
		}
		out = append(out, o)
	}
	return out
}

func (o compOpt) words() []string {
	var w []string
	if o.long != "" {
		w = append(w, "--"+o.long)
	}
	if o.short != "" {
		w = append(w, "-"+o.short)
	}
	return w
}

func optWords(os []compOpt) string {
	var w []string
	for _, o := range os {
		w = append(w, o.words()...)
	}
	return strings.Join(w, " ")
}

func valueWords(os []compOpt) string {
	var w []string
	for _, o := range os {
		if o.value {
			w = append(w, o.words()...)
		}
	}
	return strings.Join(w, "|")
}

func writeBash(w io.Writer, sp compSpec) error {
	fn := "_" + sp.prog + "_complete"
	var b strings.Builder
	fmt.Fprintf(&b, "# bash completion for %s, generated by `vectl completion bash --prog %s`\n", sp.prog, sp.prog)
	fmt.Fprintf(&b, "%s() {\n", fn)
	b.WriteString("\tlocal cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i\n")
	b.WriteString("\tlocal ids=\"$(vectl list -a -1 2>/dev/null)\"\n")
	if sp.prog == "vzlist" {
		fmt.Fprintf(&b, "\tcase $prev in\n\t\t-o|--output|-s|--sort) COMPREPLY=($(compgen -W %q -- \"${cur#-}\")); return;;\n", strings.Join(sp.fields, " "))
		fmt.Fprintf(&b, "\t\t%s) return;;\n\tesac\n", valueWords(sp.globals))
		fmt.Fprintf(&b, "\tif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n", optWords(sp.globals))
		b.WriteString("\tCOMPREPLY=($(compgen -W \"$ids\" -- \"$cur\"))\n}\n")
		fmt.Fprintf(&b, "complete -F %s %s\n", fn, sp.prog)
		_, err := io.WriteString(w, b.String())
		return err
	}
	names := sp.topNames()
	// The first word that is not an option (nor a global option's value) is the command.
	b.WriteString("\tfor ((i=1; i<COMP_CWORD; i++)); do\n\t\tcase ${COMP_WORDS[i]} in\n")
	if v := valueWords(sp.globals); v != "" {
		fmt.Fprintf(&b, "\t\t%s) ((i++));;\n", v)
	}
	b.WriteString("\t\t-*) ;;\n\t\t*) cmd=${COMP_WORDS[i]}; break;;\n\t\tesac\n\tdone\n")
	fmt.Fprintf(&b, "\tif [[ -z $cmd ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n",
		strings.Join(names, " ")+" "+optWords(sp.globals))
	b.WriteString("\tlocal opts= vals=\n\tcase $cmd in\n")
	for _, c := range sp.commands {
		if strings.Contains(c.name, " ") {
			continue
		}
		var subs []string
		for _, s := range sp.commands {
			if strings.HasPrefix(s.name, c.name+" ") {
				subs = append(subs, strings.TrimPrefix(s.name, c.name+" "))
			}
		}
		fmt.Fprintf(&b, "\t\t%s) opts=%q; vals=%q", c.name, optWords(c.opts), valueWords(c.opts))
		if len(subs) > 0 {
			fmt.Fprintf(&b, "; ids=%q", strings.Join(subs, " "))
		}
		b.WriteString(";;\n")
	}
	b.WriteString("\tesac\n")
	b.WriteString("\tif [[ -n $vals && \"|$vals|\" == *\"|$prev|\"* ]]; then return; fi\n")
	b.WriteString("\tif [[ $cur == -* ]]; then COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\")); return; fi\n")
	b.WriteString("\tCOMPREPLY=($(compgen -W \"$ids\" -- \"$cur\"))\n}\n")
	fmt.Fprintf(&b, "complete -F %s %s\n", fn, sp.prog)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFish(w io.Writer, sp compSpec) error {
	var b strings.Builder
	p := sp.prog
	fmt.Fprintf(&b, "# fish completion for %s, generated by `vectl completion fish --prog %s`\n", p, p)
	fmt.Fprintf(&b, "complete -c %s -f\n", p)
	fishOpt := func(cond string, o compOpt) {
		fmt.Fprintf(&b, "complete -c %s", p)
		if cond != "" {
			fmt.Fprintf(&b, " -n %s", fishQuote(cond))
		}
		if o.long != "" {
			fmt.Fprintf(&b, " -l %s", o.long)
		}
		if o.short != "" {
			fmt.Fprintf(&b, " -s %s", o.short)
		}
		if o.value {
			b.WriteString(" -r")
		}
		if o.usage != "" {
			fmt.Fprintf(&b, " -d %s", fishQuote(firstLine(o.usage)))
		}
		b.WriteString("\n")
	}
	for _, o := range sp.globals {
		fishOpt("", o)
	}
	if sp.prog == "vzlist" {
		fmt.Fprintf(&b, "complete -c %s -n %s -a %s\n", p, fishQuote("__fish_seen_argument -s o -s s -l output -l sort"), fishQuote(strings.Join(sp.fields, " ")))
		fmt.Fprintf(&b, "complete -c %s -a '(vectl list -a -1 2>/dev/null)'\n", p)
		_, err := io.WriteString(w, b.String())
		return err
	}
	names := sp.topNames()
	for _, c := range sp.commands {
		if parent, sub, ok := strings.Cut(c.name, " "); ok {
			fmt.Fprintf(&b, "complete -c %s -n %s -a %s", p, fishQuote("__fish_seen_subcommand_from "+parent), sub)
		} else {
			fmt.Fprintf(&b, "complete -c %s -n __fish_use_subcommand -a %s", p, c.name)
		}
		if c.usage != "" {
			fmt.Fprintf(&b, " -d %s", fishQuote(firstLine(c.usage)))
		}
		b.WriteString("\n")
		for _, o := range c.opts {
			fishOpt("__fish_seen_subcommand_from "+strings.Fields(c.name)[len(strings.Fields(c.name))-1], o)
		}
	}
	fmt.Fprintf(&b, "complete -c %s -n %s -a '(vectl list -a -1 2>/dev/null)'\n", p, fishQuote("__fish_seen_subcommand_from "+strings.Join(names, " ")))
	_, err := io.WriteString(w, b.String())
	return err
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// manCommand prints a man page in roff: vectl(8), vzctl(8) or vzlist(8).
func manCommand() *cli.Command {
	return &cli.Command{
		Name:      "man",
		Usage:     "print the man page of vectl, vzctl or vzlist (roff)",
		ArgsUsage: "[vectl|vzctl|vzlist]",
		Hidden:    true,
		Action: func(c *cli.Context) error {
			switch prog := c.Args().First(); prog {
			case "", "vectl":
				return writeVectlMan(c.App.Writer, NewApp(Streams{}))
			case "vzctl", "vzlist":
				return writePersonalityMan(c.App.Writer, prog)
			default:
				return usageErrorf("man: %q: use vectl, vzctl or vzlist", prog)
			}
		},
	}
}

// roff escapes text for a man page: backslashes, and a leading dot or quote.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, ".") || strings.HasPrefix(line, "'") {
			line = `\&` + line
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func writeVectlMan(w io.Writer, app *cli.App) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH VECTL 8 \"\" \"vectl %s\" \"System Administration\"\n", roff(Version))
	b.WriteString(".SH NAME\nvectl \\- " + roff(app.Usage) + "\n")
	b.WriteString(".SH SYNOPSIS\n.B vectl\n[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]\n")
	b.WriteString(".SH DESCRIPTION\nvectl makes and runs OpenVZ-style Virtual Environments (VEs) on a stock Linux kernel, " +
		"one static binary with no daemon. Run as \\fBvzctl\\fR or \\fBvzlist\\fR (the links \\fBmake install\\fR makes) it " +
		"follows vzctl's and vzlist's command lines; see \\fBvzctl\\fR(8) and \\fBvzlist\\fR(8).\n")
	b.WriteString(".SH GLOBAL OPTIONS\n")
	manFlags(&b, app.Flags)
	b.WriteString(".SH COMMANDS\n")
	for _, c := range app.Commands {
		if c.Hidden {
			continue
		}
		manCmd(&b, c, "")
	}
	b.WriteString(".SH EXIT STATUS\n")
	for _, row := range exitCodes {
		fmt.Fprintf(&b, ".TP\n.B %d\n%s\n", row.code, roff(row.meaning))
	}
	b.WriteString(".TP\n.B N\nexec: the command's own exit status (128+N when killed by signal N)\n")
	b.WriteString(".SH SEE ALSO\n\\fBvzctl\\fR(8), \\fBvzlist\\fR(8), the README (/usr/share/doc/vectl/README.md)\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func manCmd(b *strings.Builder, c *cli.Command, parent string) {
	name := strings.TrimSpace(parent + " " + c.Name)
	fmt.Fprintf(b, ".SS %s\n", roff(strings.TrimSpace(name+" "+c.ArgsUsage)))
	b.WriteString(roff(c.Usage) + ".\n")
	if c.Description != "" {
		b.WriteString(".PP\n.nf\n" + roff(c.Description) + "\n.fi\n")
	}
	if len(c.Flags) > 0 {
		b.WriteString(".PP\nOptions:\n")
		manFlags(b, c.Flags)
	}
	for _, sc := range c.Subcommands {
		manCmd(b, sc, name)
	}
}

func manFlags(b *strings.Builder, fs []cli.Flag) {
	for _, o := range cliOpts(fs) {
		words := o.words()
		for i, w := range words {
			words[i] = `\fB` + strings.ReplaceAll(w, "-", `\-`) + `\fR`
		}
		arg := ""
		if o.value {
			arg = " \\fIVALUE\\fR"
		}
		fmt.Fprintf(b, ".TP\n%s%s\n%s\n", strings.Join(words, ", "), arg, roff(o.usage))
	}
}

func writePersonalityMan(w io.Writer, prog string) error {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s 8 \"\" \"vectl %s\" \"System Administration\"\n", strings.ToUpper(prog), roff(Version))
	switch prog {
	case "vzctl":
		b.WriteString(".SH NAME\nvzctl \\- vectl's vzctl personality: vzctl 4.11's command line for vectl VEs\n")
		b.WriteString(".SH SYNOPSIS\n.nf\n")
		var u strings.Builder
		vzctlUsage(&u)
		_, usage, _ := strings.Cut(u.String(), "Usage: ")
		b.WriteString(roff("Usage: "+usage) + ".fi\n")
	case "vzlist":
		b.WriteString(".SH NAME\nvzlist \\- vectl's vzlist personality: vzlist 4.11's listing of vectl VEs\n")
		b.WriteString(".SH SYNOPSIS\n.nf\n" + roff(vzlistUsage) + ".fi\n")
		b.WriteString(".SH FIELDS\n.nf\n")
		for _, f := range vzFields() {
			fmt.Fprintf(&b, "%-15s %s\n", f.name, f.hdr)
		}
		b.WriteString(".fi\n")
	}
	fmt.Fprintf(&b, ".SH DESCRIPTION\n\\fB%s\\fR is \\fBvectl\\fR(8) run under the name %s. It takes %s 4.11's options "+
		"(getopt syntax), prints its messages and formats and exits with its statuses, as vzctl's and vzlist's own "+
		"man pages describe them. vectl's settings come from the environment (VECTL_ROOT, VECTL_RUN_DIR, ...; "+
		"see \\fBvectl\\fR(8)).\n.PP\nWhere the %s personality and vectl's own command line differ, and what of "+
		"%s is not there on a stock kernel, is listed in the compatibility table of the README, section "+
		"\"vzctl and vzlist\" (/usr/share/doc/vectl/README.md).\n", prog, prog, prog, prog, prog)
	b.WriteString(".SH FILES\n/etc/vz/vz.conf, /etc/vz/conf/\\fIID\\fR.conf: vzctl's view of each VE's config, written by vectl from its config.json.\n")
	b.WriteString(".SH SEE ALSO\n\\fBvectl\\fR(8)\n")
	_, err := io.WriteString(w, b.String())
	return err
}
