package container

import (
	"context"
	"fmt"
	"sort"
)

// BootResult is what boot did to one VE.
type BootResult struct {
	ID  string
	Err error
}

// Boot starts every VE marked onboot, higher bootorder first (then by id), as OpenVZ's vz
// init script does, after collecting network attachments that a host crash left behind. A
// VE that fails does not stop the others. stop=true stops every running VE instead, in the
// reverse order (for a host shutdown).
func (m *Manager) Boot(ctx context.Context, stop bool, so StartOptions) ([]BootResult, error) {
	ids, err := m.store.IDs()
	if err != nil {
		return nil, err
	}
	var cfgs []*Config
	for _, id := range ids {
		c, err := m.store.LoadConfig(id)
		if err != nil {
			return nil, err
		}
		if stop && m.populated(id) || !stop && c.OnBoot {
			cfgs = append(cfgs, c)
		}
	}
	sort.SliceStable(cfgs, func(i, j int) bool { return cfgs[i].BootOrder > cfgs[j].BootOrder })
	if stop {
		for i, j := 0, len(cfgs)-1; i < j; i, j = i+1, j-1 {
			cfgs[i], cfgs[j] = cfgs[j], cfgs[i]
		}
	} else if n, err := m.net(); err == nil {
		if err := n.GC(ctx, m.claimStale); err != nil {
			return nil, fmt.Errorf("boot: network gc: %w", err)
		}
	}
	var out []BootResult
	for _, c := range cfgs {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		var err error
		switch {
		case stop:
			err = m.Stop(ctx, c.ID, StopOptions{})
		case m.populated(c.ID):
			continue // already running
		default:
			err = m.Start(ctx, c.ID, so)
		}
		out = append(out, BootResult{ID: c.ID, Err: err})
	}
	return out, nil
}
