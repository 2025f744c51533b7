package commands

import (
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/vectl/vectl/container"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show whether a VE exists, is mounted and is running",
		ArgsUsage: "ID",
		Description: `Prints vzctl's status line, derived live:
   VEID 101 exist mounted running
   VEID 102 exist unmounted down
   VEID 103 deleted unmounted down        (no such VE: still exit 0, as vzctl)
A VE that is down with a dump (vectl chkpnt) gets a trailing "suspended", as vzctl's; a
frozen one (vectl freeze) a trailing "frozen"; a VE whose create never finished a trailing
"incomplete".

EXAMPLES:
   vectl status 101 | grep -q running && echo up
   vectl status 101 --json

EXIT STATUS:
   0 status printed (also for a VE that does not exist); 21 malformed id`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			id, m, err := veManager(c)
			if err != nil {
				return err
			}
			e, err := m.Status(id)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, statusJSON(e))
			}
			return writeStatusLine(c.App.Writer, e.Status)
		},
	}
}

// statusWords are vzctl status's three words: exist|deleted mounted|unmounted running|down.
func statusWords(s container.Status) string {
	exist, mounted, running := "deleted", "unmounted", "down"
	if s.Exist {
		exist = "exist"
	}
	if s.Mounted {
		mounted = "mounted"
	}
	if s.Running {
		running = "running"
	}
	return exist + " " + mounted + " " + running
}

func writeStatusLine(w io.Writer, s container.Status) error {
	line := fmt.Sprintf("VEID %s %s", s.ID, statusWords(s))
	if s.Frozen {
		line += " frozen"
	}
	if s.Suspended {
		line += " suspended"
	}
	if s.Incomplete {
		line += " incomplete"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

// veJSON is the JSON shape of one VE in status --json and list -j.
type veJSON struct {
	ID          string   `json:"ctid"`
	Name        string   `json:"name,omitempty"`
	Hostname    string   `json:"hostname,omitempty"`
	Description string   `json:"description,omitempty"`
	OSTemplate  string   `json:"ostemplate,omitempty"`
	Layout      string   `json:"layout,omitempty"`
	State       string   `json:"status"`
	Exist       bool     `json:"exist"`
	Mounted     bool     `json:"mounted"`
	Running     bool     `json:"running"`
	Frozen      bool     `json:"frozen"`
	Suspended   bool     `json:"suspended"`
	Incomplete  bool     `json:"incomplete,omitempty"`
	Problem     string   `json:"problem,omitempty"`
	IPs         []string `json:"ip"`
	NumProc     *int     `json:"numproc"`
	// UserNS is the VE's host id range; null for a privileged VE.
	UserNS *container.IDMap `json:"userns"`
	// Nesting: the VE may run containers of its own.
	Nesting bool `json:"nesting"`
	// Meminfo: "none" (the host's /proc/meminfo and the rest inside) or "privvmpages:1"
	// (the VE's own views).
	Meminfo string `json:"meminfo"`
}

func statusJSON(e container.Entry) veJSON {
	v := veJSON{
		ID:         e.Status.ID,
		State:      e.Status.State(),
		Exist:      e.Status.Exist,
		Mounted:    e.Status.Mounted,
		Running:    e.Status.Running,
		Frozen:     e.Status.Frozen,
		Suspended:  e.Status.Suspended,
		Incomplete: e.Status.Incomplete,
		Problem:    e.Problem,
		IPs:        e.IPs,
	}
	if v.IPs == nil {
		v.IPs = []string{}
	}
	if e.Status.Running {
		n := e.Status.NumProc
		v.NumProc = &n
	}
	if c := e.Config; c != nil {
		v.Name, v.Hostname, v.Description = c.Name, c.Hostname, c.Description
		v.OSTemplate, v.Layout = c.OSTemplate, c.Layout
		v.UserNS, v.Nesting = c.UserNS, c.Nesting
		v.Meminfo = meminfoMode(c)
	}
	return v
}
