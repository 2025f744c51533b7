package commands

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
	"github.com/vectl/vectl/resources"
)

// listField is one column vzlist-style list can show (-o), sort by (-s) and emit in JSON.
type listField struct {
	name   string
	header string
	right  bool
	usage  bool // needs the VE's usage (read only when such a field is asked for)
	text   func(row) string
	value  func(row) any
}

// row is one VE in list: its entry and, when a usage field is shown, its usage.
type row struct {
	container.Entry
	st *container.Stats
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// meminfoMode is a VE's --meminfo as vzctl names it.
func meminfoMode(c *container.Config) string {
	if c.Meminfo == "none" {
		return "none"
	}
	return "privvmpages:1"
}

func cfgString(f func(*container.Config) string) func(row) string {
	return func(e row) string {
		if e.Config == nil {
			return "-"
		}
		return dash(f(e.Config))
	}
}

func textValue(text func(row) string) func(row) any {
	return func(e row) any {
		if s := text(e); s != "-" {
			return s
		}
		return nil
	}
}

// listFields are the known fields, in the order list -j emits them without -o.
var listFields = sync.OnceValue(func() []listField {
	fs := []listField{
		{name: "ctid", header: "CTID", right: true,
			text:  func(e row) string { return e.Status.ID },
			value: func(e row) any { return e.Status.ID }},
		{name: "name", header: "NAME", text: cfgString(func(c *container.Config) string { return c.Name })},
		{name: "hostname", header: "HOSTNAME", text: cfgString(func(c *container.Config) string { return c.Hostname })},
		{name: "status", header: "STATUS",
			text: func(e row) string {
				if e.Problem != "" {
					return "broken"
				}
				return e.Status.State()
			}},
		{name: "numproc", header: "NPROC", right: true,
			text: func(e row) string {
				if !e.Status.Running {
					return "-"
				}
				return strconv.Itoa(e.Status.NumProc)
			},
			value: func(e row) any {
				if !e.Status.Running {
					return nil
				}
				return e.Status.NumProc
			}},
		{name: "ip", header: "IP_ADDR",
			text: func(e row) string { return dash(strings.Join(e.IPs, " ")) },
			value: func(e row) any {
				if e.IPs == nil {
					return []string{}
				}
				return e.IPs
			}},
		{name: "ostemplate", header: "OSTEMPLATE", text: cfgString(func(c *container.Config) string { return c.OSTemplate })},
		{name: "layout", header: "LAYOUT", text: cfgString(func(c *container.Config) string { return c.Layout })},
		{name: "meminfo", header: "MEMINFO", text: cfgString(meminfoMode)},
		{name: "uidmap", header: "UIDMAP", text: cfgString(func(c *container.Config) string { return c.UserNS.String() }),
			value: func(e row) any {
				if e.Config == nil || e.Config.UserNS == nil {
					return nil
				}
				return e.Config.UserNS
			}},
		{name: "description", header: "DESCRIPTION", text: cfgString(func(c *container.Config) string { return c.Description })},
		usageField("physpages", "PHYSPAGES", func(s *container.Stats) (int64, bool) {
			return s.Usage.MemUsage / resources.PageSize, s.Running
		}),
		usageField("swappages", "SWAPPAGES", func(s *container.Stats) (int64, bool) {
			return s.Usage.SwapUsage / resources.PageSize, s.Running
		}),
		usageField("diskspace", "DQBLOCKS", func(s *container.Stats) (int64, bool) {
			if s.Disk == nil {
				return 0, false
			}
			return s.Disk.Used / resources.KiB, true
		}),
		usageField("diskinodes", "DQINODES", func(s *container.Stats) (int64, bool) {
			if s.Disk == nil {
				return 0, false
			}
			return s.Disk.InodesUsed, true
		}),
		usageField("cpu", "CPU%", func(s *container.Stats) (int64, bool) { return int64(s.CPUPercent + 0.5), s.Running }),
		usageField("uptime", "UPTIME", func(s *container.Stats) (int64, bool) { return int64(s.Uptime.Seconds()), s.Running }),
		limitField("ram", "RAM"), limitField("swap", "SWAP"), limitField("cpuunits", "CPUUNITS"),
		limitField("cpulimit", "CPULIM"), limitField("numproc", "NUMPROC.L"),
	}
	for i := range fs {
		if fs[i].value == nil {
			fs[i].value = textValue(fs[i].text)
		}
	}
	return fs
})

// usageField is a live counter; "-" when the VE does not have it (stopped, not an image).
func usageField(name, header string, get func(*container.Stats) (int64, bool)) listField {
	f := listField{name: name, header: header, right: true, usage: true}
	f.value = func(e row) any {
		if e.st == nil {
			return nil
		}
		if v, ok := get(e.st); ok {
			return v
		}
		return nil
	}
	f.text = func(e row) string {
		if v := f.value(e); v != nil {
			return strconv.FormatInt(v.(int64), 10)
		}
		return "-"
	}
	return f
}

// limitField shows a configured limit as vzctl writes it.
func limitField(name, header string) listField {
	return listField{name: name + "_limit", header: header, right: true,
		text: cfgString(func(c *container.Config) string { return c.Resources.Format(name) })}
}

// fieldAliases are vzlist's other names for a field.
var fieldAliases = map[string]string{"veid": "ctid", "ip_addr": "ip", "nproc": "numproc"}

func lookupField(name string) (listField, error) {
	name = strings.ToLower(name)
	if a, ok := fieldAliases[name]; ok {
		name = a
	}
	for _, f := range listFields() {
		if f.name == name {
			return f, nil
		}
	}
	names := make([]string, len(listFields()))
	for i, f := range listFields() {
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

Fields (-o, -s): ctid name hostname status numproc ip ostemplate layout description;
usage: physpages swappages (4K pages) diskspace (1K blocks used) diskinodes cpu (percent of
one CPU since start) uptime (seconds); limits: ram_limit swap_limit cpuunits_limit
cpulimit_limit numproc_limit

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
		for _, f := range listFields() {
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
	rows := make([]row, len(entries))
	for i, e := range entries {
		rows[i] = row{Entry: e}
	}
	if slices.ContainsFunc(append(cols, key), func(f listField) bool { return f.usage }) {
		ids := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.Problem == "" {
				ids = append(ids, e.Status.ID)
			}
		}
		byID := map[string]*container.Stats{}
		if len(ids) > 0 {
			st, err := m.Stats(c.Context, ids, 0)
			if err != nil {
				return err
			}
			for i := range st {
				byID[st[i].ID] = &st[i]
			}
		}
		for i := range rows {
			rows[i].st = byID[rows[i].Status.ID]
		}
	}
	for _, e := range entries {
		if e.Problem != "" {
			fmt.Fprintf(c.App.ErrWriter, "vectl: warning: VE %s: %s\n", e.Status.ID, e.Problem)
		}
	}
	sortRows(rows, key, reverse)

	if c.Bool("json") {
		out := make([]map[string]any, 0, len(rows))
		for _, e := range rows {
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
	for _, e := range rows {
		cells := make([]string, len(cols))
		for i, f := range cols {
			cells[i] = f.text(e)
		}
		t.add(cells...)
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
func sortRows(entries []row, f listField, reverse bool) {
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
