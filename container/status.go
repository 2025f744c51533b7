package container

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/vectl/vectl/network"
)

// Status is the live state of a VE, derived from the disk and the kernel, never stored.
type Status struct {
	ID         string `json:"id"`
	Exist      bool   `json:"exist"`
	Incomplete bool   `json:"incomplete,omitempty"`
	Mounted    bool   `json:"mounted"`
	Running    bool   `json:"running"`
	Frozen     bool   `json:"frozen"`    // running, every process frozen (freeze, chkpnt --suspend)
	Suspended  bool   `json:"suspended"` // down with a dump to restore (chkpnt)
	NumProc    int    `json:"numproc"`   // tasks in the VE (OpenVZ's m.numproc); 0 when stopped
}

// State is the one-word state vzlist shows: running, frozen, suspended (down with a dump),
// mounted, stopped, incomplete, or deleted for a VE that does not exist.
func (s Status) State() string {
	switch {
	case !s.Exist:
		return "deleted"
	case s.Incomplete:
		return "incomplete"
	case s.Frozen:
		return "frozen"
	case s.Running:
		return "running"
	case s.Suspended:
		return "suspended"
	case s.Mounted:
		return "mounted"
	}
	return "stopped"
}

// Entry is one VE as list and status show it: its desired config and its live status.
// Config is nil when the config could not be read; Problem then says why.
type Entry struct {
	Config  *Config
	Status  Status
	Problem string
	// IPs are the VE's addresses: live from its network namespace while it runs, else as
	// configured.
	IPs []string
}

// Status returns the live status of one VE. A VE that does not exist is reported with
// Exist false and no error, as vzctl status does.
func (m *Manager) Status(ref string) (Entry, error) {
	id, err := m.resolve(ref)
	if errors.Is(err, ErrNotExist) {
		return Entry{Status: Status{ID: ref}}, nil
	}
	if err != nil {
		return Entry{}, err
	}
	mounted, err := m.mountedRoots()
	if err != nil {
		return Entry{}, err
	}
	return m.entry(id, mounted), nil
}

// List returns every VE of the store, sorted by id.
func (m *Manager) List(ctx context.Context) ([]Entry, error) {
	ids, err := m.store.IDs()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	mounted, err := m.mountedRoots()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	out := make([]Entry, 0, len(ids))
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out = append(out, m.entry(id, mounted))
	}
	return out, nil
}

func (m *Manager) entry(id string, mounted map[string]bool) Entry {
	e := Entry{Status: m.observe(id)}
	e.Status.Mounted = mounted[id]
	cfg, err := m.store.LoadConfig(id)
	if err != nil {
		e.Problem = err.Error()
		return e
	}
	e.Config = cfg
	e.IPs = m.addrs(cfg, e.Status.Running)
	return e
}

// addrs returns a VE's addresses (without prefix lengths), sorted.
func (m *Manager) addrs(cfg *Config, running bool) []string {
	out := []string{}
	if running {
		if live, err := network.Addrs(m.netnsPath(cfg.ID)); err == nil {
			for _, ps := range live {
				for _, p := range ps {
					out = append(out, p.Addr().String())
				}
			}
			sort.Strings(out)
			return out
		}
	}
	for _, s := range cfg.IPs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Addr().String())
		}
	}
	return out
}

// observe derives the live status of an existing VE (without the mount state, which callers
// read once for many VEs).
func (m *Manager) observe(id string) Status {
	s := Status{
		ID:         id,
		Exist:      m.store.Exists(id),
		Incomplete: m.store.Incomplete(id),
		Running:    m.populated(id),
	}
	if s.Running {
		s.Frozen = m.frozen(id)
		s.NumProc = max(m.numproc(id), 0)
	} else if s.Exist {
		s.Suspended = m.Suspended(id)
	}
	return s
}
