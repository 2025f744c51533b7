package commands

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
)

// listField is one column vzlist-style list can show (-o), sort by (-s) and emit in JSON.
type listField struct {
	name   string
	header string
	right  bool
	text   func(container.Entry) string
	value  func(container.Entry) any
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cfgString(f func(*container.Config) string) func(container.Entry) string {
	return func(e container.Entry) string {
		if e.Config == nil {
			return "-"
		}
		return dash(f(e.Config))
	}
}

func textValue(text func(container.Entry) string) func(container.Entry) any {
	return func(e container.Entry) any {
		if s := text(e); s != "-" {
			return s
		}
		return nil
	}
}

// listFields are the known fields, in the order list -j emits them without -o.
var listFields = func() []listField {
	fs := []listField{
		{name: "ctid", header: "CTID", right: true,
			text:  func(e container.Entry) string { return e.Status.ID },
			value: func(e container.Entry) any { return e.Status.ID }},
		{name: "name", header: "NAME", text: cfgString(func(c *container.Config) string { return c.Name })},
		{name: "hostname", header: "HOSTNAME", text: cfgString(func(c *container.Config) string { return c.Hostname })},
		{name: "status", header: "STATUS",
			text: func(e container.Entry) string {
				if e.Problem != "" {
					return "broken"
				}
				return e.Status.State()
			}},
		{name: "numproc", header: "NPROC", right: true,
			text: func(e container.Entry) string {
				if !e.Status.Running {
					return "-"
				}
				return strconv.Itoa(e.Status.NumProc)
			},
			value: func(e container.Entry) any {
				if !e.Status.Running {
					return nil
				}
				return e.Status.NumProc
			}},
		{name: "ip", header: "IP_ADDR",
			text: func(e container.Entry) string { return dash(strings.Join(e.IPs, " ")) },
			value: func(e container.Entry) any {
				if e.IPs == nil {
					return []string{}
				}
				return e.IPs
			}},
		{name: "ostemplate", header: "OSTEMPLATE", text: cfgString(func(c *container.Config) string { return c.OSTemplate })},
		{name: "layout", header: "LAYOUT", text: cfgString(func(c *container.Config) string { return c.Layout })},
		{name: "description", header: "DESCRIPTION", text: cfgString(func(c *container.Config) string { return c.Description })},
	}
	for i := range fs {
		if fs[i].value == nil {
			fs[i].value = textValue(fs[i].text)
		}
	}
	return fs
}()

// fieldAliases are vzlist's other names for a field.
var fieldAliases = map[string]string{"veid": "ctid", "ip_addr": "ip", "nproc": "numproc"}

func lookupField(name string) (listField, error) {
	name = strings.ToLower(name)
	if a, ok := fieldAliases[name]; ok {
		name = a
	}
	for _, f := range listFields {
		if f.name == name {
			return f, nil
		}
	}
	names := make([]string, len(listFields))
	for i, f := range listFields {
		names[i] = f.name
	}
	return listField{}, fmt.Errorf("%w: unknown field %q: use one of %s", container.ErrInvalidValue, name, strings.Join(names, ","))
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list VEs (vzlist)",
		ArgsUsage: "[ID...]",
		Description: `Lists running VEs, or all with -a, or only stopped ones with -S, like vzlist.
Default columns: ctid,numproc,status,ip,hostname. Status is derived live.

Fields (-o, -s): ctid name hostname status numproc ip ostemplate layout description

EXAMPLES:
   vectl list -a
   vectl list -a -H -o ctid,status -s -ctid
   vectl list -a -j
   vectl list -1          (ids of running VEs, one per line)

EXIT STATUS:
   0 listed (also when there is nothing to list: -j prints []); 14 a named VE does not
   exist; 21 unknown field`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Aliases: []string{"a"}, Usage: "list all VEs, not only running ones"},
			&cli.BoolFlag{Name: "stopped", Aliases: []string{"S"}, Usage: "list only VEs that are not running"},
			&cli.BoolFlag{Name: "no-header", Aliases: []string{"H"}, Usage: "omit the header line"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "comma-separated `FIELDS` to show"},
			&cli.StringFlag{Name: "sort", Aliases: []string{"s"}, Usage: "sort by `FIELD` (prefix - to reverse)"},
			&cli.BoolFlag{Name: "json", Aliases: []string{"j"}, Usage: "print JSON"},
			&cli.BoolFlag{Name: "1", Usage: "print only the ids, one per line"},
		},
		Action: runList,
	}
}

