package container

import (
	"context"
	"fmt"
)

// Destroy removes a stopped VE and everything it has on disk (vzctl destroy). It also
// finishes the job after a create, destroy or run that was killed midway.
// A VE with snapshots is refused unless force: then they go with it (their layers stay
// while a clone builds on them).
func (m *Manager) Destroy(ctx context.Context, ref string, force bool) error {
	id, l, err := m.lock(ref)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if st := m.observe(id); st.Running {
		return fmt.Errorf("destroy %s: %w: stop it first", id, ErrRunning)
	}
	set, err := m.loadSnapshots(id)
	if err != nil && !force {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	if err == nil && len(set.Snapshots) > 0 {
		if !force {
			return fmt.Errorf("destroy %s: %w (%d): destroy --force removes them with it, or snapshot-delete them first",
				id, ErrHasSnapshots, len(set.Snapshots))
		}
		if err := m.dropSnapshots(id); err != nil {
			return fmt.Errorf("destroy %s: %w", id, err)
		}
	}
	if m.leftovers(id) {
		if err := m.teardown(id, false); err != nil {
			return fmt.Errorf("destroy %s: %w", id, err)
		}
	}
	// The dump of a suspended VE wherever it is, and one in the default place (a dump taken
	// with --leave-running).
	for _, dir := range []string{m.dumpOf(id), m.DumpDir(id)} {
		if dir == "" {
			continue
		}
		if err := m.dropDump(id, dir); err != nil {
			return fmt.Errorf("destroy %s: %w", id, err)
		}
	}
	layered := set != nil && len(set.Snapshots) > 0
	if cfg, err := m.store.LoadConfig(id); err == nil && cfg.Base != "" {
		layered = true
	}
	if err := m.removeVE(id, l); err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	if layered {
		if err := m.collectLayers(id); err != nil {
			m.opts.Warn(fmt.Sprintf("destroy %s: layers not collected: %v", id, err))
		}
	}
	return nil
}
