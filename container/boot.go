package container

import (
	"context"
	"errors"
	"fmt"
	"sort"
)

// BootResult is what boot did to one VE.
type BootResult struct {
	ID  string
	Err error
	// Done says what was done: "started", "stopped", "suspended", "restored".
	Done string
}

// BootOptions control Boot.
type BootOptions struct {
	Stop bool // stop every running VE instead (host shutdown)
	// Suspend, with Stop, checkpoints each running VE instead of stopping it (vz's
	// VE_STOP_MODE=suspend); a VE that cannot be checkpointed is stopped. The next Boot
	// restores them.
	Suspend bool
	Start   StartOptions
}

// Boot starts every VE marked onboot, higher bootorder first (then by id), as OpenVZ's vz
// init script does, after collecting network attachments that a host crash left behind, and
// restores every VE a Boot with Suspend checkpointed. A VE whose restore fails is started
// afresh, and reported with the restore's error. A VE that fails does not stop the others.
// o.Stop stops (or with o.Suspend checkpoints) every running VE instead, in the reverse
// order (for a host shutdown).
func (m *Manager) Boot(ctx context.Context, o BootOptions) ([]BootResult, error) {
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
		// A disabled VE is not started at boot (vzctl's init script skips it too).
		if o.Stop && m.populated(id) || !o.Stop && !c.Disabled && (c.OnBoot || m.suspendedByBoot(id)) {
			cfgs = append(cfgs, c)
		}
	}
	sort.SliceStable(cfgs, func(i, j int) bool { return cfgs[i].BootOrder > cfgs[j].BootOrder })
	if o.Stop {
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
		r := BootResult{ID: c.ID}
		switch {
		case o.Stop && o.Suspend:
			r.Done = "suspended"
			if err := m.Checkpoint(ctx, c.ID, CheckpointOptions{byBoot: true}); err != nil {
				r.Done = "stopped"
				if serr := m.Stop(ctx, c.ID, StopOptions{}); serr != nil {
					r.Err = errors.Join(err, serr)
				} else {
					r.Err = fmt.Errorf("%w (stopped instead)", err)
				}
			}
		case o.Stop:
			r.Done, r.Err = "stopped", m.Stop(ctx, c.ID, StopOptions{})
		case m.populated(c.ID):
			continue // already running
		case m.Suspended(c.ID):
			r.Done = "restored"
			if err := m.Restore(ctx, c.ID, RestoreOptions{MonitorArgs: o.Start.MonitorArgs}); err != nil {
				r.Done = "started"
				if derr := m.DropDump(c.ID); derr != nil {
					r.Err = errors.Join(err, derr)
				} else if serr := m.Start(ctx, c.ID, o.Start); serr != nil {
					r.Err = errors.Join(err, serr)
				} else {
					r.Err = fmt.Errorf("%w (started afresh)", err)
				}
			}
		default:
			r.Done, r.Err = "started", m.Start(ctx, c.ID, o.Start)
		}
		out = append(out, r)
	}
	return out, nil
}

// suspendedByBoot reports whether a VE is suspended with a dump a Boot with Suspend made.
func (m *Manager) suspendedByBoot(id string) bool {
	dir := m.dumpOf(id)
	if dir == "" {
		return false
	}
	meta, err := readDumpMeta(dir)
	return err == nil && meta.ByBoot
}