func runList(c *cli.Context) error {
	fields := []string{"ctid", "numproc", "status", "ip", "hostname"}
	if o := c.String("output"); o != "" {
		fields = strings.Split(o, ",")
	} else if c.Bool("json") {
		fields = nil
		for _, f := range listFields {
			fields = append(fields, f.name)
		}
	}
	if c.Bool("1") {
		fields = []string{"ctid"}
	}
	cols := make([]listField, 0, len(fields))
	for _, name := range fields {
		f, err := lookupField(name)
		if err != nil {
			return err
		}
		cols = append(cols, f)
	}
	sortBy, reverse := c.String("sort"), false
	if strings.HasPrefix(sortBy, "-") {
		sortBy, reverse = sortBy[1:], true
	}
	if sortBy == "" {
		sortBy = "ctid"
	}
	key, err := lookupField(sortBy)
	if err != nil {
		return err
	}

	m, err := manager(c)
	if err != nil {
		return err
	}
	entries, err := m.List(c.Context)
	if err != nil {
		return err
	}
	entries, err = filterEntries(entries, c.Args().Slice(), c.Bool("all"), c.Bool("stopped"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Problem != "" {
			fmt.Fprintf(c.App.ErrWriter, "vectl: warning: VE %s: %s\n", e.Status.ID, e.Problem)
		}
	}
	sortEntries(entries, key, reverse)

	if c.Bool("json") {
		out := make([]map[string]any, 0, len(entries))
		for _, e := range entries {
			obj := make(map[string]any, len(cols))
			for _, f := range cols {
				obj[f.name] = f.value(e)
			}
			out = append(out, obj)
		}
		return writeJSON(c.App.Writer, out)
	}
	t := &table{}
	for _, f := range cols {
		t.header = append(t.header, f.header)
		t.right = append(t.right, f.right)
	}
	for _, e := range entries {
		row := make([]string, len(cols))
		for i, f := range cols {
			row[i] = f.text(e)
		}
		t.add(row...)
	}
	return t.write(c.App.Writer, c.Bool("no-header") || c.Bool("1"))
}

// filterEntries keeps the VEs named in ids (all if none), then applies vzlist's state filter:
// running only by default, all with -a, not running with -S. Naming VEs implies -a.
func filterEntries(entries []container.Entry, ids []string, all, stopped bool) ([]container.Entry, error) {
	if len(ids) > 0 {
		want := make(map[string]bool, len(ids))
		for _, id := range ids {
			want[id] = false
		}
		var kept []container.Entry
		for _, e := range entries {
			ref := e.Status.ID
			if _, ok := want[ref]; !ok && e.Config != nil && e.Config.Name != "" {
				ref = e.Config.Name
			}
			if _, ok := want[ref]; ok {
				want[ref] = true
				kept = append(kept, e)
			}
		}
		for _, id := range ids {
			if !want[id] {
				return nil, fmt.Errorf("%s: %w", id, container.ErrNotExist)
			}
		}
		entries, all = kept, true
	}
	out := make([]container.Entry, 0, len(entries))
	for _, e := range entries {
		switch {
		case stopped && e.Status.Running:
		case !stopped && !all && !e.Status.Running:
		default:
			out = append(out, e)
		}
	}
	return out, nil
}

// sortEntries orders entries by a field; numeric ids and numbers sort by value, numeric ids
// come before names, and missing values ("-") come last.
func sortEntries(entries []container.Entry, f listField, reverse bool) {
	less := func(a, b string) bool {
		na, ea := strconv.ParseInt(a, 10, 64)
		nb, eb := strconv.ParseInt(b, 10, 64)
		switch {
		case a == "-" || b == "-":
			return b == "-" && a != "-"
		case ea == nil && eb == nil:
			return na < nb
		case ea == nil:
			return true
		case eb == nil:
			return false
		}
		return a < b
	}
	sort.SliceStable(entries, func(i, j int) bool {
		a, b := f.text(entries[i]), f.text(entries[j])
		if a == b {
			return less(entries[i].Status.ID, entries[j].Status.ID)
		}
		if reverse {
			return less(b, a)
		}
		return less(a, b)
	})
}
